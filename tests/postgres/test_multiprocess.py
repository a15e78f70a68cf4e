"""Several worker processes on one PostgreSQL schema: correct results, nothing lost, crashes recovered.

Each worker is a real process (``worker.py``) running a threads-driver
``Runtime`` on ``PostgresProvider``; the test process is the client. The
crash test kills one worker with SIGKILL in the middle of its activities and
checks that the others pick its locked work up once the locks expire.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from durox import Completed
from durox.core import history
from durox.drivers.threads import Client
from durox.providers.postgres import PostgresProvider, redact_dsn
from durox.providers.testing.builtin import drop_postgres_schema, postgres_dsn

pytestmark = pytest.mark.postgres

WORKER = Path(__file__).with_name("worker.py")


@pytest.fixture(scope="module")
def dsn() -> str:
    """The test server's DSN; skips the module when no server answers."""
    try:
        with psycopg.connect(postgres_dsn(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL server at {redact_dsn(postgres_dsn())}: {exc}")
    found: str = postgres_dsn()
    return found


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    """A fresh schema, dropped after the test."""
    name = f"durox_test_{uuid.uuid4().hex[:8]}"
    yield name
    drop_postgres_schema(dsn, name)


class Worker:
    """One worker process; ``stop()`` shuts it down gracefully and returns its metrics."""

    def __init__(self, dsn: str, schema: str, lock_timeout: float, log_dir: Path) -> None:
        self._stderr_path = log_dir / f"worker-{uuid.uuid4().hex[:6]}.stderr"
        self._stderr = self._stderr_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), dsn, schema, str(lock_timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == "ready", f"worker did not start: {self.stderr()}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        self._stderr.flush()
        return self._stderr_path.read_text()

    def stop(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        out = self.process.stdout.read()
        code = self.process.wait(timeout=60)
        self._stderr.close()
        assert code == 0, self.stderr()
        metrics: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return metrics

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._stderr.close()

    def ensure_gone(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        if not self._stderr.closed:
            self._stderr.close()


def assert_history_is_sound(provider: PostgresProvider, instance: str) -> list[history.Event]:
    """Event ids run 1..n without gaps; every activity scheduled once and completed once."""
    events: list[history.Event] = provider.read_history(instance)
    assert [e.event_id for e in events] == list(range(1, len(events) + 1)), instance
    scheduled = [e.event_id for e in events if isinstance(e, history.ActivityScheduled)]
    completed = Counter(
        e.source_id
        for e in events
        if isinstance(e, (history.ActivityCompleted, history.ActivityFailed))
    )
    assert completed == Counter(scheduled), f"{instance}: one completion per activity"
    starts = [e for e in events if isinstance(e, history.OrchestrationStarted)]
    assert len(starts) == 1 and history.is_terminal(events[-1]), instance
    return events


def test_three_worker_processes_run_300_orchestrations(
    dsn: str, schema: str, tmp_path: Path
) -> None:
    """300 fan-out-then-sequential orchestrations over 3 worker processes: all correct, none lost."""
    provider = PostgresProvider(dsn, schema=schema, pool_size=4)
    workers: list[Worker] = []
    try:
        workers = [Worker(dsn, schema, 5.0, tmp_path) for _ in range(3)]
        client = Client(provider)
        widths = {f"mixed-{n}": 1 + n % 5 for n in range(300)}
        for instance, width in widths.items():
            client.start_orchestration(instance, "Mixed", width)
        for instance, width in widths.items():
            status = client.wait_for_orchestration(instance, timeout=90)
            assert isinstance(status, Completed), (instance, status)
            assert status.output == sum(2 * i for i in range(width)), instance
        for instance in widths:
            assert_history_is_sound(provider, instance)
        assert sorted(provider.list_instances()) == sorted(widths)
        metrics = provider.get_system_metrics()
        assert (metrics.total_instances, metrics.completed_instances) == (300, 300)
        depths = provider.get_queue_depths()
        assert (depths.orchestrator_queue, depths.worker_queue) == (0, 0)
        reports = [worker.stop() for worker in workers]
        assert sum(r["activities"] for r in reports) >= sum(2 * w for w in widths.values())
        assert sum(1 for r in reports if r["turns"] > 0) >= 2, f"work was shared: {reports}"
    finally:
        for worker in workers:
            worker.ensure_gone()
        provider.close()


def test_sigkilled_worker_work_is_taken_over_after_lock_expiry(
    dsn: str, schema: str, tmp_path: Path
) -> None:
    """SIGKILL one of three workers mid-activity: its locked activities run again elsewhere."""
    lock_timeout = 2.0
    started_log = tmp_path / "started.log"
    started_log.touch()
    provider = PostgresProvider(dsn, schema=schema, pool_size=4)
    workers: list[Worker] = []
    try:
        workers = [Worker(dsn, schema, lock_timeout, tmp_path) for _ in range(3)]
        victim = workers[0]
        client = Client(provider)
        job = {"steps": 2, "seconds": 1.0, "log": str(started_log)}
        instances = [f"chain-{n}" for n in range(18)]
        for instance in instances:
            client.start_orchestration(instance, "SlowChain", job)

        def started() -> list[tuple[int, str, int, int]]:
            rows = []
            for line in started_log.read_text().splitlines():
                pid, instance, activity_id, attempt = line.split()
                rows.append((int(pid), instance, int(activity_id), int(attempt)))
            return rows

        deadline = time.monotonic() + 60
        while not any(pid == victim.pid for pid, *_ in started()):
            assert time.monotonic() < deadline, "the victim never started an activity"
            time.sleep(0.05)
        time.sleep(0.3)  # it is now inside its activities' 1 s sleep
        victim.kill()
        in_flight = {(inst, act) for pid, inst, act, _ in started() if pid == victim.pid}

        outputs = {}
        for instance in instances:
            status = client.wait_for_orchestration(instance, timeout=90)
            assert isinstance(status, Completed), (instance, status)
            assert [r["value"] for r in status.output] == [0, 1]
            outputs[instance] = status.output
            assert_history_is_sound(provider, instance)
        # Every activity the victim had started was finished by a survivor, on a
        # later delivery attempt (its lock expired; nobody acked for the victim).
        taken_over = 0
        for instance, activity_id in in_flight:
            events = provider.read_history(instance)
            scheduled = [e for e in events if isinstance(e, history.ActivityScheduled)]
            step = [e.event_id for e in scheduled].index(activity_id)
            report = outputs[instance][step]
            if report["pid"] != victim.pid:
                assert report["attempt"] >= 2, (instance, activity_id, report)
                taken_over += 1
        assert taken_over >= 1, f"the victim's in-flight activities {in_flight} were taken over"
        for worker in workers[1:]:
            worker.stop()
    finally:
        for worker in workers:
            worker.ensure_gone()
        provider.close()


def test_children_finishing_together_do_not_deadlock_their_parents(
    dsn: str, schema: str, tmp_path: Path
) -> None:
    """20 parents x 5 children over 3 processes: the fan-in that deadlocked duroxide-pg half the time."""
    provider = PostgresProvider(dsn, schema=schema, pool_size=4)
    workers: list[Worker] = []
    try:
        workers = [Worker(dsn, schema, 5.0, tmp_path) for _ in range(3)]
        client = Client(provider)
        parents = [f"parent-{n}" for n in range(20)]
        for parent in parents:
            client.start_orchestration(parent, "FanIn", 5)
        for parent in parents:
            status = client.wait_for_orchestration(parent, timeout=90)
            assert isinstance(status, Completed), (parent, status)
            assert status.output == sum(2 * i for i in range(5))
            assert len(provider.list_children(parent)) == 5
        metrics = provider.get_system_metrics()
        assert (metrics.total_instances, metrics.completed_instances) == (120, 120)
        assert metrics.failed_instances == 0
        for worker in workers:
            worker.stop()
    finally:
        for worker in workers:
            worker.ensure_gone()
        provider.close()
