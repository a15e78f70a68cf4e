"""Processes sharing one SQLite file, and a process killed mid-workflow (kill -9).

A crash loses nothing and duplicates nothing in history: the survivor takes
over expired locks, reruns at most the activities that were in flight, and
every scheduled activity ends with exactly one completion in history.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from durox import Registry
from durox.drivers.threads import Client

WORKFLOW = textwrap.dedent(
    """
    import time
    from durox import Registry

    def build_registry():
        registry = Registry()

        def step(ctx, n):
            time.sleep(0.02)
            return n + 1

        def chain(ctx, n):
            parts = yield ctx.join([ctx.schedule_activity("Step", n), ctx.schedule_activity("Step", n + 10)])
            n = yield ctx.schedule_activity("Step", sum(parts))
            yield ctx.schedule_timer(0.05)
            return (yield ctx.schedule_activity("Step", n))

        registry.add_activity("Step", step)
        registry.add_orchestration("Chain", chain)
        return registry
    """
)

CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from workflow import build_registry
    from durox import RuntimeOptions
    from durox.providers.sqlite import SqliteProvider
    from durox.drivers.{driver} import Runtime

    options = RuntimeOptions(orchestrator_lock_timeout=1.0, worker_lock_timeout=1.0, poll_interval=0.05)
    provider = SqliteProvider(sys.argv[1])
    runtime = Runtime(provider, build_registry(), options=options)
    {run}
    """
)

RUN = {
    "threads": "runtime.start()\nprint('ready', flush=True)\ntime.sleep(600)",
    "asyncio": (
        "import asyncio\nasync def main():\n    async with runtime:\n        print('ready', flush=True)\n"
        "        await asyncio.sleep(600)\nasyncio.run(main())"
    ),
    "trio": (
        "import trio\nasync def main():\n    async with runtime:\n        print('ready', flush=True)\n"
        "        await trio.sleep(600)\ntrio.run(main)"
    ),
}


def _spawn(driver: str, db: Path, tmp_path: Path) -> subprocess.Popen[str]:
    script = tmp_path / f"child_{driver}.py"
    script.write_text(CHILD.format(driver=driver, run=RUN[driver]))
    process = subprocess.Popen(
        [sys.executable, str(script), str(db), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready", (
        process.stderr.read() if process.stderr else ""
    )
    return process


def _registry(tmp_path: Path) -> Registry:
    namespace: dict[str, object] = {}
    exec(WORKFLOW, namespace)
    return namespace["build_registry"]()  # type: ignore[operator, no-any-return]


def _check_histories(client: Client, instances: list[str]) -> None:
    for instance in instances:
        events = client.read_execution_history(instance)
        scheduled = [e.event_id for e in events if type(e).__name__ == "ActivityScheduled"]
        completions = Counter(
            e.source_id for e in events if type(e).__name__ == "ActivityCompleted"
        )
        assert sorted(completions) == sorted(scheduled), instance
        assert set(completions.values()) == {1}, f"{instance}: a duplicate completion in history"
        ids = [e.event_id for e in events]
        assert ids == list(range(1, len(ids) + 1)), f"{instance}: event ids are not 1..n"


@pytest.mark.parametrize("driver", ["threads", "asyncio", "trio"])
def test_killed_process_work_is_taken_over(driver, tmp_path):
    from durox.drivers.threads import Runtime
    from durox.providers.sqlite import SqliteProvider

    (tmp_path / "workflow.py").write_text(WORKFLOW)
    db = tmp_path / "shared.db"
    provider = SqliteProvider(db)
    client = Client(provider)
    instances = [f"chain-{n}" for n in range(12)]
    child = _spawn(driver, db, tmp_path)
    try:
        for n, instance in enumerate(instances):
            client.start_orchestration(instance, "Chain", n)
        # Let the other process make progress, then kill it without warning.
        deadline = time.monotonic() + 20
        while not any(client.get_orchestration_status(i).is_terminal for i in instances):
            assert time.monotonic() < deadline, "the child process made no progress"
            time.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    unfinished = [i for i in instances if not client.get_orchestration_status(i).is_terminal]
    assert unfinished, "everything finished before the kill; nothing was taken over"
    from durox import RuntimeOptions

    options = RuntimeOptions(
        orchestrator_lock_timeout=1.0, worker_lock_timeout=1.0, poll_interval=0.1
    )
    with Runtime(provider, _registry(tmp_path), options=options):
        for n, instance in enumerate(instances):
            status = client.wait_for_orchestration(instance, timeout=30)
            assert status.output == 2 * n + 10 + 4, instance  # (n+1)+(n+11)+1, +1
    _check_histories(client, instances)
    provider.close()


def test_two_processes_share_one_file(tmp_path):
    from durox.drivers.trio import Runtime as TrioRuntime

    (tmp_path / "workflow.py").write_text(WORKFLOW)
    db = tmp_path / "shared.db"
    child = _spawn("threads", db, tmp_path)
    provider = None
    try:
        import trio

        from durox.providers.sqlite import SqliteProvider

        provider = SqliteProvider(db)
        client = Client(provider)
        instances = [f"shared-{n}" for n in range(30)]

        async def main() -> None:
            async with TrioRuntime(provider, _registry(tmp_path)):
                for n, instance in enumerate(instances):
                    client.start_orchestration(instance, "Chain", n)
                for n, instance in enumerate(instances):
                    status = await trio.to_thread.run_sync(
                        lambda i=instance: client.wait_for_orchestration(i, timeout=60)
                    )
                    assert status.output == 2 * n + 14

        trio.run(main)
        _check_histories(client, instances)
    finally:
        child.terminate()
        child.wait(10)
        if provider is not None:
            provider.close()
