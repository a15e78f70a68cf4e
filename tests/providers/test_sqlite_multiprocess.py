"""Several processes on one SQLite file: exactly-once turns, no double locks, no "database is locked".

Children are real interpreters started with the ``spawn`` method. pytest loads
this file under a name other processes cannot import, so each child runs it
again through :func:`runpy.run_path` (a picklable standard-library target) with
``__name__`` set to :data:`CHILD`; the block at the bottom then runs the role
it was given.
"""

from __future__ import annotations

import collections
import multiprocessing
import queue
import runpy
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from durox.core import history
from durox.core.commit import Commit, ExecutionStatus, OutgoingMessage
from durox.core.errors import InstanceAlreadyExists
from durox.core.items import OrchestrationItem
from durox.core.messages import (
    ActivityResult,
    ExecuteActivity,
    ExternalRaised,
    StartOrchestration,
)
from durox.core.tags import TagFilter
from durox.providers.sqlite import SqliteProvider, _load_migrations

CHILD = "__durox_sqlite_child__"
INSTANCES = 200
PROCESSES = 4
THREADS_PER_PROCESS = 2
LOCK_TIMEOUT = 30.0  # never expires during the run: every message must be taken exactly once
DEADLINE = 60.0
EXTERNALS_PER_INSTANCE = 2  # one from the test, one "ping" from the previous instance's first turn


def _name(n: int) -> str:
    return f"mp-{n:03d}"


# -- the workload (runs in the children) --------------------------------------------------


def _turn(item: OrchestrationItem) -> tuple[list[tuple[str, str]], Commit]:
    """One deterministic turn of the test orchestration; returns what it consumed and its commit.

    Start: record the start, schedule one activity, ping the next instance.
    External event: record it. Activity result: record it. The instance
    completes once its activity finished and both external events arrived.
    """
    consumed: list[tuple[str, str]] = []
    events: list[history.Event] = []
    workers: list[ExecuteActivity] = []
    outgoing: list[OutgoingMessage] = []
    next_id = item.history_len + 1
    done = any(isinstance(e, history.ActivityCompleted) for e in item.history)
    externals = sum(isinstance(e, history.ExternalEvent) for e in item.history)

    def add(event_type: Any, **fields: Any) -> int:
        nonlocal next_id
        events.append(event_type(event_id=next_id, timestamp_ms=0, **fields))
        next_id += 1
        return next_id - 1

    for message in item.messages:
        if isinstance(message, StartOrchestration):
            consumed.append(("start", item.instance))
            add(history.OrchestrationStarted, name="Flow", version="1.0.0", input=message.input)
            activity_id = add(history.ActivityScheduled, name="Work", input="1")
            workers.append(
                ExecuteActivity(
                    instance=item.instance, execution_id=1, id=activity_id, name="Work", input="1"
                )
            )
            following = _name((int(item.instance[3:]) + 1) % INSTANCES)
            ping = ExternalRaised(instance=following, name="ping", data=f'"from {item.instance}"')
            outgoing.append(OutgoingMessage(message=ping))
        elif isinstance(message, ExternalRaised):
            consumed.append(("external", f"{item.instance}:{message.data}"))
            add(history.ExternalEvent, name=message.name, data=message.data)
            externals += 1
        elif isinstance(message, ActivityResult):
            consumed.append(("result", f"{item.instance}/{message.id}"))
            add(history.ActivityCompleted, source_id=message.id, result=message.result or "null")
            done = True
        else:
            raise AssertionError(f"unexpected message {message!r}")
    status: ExecutionStatus | None = None
    if done and externals == EXTERNALS_PER_INSTANCE:
        add(history.OrchestrationCompleted, output='"ok"')
        status = "Completed"
    commit = Commit(
        instance=item.instance,
        execution_id=item.execution_id,
        orchestration_name="Flow",
        orchestration_version="1.0.0",
        new_events=tuple(events),
        worker_items=tuple(workers),
        orchestrator_items=tuple(outgoing),
        status=status,
        output='"ok"' if status else None,
    )
    return consumed, commit


def _work(path: str, results: Any) -> None:
    """Child process: a few threads fetch and ack both queues until every instance completed."""
    provider = SqliteProvider(path)
    consumed: list[tuple[str, str]] = []
    errors: list[str] = []
    guard = threading.Lock()
    deadline = time.monotonic() + DEADLINE

    def worker() -> None:
        mine: list[tuple[str, str]] = []
        try:
            while time.monotonic() < deadline:
                busy = False
                item = provider.fetch_orchestration_item(lock_timeout=LOCK_TIMEOUT)
                if item is not None:
                    taken, commit = _turn(item)
                    provider.ack_orchestration_item(item.lock_token, commit)
                    mine.extend(taken)
                    busy = True
                work = provider.fetch_work_item(
                    lock_timeout=LOCK_TIMEOUT, tag_filter=TagFilter.any()
                )
                if work is not None:
                    m = work.message
                    result = ActivityResult(
                        instance=m.instance, execution_id=m.execution_id, id=m.id, result='"done"'
                    )
                    provider.ack_work_item(work.lock_token, result)
                    mine.append(("activity", f"{m.instance}/{m.id}"))
                    busy = True
                if not busy:
                    if provider.get_system_metrics().completed_instances == INSTANCES:
                        return
                    time.sleep(0.002)
        except BaseException as exc:
            with guard:
                errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            with guard:
                consumed.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(THREADS_PER_PROCESS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    provider.close()
    results.put((consumed, errors))


def _open_new_file(path: str, number: int, ready: Any, go: Any, results: Any) -> None:
    """Child process: open a brand-new file at the same moment as the others, then write to it."""
    try:
        ready.put(number)
        go.wait(30)
        provider = SqliteProvider(path)
        provider.create_instance(
            StartOrchestration(instance=f"opener-{number}", name="Flow", input="null")
        )
        provider.close()
        results.put((number, None))
    except BaseException as exc:
        results.put((number, f"{type(exc).__name__}: {exc}"))


# -- the tests (run in pytest) ----------------------------------------------------------------


def _spawn(role: str, **arguments: Any) -> multiprocessing.process.BaseProcess:
    ctx = multiprocessing.get_context("spawn")
    process = ctx.Process(
        target=runpy.run_path,
        args=(__file__,),
        kwargs={"run_name": CHILD, "init_globals": {"ROLE": role, "ARGUMENTS": arguments}},
        daemon=True,
    )
    process.start()
    return process


def _collect(
    results: Any, count: int, processes: list[multiprocessing.process.BaseProcess]
) -> list[Any]:
    reports = []
    try:
        for _ in range(count):
            reports.append(results.get(timeout=DEADLINE + 30))
    except queue.Empty:
        raise AssertionError(
            f"only {len(reports)} of {count} child processes reported back"
        ) from None
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    return reports


def test_processes_share_one_file_and_process_every_message_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    seeder = SqliteProvider(path)
    for n in range(INSTANCES):
        seeder.create_instance(StartOrchestration(instance=_name(n), name="Flow", input=str(n)))
        seeder.enqueue_orchestrator(
            ExternalRaised(instance=_name(n), name="hello", data='"from the test"')
        )
    results = multiprocessing.get_context("spawn").Queue()
    processes = [_spawn("work", path=path, results=results) for _ in range(PROCESSES)]
    reports = _collect(results, PROCESSES, processes)

    errors = [error for _, errs in reports for error in errs]
    assert not errors, f"child processes failed: {errors[:5]}"
    assert not any("locked" in error for error in errors)
    seen = collections.Counter(entry for consumed, _ in reports for entry in consumed)
    twice = {entry: n for entry, n in seen.items() if n > 1}
    assert not twice, f"processed more than once: {list(twice.items())[:5]}"
    expected = set()
    for n in range(INSTANCES):
        name, previous = _name(n), _name((n - 1) % INSTANCES)
        expected |= {
            ("start", name),
            ("external", f'{name}:"from the test"'),
            ("external", f'{name}:"from {previous}"'),
            ("activity", f"{name}/2"),
            ("result", f"{name}/2"),
        }
    assert set(seen) == expected, f"missing: {sorted(expected - set(seen))[:5]}"

    for n in range(INSTANCES):
        events = seeder.read_history(_name(n))
        ids = [e.event_id for e in events]
        assert ids == list(range(1, len(ids) + 1)), f"{_name(n)}: event ids {ids}"
        kinds = collections.Counter(type(e).__name__ for e in events)
        assert kinds == {
            "OrchestrationStarted": 1,
            "ActivityScheduled": 1,
            "ExternalEvent": 2,
            "ActivityCompleted": 1,
            "OrchestrationCompleted": 1,
        }, f"{_name(n)}: {kinds}"
        status = seeder.get_instance_status(_name(n))
        assert status is not None and status.status == "Completed"
    depths = seeder.get_queue_depths()
    assert (depths.orchestrator_queue, depths.worker_queue) == (0, 0)
    seeder.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_six_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = str(tmp_path / "fresh.db")
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    processes = [
        _spawn("open", path=path, number=n, ready=ready, go=go, results=results) for n in range(6)
    ]
    for _ in processes:
        ready.get(timeout=60)  # every child is up and imported before any opens the file
    go.set()
    reports = _collect(results, 6, processes)

    assert sorted(number for number, _ in reports) == list(range(6))
    assert [error for _, error in reports if error] == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(_load_migrations())
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert len(tables) == len(set(tables))
        assert {"instances", "history", "orchestrator_queue", "worker_queue"} <= set(tables)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    reopened = SqliteProvider(path)
    assert sorted(reopened.list_instances()) == [f"opener-{n}" for n in range(6)]
    try:
        reopened.create_instance(StartOrchestration(instance="opener-0", name="Flow", input="null"))
        raise AssertionError("a second create of opener-0 succeeded")
    except InstanceAlreadyExists:
        pass
    reopened.close()


if __name__ == CHILD:
    # Runs only in a child started by _spawn: ROLE and ARGUMENTS come from init_globals.
    _ROLES: dict[str, Callable[..., None]] = {"work": _work, "open": _open_new_file}
    _ROLES[globals()["ROLE"]](**globals()["ARGUMENTS"])
