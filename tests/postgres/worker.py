"""A durox worker process for the multi-process PostgreSQL tests and the scaling benchmark.

Run as ``python worker.py DSN SCHEMA [LOCK_TIMEOUT]``: it serves the
orchestrations and activities below with a threads-driver Runtime until its
standard input closes, then shuts down and prints its metrics as JSON.
``SIGKILL`` is the other way out, the one the crash test uses.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Generator
from typing import Any

from durox import ActivityContext, OrchestrationContext, Registry, RuntimeOptions
from durox.drivers.threads import Runtime
from durox.providers.postgres import PostgresProvider

registry = Registry()


def double(ctx: ActivityContext, x: int) -> int:
    """Fan-out step: cheap, so many run at once."""
    return 2 * x


def add(ctx: ActivityContext, pair: list[int]) -> int:
    """Sequential step: each depends on the previous result."""
    return pair[0] + pair[1]


def slow(ctx: ActivityContext, step: dict[str, Any]) -> dict[str, Any]:
    """A step long enough to be caught mid-run by SIGKILL; logs who started it."""
    with open(step["log"], "a", encoding="utf-8") as log:
        log.write(f"{os.getpid()} {ctx.instance_id} {ctx.activity_id} {ctx.attempt}\n")
    time.sleep(step["seconds"])
    return {"pid": os.getpid(), "attempt": ctx.attempt, "value": step["value"]}


def mixed(ctx: OrchestrationContext, n: int) -> Generator[Any, Any, int]:
    """Fan out ``n`` doublings, then fold their results with ``n`` sequential adds."""
    doubled = yield ctx.join([ctx.schedule_activity("Double", i) for i in range(n)])
    total = 0
    for value in doubled:
        total = yield ctx.schedule_activity("Add", [total, value])
    return total


def slow_chain(ctx: OrchestrationContext, job: dict[str, Any]) -> Generator[Any, Any, list[Any]]:
    """``steps`` slow activities one after another; returns what each reported."""
    reports = []
    for step in range(job["steps"]):
        report = yield ctx.schedule_activity(
            "Slow", {"log": job["log"], "seconds": job["seconds"], "value": step}
        )
        reports.append(report)
    return reports


def nap(ctx: ActivityContext, ms: int) -> int:
    """An activity that waits on I/O (here: sleeps) for ``ms`` milliseconds."""
    time.sleep(ms / 1000)
    return ms


def naps(ctx: OrchestrationContext, job: dict[str, int]) -> Generator[Any, Any, int]:
    """Like ``Mixed`` with I/O-bound steps: ``n`` naps fanned out, then ``n`` one after another."""
    done = yield ctx.join([ctx.schedule_activity("Nap", job["ms"]) for _ in range(job["n"])])
    total = sum(done)
    for _ in range(job["n"]):
        total += yield ctx.schedule_activity("Nap", job["ms"])
    return int(total)


def child(ctx: OrchestrationContext, x: int) -> Generator[Any, Any, int]:
    """One sub-orchestration of ``FanIn``: a single activity."""
    doubled: int = yield ctx.schedule_activity("Double", x)
    return doubled


def fan_in(ctx: OrchestrationContext, n: int) -> Generator[Any, Any, int]:
    """Start ``n`` children at once and sum their results: their completions race to the parent."""
    results = yield ctx.join([ctx.schedule_sub_orchestration("Child", i) for i in range(n)])
    return sum(results)


registry.add_activity("Double", double)
registry.add_activity("Add", add)
registry.add_activity("Slow", slow)
registry.add_orchestration("Mixed", mixed)
registry.add_orchestration("SlowChain", slow_chain)
registry.add_orchestration("Child", child)
registry.add_activity("Nap", nap)
registry.add_orchestration("Naps", naps)
registry.add_orchestration("FanIn", fan_in)


def main() -> None:
    dsn, schema = sys.argv[1], sys.argv[2]
    lock_timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    options = RuntimeOptions(
        orchestration_concurrency=4,
        worker_concurrency=8,
        orchestrator_lock_timeout=lock_timeout,
        worker_lock_timeout=lock_timeout,
        poll_interval=1.0,
    )
    provider = PostgresProvider(dsn, schema=schema, pool_size=16)
    try:
        runtime = Runtime(provider, registry, options=options)
        runtime.start()
        print("ready", flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        runtime.shutdown(timeout=10)
        metrics = runtime.metrics()
        print(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "turns": metrics.orchestration_turns,
                    "activities": metrics.activities_completed,
                }
            ),
            flush=True,
        )
    finally:
        provider.close()


if __name__ == "__main__":
    main()
