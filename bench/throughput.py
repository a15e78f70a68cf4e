"""Throughput of durox per driver: orchestrations of 5 sequential no-op activities on a SQLite file.

Usage::

    python bench/throughput.py [--instances 200] [--drivers threads,asyncio,trio] [--no-cache]

For each driver, a fresh SQLite file gets ``--instances`` orchestrations
started at once; the clock runs from the first start to the last
completion. A second figure, *step latency*, is one instance alone: its
wall time divided by its 5 steps. This is a script, not a test: numbers
depend on the machine and are never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import trio

from durox import Registry, RuntimeOptions
from durox.providers.sqlite import SqliteProvider

STEPS = 5


def build_registry() -> Registry:
    """One no-op activity and an orchestration that calls it 5 times in sequence."""
    registry = Registry()

    def noop(ctx: Any, value: int) -> int:
        return value + 1

    def sequential(ctx: Any, value: int) -> Any:
        for _ in range(STEPS):
            value = yield ctx.schedule_activity("Noop", value)
        return value

    registry.add_activity("Noop", noop)
    registry.add_orchestration("Sequential", sequential)
    return registry


def _options(cache: bool) -> RuntimeOptions:
    return RuntimeOptions(sticky_cache_size=512 if cache else 0)


def run_threads(db: str, instances: int, cache: bool) -> float:
    from durox.drivers.threads import Client, Runtime

    provider = SqliteProvider(db, synchronous="NORMAL")
    client = Client(provider)
    with Runtime(provider, build_registry(), options=_options(cache)):
        started = time.perf_counter()
        for n in range(instances):
            client.start_orchestration(f"i{n}", "Sequential", 0)
        for n in range(instances):
            client.wait_for_orchestration(f"i{n}", timeout=300)
        elapsed = time.perf_counter() - started
    provider.close()
    return elapsed


async def _run_async(module: Any, db: str, instances: int, cache: bool) -> float:
    provider = SqliteProvider(db, synchronous="NORMAL")
    client = module.Client(provider)
    async with module.Runtime(provider, build_registry(), options=_options(cache)):
        started = time.perf_counter()
        for n in range(instances):
            await client.start_orchestration(f"i{n}", "Sequential", 0)
        for n in range(instances):
            await client.wait_for_orchestration(f"i{n}", timeout=300)
        elapsed = time.perf_counter() - started
    provider.close()
    return elapsed


def run_asyncio(db: str, instances: int, cache: bool) -> float:
    from durox.drivers import asyncio as driver

    return asyncio.run(_run_async(driver, db, instances, cache))


def run_trio(db: str, instances: int, cache: bool) -> float:
    from durox.drivers import trio as driver

    return trio.run(_run_async, driver, db, instances, cache)


RUNNERS: dict[str, Callable[[str, int, bool], float]] = {
    "threads": run_threads,
    "asyncio": run_asyncio,
    "trio": run_trio,
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--drivers", default=",".join(RUNNERS))
    parser.add_argument("--no-cache", action="store_true", help="disable the sticky instance cache")
    args = parser.parse_args(argv)
    drivers = [d.strip() for d in args.drivers.split(",") if d.strip()]
    unknown = [d for d in drivers if d not in RUNNERS]
    if unknown:
        parser.error(f"unknown driver(s): {', '.join(unknown)}; choose from {', '.join(RUNNERS)}")
    cache = not args.no_cache
    print(
        f"{args.instances} orchestrations x {STEPS} sequential no-op activities, SQLite file, "
        f"sticky cache {'on' if cache else 'off'}, Python {sys.version.split()[0]}"
    )
    print(f"{'driver':<8} {'seconds':>8} {'orch/s':>8} {'activities/s':>13} {'step latency':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for driver in drivers:
            run = RUNNERS[driver]
            elapsed = run(os.path.join(tmp, f"{driver}.db"), args.instances, cache)
            single = run(os.path.join(tmp, f"{driver}-single.db"), 1, cache)
            print(
                f"{driver:<8} {elapsed:>8.2f} {args.instances / elapsed:>8.1f} "
                f"{args.instances * STEPS / elapsed:>13.1f} {single / STEPS * 1000:>10.2f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
