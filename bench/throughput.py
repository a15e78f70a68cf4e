"""Throughput of durox per driver: orchestrations of 5 sequential no-op activities on a SQLite file.

Usage::

    python bench/throughput.py [--instances 200] [--drivers threads,asyncio,trio] [--no-cache]

For each driver, a fresh SQLite file gets ``--instances`` orchestrations
started at once; the clock runs from the first start to the last
completion. A second figure, *step latency*, runs instances one at a time
(polling their status every 0.5 ms) and divides the mean wall time by the
5 steps. This is a script, not a test: numbers depend on the machine and
are never asserted.
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


LATENCY_RUNS = 10
POLL = 0.0005


def run_threads(db: str, instances: int, cache: bool) -> tuple[float, float]:
    """(seconds for ``instances`` at once, seconds per instance alone) on the threads driver."""
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
        one_at_a_time = time.perf_counter()
        for n in range(LATENCY_RUNS):
            client.start_orchestration(f"one{n}", "Sequential", 0)
            while not client.get_orchestration_status(f"one{n}").is_terminal:
                time.sleep(POLL)
        latency = (time.perf_counter() - one_at_a_time) / LATENCY_RUNS
    provider.close()
    return elapsed, latency


async def _run_async(
    module: Any, sleep: Any, db: str, instances: int, cache: bool
) -> tuple[float, float]:
    provider = SqliteProvider(db, synchronous="NORMAL")
    client = module.Client(provider)
    async with module.Runtime(provider, build_registry(), options=_options(cache)):
        started = time.perf_counter()
        for n in range(instances):
            await client.start_orchestration(f"i{n}", "Sequential", 0)
        for n in range(instances):
            await client.wait_for_orchestration(f"i{n}", timeout=300)
        elapsed = time.perf_counter() - started
        one_at_a_time = time.perf_counter()
        for n in range(LATENCY_RUNS):
            await client.start_orchestration(f"one{n}", "Sequential", 0)
            while not (await client.get_orchestration_status(f"one{n}")).is_terminal:
                await sleep(POLL)
        latency = (time.perf_counter() - one_at_a_time) / LATENCY_RUNS
    provider.close()
    return elapsed, latency


def run_asyncio(db: str, instances: int, cache: bool) -> tuple[float, float]:
    """Like :func:`run_threads`, on the asyncio driver."""
    from durox.drivers import asyncio as driver

    return asyncio.run(_run_async(driver, asyncio.sleep, db, instances, cache))


def run_trio(db: str, instances: int, cache: bool) -> tuple[float, float]:
    """Like :func:`run_threads`, on the trio driver."""
    from durox.drivers import trio as driver

    result: tuple[float, float] = trio.run(_run_async, driver, trio.sleep, db, instances, cache)
    return result


RUNNERS: dict[str, Callable[[str, int, bool], tuple[float, float]]] = {
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
            elapsed, latency = run(os.path.join(tmp, f"{driver}.db"), args.instances, cache)
            print(
                f"{driver:<8} {elapsed:>8.2f} {args.instances / elapsed:>8.1f} "
                f"{args.instances * STEPS / elapsed:>13.1f} {latency / STEPS * 1000:>10.2f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
