"""Unit tests of the framework-free pieces the three drivers share."""

from __future__ import annotations

import asyncio
import threading
import time

import attrs
import pytest
import trio

from durox import (
    Completed,
    ErrorDetails,
    Failed,
    NotFound,
    Registry,
    Running,
    RuntimeOptions,
    WaitTimeout,
)
from durox.core.commit import ActivityRef
from durox.drivers import _hub
from durox.drivers._activity import ActivityContext, Cancellation
from durox.drivers._cache import StickyCache
from durox.drivers._client_core import Sleep, _poll_plan, run_plan, status_from_provider
from durox.drivers._metrics import Metrics
from durox.drivers._steps import RuntimeCore
from durox.drivers._timers import Timers
from durox.drivers._work import SessionTracker
from durox.providers.base import InstanceStatus
from durox.providers.memory import MemoryProvider


@attrs.define
class State:
    instance: str
    execution_id: int
    history_len: int


# -- sticky cache ------------------------------------------------------------------------------


def test_cache_known_history_take_and_lru():
    cache = StickyCache(2)
    cache.put(State("a", 1, 5))
    cache.put(State("b", 2, 7))
    assert cache.known_history("a", 1) == 5
    assert cache.known_history("a", 2) == 0  # another execution: a miss
    assert cache.known_history("zz", 1) == 0
    cache.put(State("c", 1, 1))  # evicts the least recently used ("a")
    assert cache.take("a") is None
    state = cache.take("b")
    assert state == State("b", 2, 7)
    assert cache.take("b") is None  # taken out: no two turns share a state
    assert len(cache) == 1


def test_cache_disabled_keeps_nothing():
    cache = StickyCache(0)
    assert not cache.enabled
    cache.put(State("a", 1, 5))
    assert cache.take("a") is None and cache.known_history("a", 1) == 0


# -- timers --------------------------------------------------------------------------------------


def test_timers_after_every_and_cancel():
    timers = Timers("test-timers")
    timers.start()
    try:
        fired = threading.Event()
        ticks: list[float] = []
        timers.after(0.01, fired.set)
        cancelled = timers.after(0.01, lambda: pytest.fail("a cancelled job ran"))
        cancelled.cancel()

        def tick():
            ticks.append(time.monotonic())
            return len(ticks) < 3  # stops itself after three runs

        handle = timers.every(0.01, tick)
        assert fired.wait(2)
        deadline = time.monotonic() + 2
        while len(ticks) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert len(ticks) == 3 and handle.cancelled

        def boom():
            raise RuntimeError("job failure")

        timers.after(0, boom)  # logged, never kills the thread
        survived = threading.Event()
        timers.after(0.01, survived.set)
        assert survived.wait(2)
    finally:
        timers.stop()


# -- metrics -------------------------------------------------------------------------------------


def test_metrics_snapshot_is_frozen_and_validated():
    metrics = Metrics()
    metrics.add("orchestration_turns", 2)
    metrics.failure("application")
    snapshot = metrics.snapshot()
    metrics.add("orchestration_turns")
    assert snapshot.orchestration_turns == 2
    assert snapshot.failures_by_category == {"application": 1}
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snapshot.orchestration_turns = 3
    with pytest.raises(KeyError):
        metrics.add("no_such_counter")


# -- cancellation ----------------------------------------------------------------------------------


def test_cancellation_signal_blocking_and_callbacks():
    signal = Cancellation()
    calls: list[str] = []
    signal.add_callback(lambda: calls.append("early"))
    assert not signal.is_set() and not signal.wait(0.01)
    threading.Timer(0.02, lambda: signal.set("stop")).start()
    assert signal.wait(2)
    assert signal.reason == "stop" and calls == ["early"]
    assert not signal.set("again")  # one-shot
    signal.add_callback(lambda: calls.append("late"))  # runs at once
    assert calls == ["early", "late"]
    with pytest.raises(TypeError, match="wait"):
        signal.__await__()


def test_cancellation_awaitable_on_asyncio_and_trio():
    from durox.drivers.asyncio import wait_cancelled as asyncio_waiter
    from durox.drivers.trio import _waiter as trio_waiter

    async def on_asyncio():
        signal = Cancellation(asyncio_waiter)
        threading.Timer(0.02, lambda: signal.set("asyncio")).start()
        await asyncio.wait_for(signal, 5)
        return signal.reason

    async def on_trio():
        signal = Cancellation(trio_waiter)
        threading.Timer(0.02, lambda: signal.set("trio")).start()
        with trio.fail_after(5):
            await signal
        return signal.reason

    assert asyncio.run(on_asyncio()) == "asyncio"
    assert trio.run(on_trio) == "trio"


def test_activity_context_fields_and_traces(caplog):
    signal = Cancellation()
    ctx = ActivityContext(
        instance_id="i",
        execution_id=2,
        orchestration_name="O",
        orchestration_version="1.0.0",
        activity_name="A",
        activity_id=7,
        attempt=3,
        session_id="s",
        tag="gpu",
        worker_id="w",
        cancellation=signal,
    )
    assert (ctx.instance_id, ctx.execution_id, ctx.activity_id, ctx.attempt, ctx.tag) == (
        "i",
        2,
        7,
        3,
        "gpu",
    )
    assert ctx.cancelled() is signal and not ctx.is_cancelled()
    with caplog.at_level("DEBUG", logger="durox.activity"):
        ctx.trace_info("working")
        ctx.trace_error("broken")
    assert [r.levelname for r in caplog.records] == ["INFO", "ERROR"]
    assert caplog.records[0].activity_name == "A" and "working" in caplog.records[0].getMessage()
    with pytest.raises(RuntimeError, match="no client"):
        _ = ctx.client


# -- client core ------------------------------------------------------------------------------------


def _record(**fields):
    base = {
        "instance": "i",
        "execution_id": 1,
        "orchestration_name": "O",
        "orchestration_version": "1.0.0",
    }
    return InstanceStatus(**{**base, **fields})


def test_status_mapping():
    assert isinstance(status_from_provider(None), NotFound)
    running = status_from_provider(
        _record(status="Running", custom_status="x", custom_status_version=2)
    )
    assert running == Running(custom_status="x", custom_status_version=2)
    assert isinstance(status_from_provider(_record(status="ContinuedAsNew")), Running)
    done = status_from_provider(_record(status="Completed", output='{"a": [1]}'))
    assert done == Completed({"a": [1]}) and done.is_terminal
    details = ErrorDetails(
        category="application", kind="orchestration_failed", message="bad", error_type="ValueError"
    )
    failed = status_from_provider(_record(status="Failed", error=details))
    assert failed == Failed(details) and failed.details.display_message() == "ValueError: bad"


def test_poll_plan_backs_off_and_times_out():
    reads = iter([1, 2, 3, 4])
    plan = _poll_plan(lambda: next(reads), lambda v: v == 3, None, lambda: "x")
    steps = []
    value = None
    try:
        while True:
            step = plan.send(value)
            steps.append(step)
            value = step() if callable(step) and not isinstance(step, Sleep) else None
    except StopIteration as stop:
        assert stop.value == 3
    sleeps = [s.seconds for s in steps if isinstance(s, Sleep)]
    assert sleeps == [0.005, 0.01]
    with pytest.raises(WaitTimeout, match=r"never after 0\.05s"):
        run_plan(_poll_plan(lambda: 0, lambda v: False, 0.05, lambda: "never"))


# -- hub and runtime core ------------------------------------------------------------------------------


def test_hub_reaches_only_subscribers_of_the_same_provider():
    seen: list[str] = []

    class Listener:
        def wake_orchestrator(self, count):
            seen.append(f"orch {count}")

        def wake_worker(self, count):
            seen.append(f"work {count}")

        def cancel_activities(self, refs):
            seen.extend(f"cancel {ref.id}" for ref in refs)

    mine, other = object(), object()
    unsubscribe = _hub.subscribe(mine, Listener())
    _hub.work_enqueued(mine, orchestrator=1, worker=3)
    _hub.work_enqueued(other, orchestrator=True)
    _hub.activities_cancelled(mine, [ActivityRef(instance="i", execution_id=1, id=4)])
    unsubscribe()
    _hub.work_enqueued(mine, worker=True)
    assert seen == ["orch 1", "work 3", "cancel 4"]


def test_session_tracker_bounds_distinct_sessions():
    tracker = SessionTracker(2)
    assert tracker.acquire("a") and tracker.acquire("a") and tracker.acquire("b")
    assert tracker.full() and not tracker.acquire("c")
    tracker.release("a")
    assert not tracker.acquire("c")  # "a" still has one activity in flight
    tracker.release("a")
    assert tracker.acquire("c")


def test_runtime_core_loop_with_a_fake_driver():
    """Drive RuntimeCore by hand, the way a driver's loops do, on a MemoryProvider."""
    registry = Registry()

    @registry.activity("Inc")
    def inc(ctx, n):
        return n + 1

    @registry.orchestration("Twice")
    def twice(ctx, n):
        n = yield ctx.schedule_activity("Inc", n)
        return (yield ctx.schedule_activity("Inc", n))

    provider = MemoryProvider()
    wakes = {"orch": 0, "work": 0}
    core = RuntimeCore(
        provider,
        registry,
        RuntimeOptions(poll_interval=0.5),
        driver="fake",
        wake_orchestrator=lambda count: wakes.__setitem__("orch", wakes["orch"] + count),
        wake_worker=lambda count: wakes.__setitem__("work", wakes["work"] + count),
        sync_client_factory=lambda: None,
    )
    core.start()
    try:
        assert core.run_orchestration_once() == 0.5  # idle: the backstop poll
        assert core.fetch_activity() == 0.5
        from durox.drivers.threads import Client

        Client(provider).start_orchestration("t", "Twice", 1)
        assert wakes["orch"] == 1  # the client woke the (fake) orchestration slot
        for _ in range(2):
            assert core.run_orchestration_once() is None
            job = core.fetch_activity()
            assert job is not None and not isinstance(job, float)
            assert job.context.activity_name == "Inc" and job.context.orchestration_name == "Twice"
            core.run_sync_activity(job)
        assert core.run_orchestration_once() is None
        assert Client(provider).get_orchestration_status("t") == Completed(3)
        metrics = core.snapshot()
        assert metrics.orchestration_turns == 3 and metrics.activities_completed == 2
        assert wakes["work"] >= 2
    finally:
        core.close()


def test_async_runtimes_let_the_body_exception_through():
    from durox.drivers import asyncio as asyncio_driver
    from durox.drivers import trio as trio_driver

    async def body(module):
        async with module.Runtime(MemoryProvider(), Registry()):
            raise ValueError("from the body")

    with pytest.raises(ValueError, match="from the body"):
        trio.run(body, trio_driver)
    with pytest.raises(ValueError, match="from the body"):
        asyncio.run(body(asyncio_driver))


@pytest.mark.parametrize("driver", ["threads", "asyncio", "trio"])
def test_runtime_and_client_refuse_bad_arguments(driver):
    from durox import InvalidArgument

    module = __import__(f"durox.drivers.{driver}", fromlist=["Runtime", "Client"])
    with pytest.raises(InvalidArgument):
        module.Client("not a provider")
    with pytest.raises(InvalidArgument, match="provider"):
        module.Runtime("not a provider", Registry())
    with pytest.raises(InvalidArgument, match="Registry"):
        module.Runtime(MemoryProvider(), {})
    with pytest.raises(InvalidArgument, match="RuntimeOptions"):
        module.Runtime(MemoryProvider(), Registry(), options={"worker_concurrency": 2})
