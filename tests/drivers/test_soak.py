"""Soak: the three drivers at once on one SQLite file, with runtimes restarted under load.

Marked ``slow`` (run by ``nox -s soak``): a thousand instances mixing
fan-out, timers, sub-orchestrations, events and continue-as-new, while
runtimes of every driver come and go. Every instance must finish with the
right output and a clean history.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

from durox import Registry
from durox.drivers.threads import Client
from durox.providers.sqlite import SqliteProvider

from .conftest import make_harness

pytestmark = pytest.mark.slow

INSTANCES = 1000


def _registry() -> Registry:
    registry = Registry()

    def square(ctx, n):
        time.sleep(random.random() * 0.005)
        return n * n

    def child(ctx, n):
        return (yield ctx.schedule_activity("Square", n)) + 1

    def workload(ctx, n):
        squares = yield ctx.join([ctx.schedule_activity("Square", n + i) for i in range(4)])
        yield ctx.schedule_timer(0.01)
        extra = yield ctx.schedule_sub_orchestration("Child", n)
        total = sum(squares) + extra
        ctx.set_kv_value("total", total)
        if n % 10 == 0 and ctx.get_kv_value("round") is None:
            ctx.set_kv_value("round", 1)
            return (yield ctx.continue_as_new(n))
        return total

    registry.add_activity("Square", square)
    registry.add_orchestration("Child", child)
    registry.add_orchestration("Workload", workload)
    return registry


def _expected(n: int) -> int:
    return sum((n + i) ** 2 for i in range(4)) + n * n + 1


def test_three_drivers_share_a_store_through_restarts(tmp_path):
    harnesses = [
        make_harness(driver, "memory", "cache", tmp_path)
        for driver in ("threads", "asyncio", "trio")
    ]
    db = tmp_path / "soak.db"
    providers = [SqliteProvider(db) for _ in harnesses]
    options = {"orchestrator_lock_timeout": 2.0, "worker_lock_timeout": 2.0, "poll_interval": 0.1}
    registry = _registry()
    runtimes = [h.runtime(registry, provider=p, **options) for h, p in zip(harnesses, providers)]
    client = Client(providers[0])
    stop = threading.Event()

    def chaos() -> None:
        # Restart a random runtime every so often, gracefully or abruptly.
        rng = random.Random(7)
        while not stop.wait(0.5):
            index = rng.randrange(len(runtimes))
            runtimes[index].stop(timeout=rng.choice([0.0, 0.2, 2.0]))
            runtimes[index] = harnesses[index].runtime(
                registry, provider=providers[index], **options
            )

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    try:
        for n in range(INSTANCES):
            client.start_orchestration(f"soak-{n}", "Workload", n)
        chaos_thread.start()
        for n in range(INSTANCES):
            status = client.wait_for_orchestration(f"soak-{n}", timeout=300)
            assert status.output == _expected(n), f"soak-{n}: {status}"
    finally:
        stop.set()
        chaos_thread.join(30)
        for runtime in runtimes:
            runtime.stop(timeout=1.0)
    for n in range(INSTANCES):
        events = client.read_execution_history(f"soak-{n}")
        scheduled = {e.event_id for e in events if type(e).__name__ == "ActivityScheduled"}
        done = Counter(e.source_id for e in events if type(e).__name__ == "ActivityCompleted")
        assert set(done) == scheduled and set(done.values()) == {1}
    for harness in harnesses:
        harness.close()
    for provider in providers:
        provider.close()
