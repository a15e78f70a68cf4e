"""Runtime behaviour: cancellation, continue-as-new, versions, sessions, tags, poison, restarts."""

from __future__ import annotations

import json
import threading
import time

import pytest

from durox import ActivityFailed, Failed, Registry, TagFilter
from durox.core import history

TIMEOUT = 15


def _kinds(events):
    return [type(event).__name__ for event in events]


def _wait_until(predicate, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


def _has_event(client, instance, kind):
    def check():
        try:
            return kind in _kinds(client.read_execution_history(instance))
        except LookupError:
            return False

    return check


# -- cancellation ------------------------------------------------------------------------------


def test_select_loser_activity_is_cancelled_at_once(harness):
    registry = Registry()
    observed = threading.Event()
    started = threading.Event()

    @registry.activity("Forever")
    async def forever(ctx, _):
        started.set()
        await ctx.cancelled()
        observed.set()
        return "cancelled result (dropped)"

    @registry.activity("Quick")
    def quick(ctx, _):
        return "quick"

    @registry.orchestration("Race")
    def race(ctx, _):
        slow = ctx.schedule_activity("Forever")
        index, value = yield ctx.select(slow, ctx.schedule_wait("go"))
        # The event wins; the running activity loses and is cancelled.
        after = yield ctx.schedule_activity("Quick")
        return [index, value, after]

    # A long lock means only the local commit (not a renewal) can deliver the signal quickly.
    with harness.runtime(registry, worker_lock_timeout=30.0) as rt:
        harness.client.start_orchestration("race", "Race")
        assert started.wait(5)
        _wait_until(
            _has_event(harness.client, "race", "ExternalSubscribed"), what="wait subscribed"
        )
        harness.client.raise_event("race", "go")
        status = harness.client.wait_for_orchestration("race", timeout=TIMEOUT)
        assert observed.wait(5), "the losing activity never saw its cancellation"
        _wait_until(lambda: rt.metrics().activities_cancelled >= 1, what="cancel counted")
    assert status.output == [1, None, "quick"]
    kinds = _kinds(harness.client.read_execution_history("race"))
    assert "ActivityCancelRequested" in kinds and "ActivityCompleted" in kinds


def test_losing_sub_orchestration_and_unfinished_activities_are_cancelled(harness):
    registry = Registry()
    signalled = threading.Event()
    started = threading.Event()

    @registry.activity("Background")
    async def background(ctx, _):
        started.set()
        await ctx.cancelled()
        signalled.set()

    @registry.orchestration("Stalled")
    def stalled(ctx, _):
        yield ctx.schedule_wait("never")

    @registry.orchestration("Impatient")
    def impatient(ctx, _):
        ctx.schedule_activity("Background")  # still running when the orchestration returns
        index, _value = yield ctx.select(
            ctx.schedule_sub_orchestration("Stalled", instance_id="stalled-child"),
            ctx.schedule_wait("go"),
        )
        return index

    with harness.runtime(registry, worker_lock_timeout=30.0):
        client = harness.client
        client.start_orchestration("impatient", "Impatient")
        assert started.wait(5)  # the activity runs; now let the orchestration finish
        _wait_until(_has_event(client, "impatient", "ExternalSubscribed"), what="wait subscribed")
        client.raise_event("impatient", "go")
        assert client.wait_for_orchestration("impatient", timeout=TIMEOUT).output == 1
        child = client.wait_for_orchestration("stalled-child", timeout=TIMEOUT)
        assert signalled.wait(5)
    assert isinstance(child, Failed) and child.details.kind == "cancelled"
    kinds = _kinds(harness.client.read_execution_history("impatient"))
    assert "SubOrchestrationCancelRequested" in kinds and "ActivityCancelRequested" in kinds


def test_uncooperative_activity_is_abandoned_after_grace(harness):
    registry = Registry()
    release = threading.Event()
    finished = threading.Event()
    started = threading.Event()

    @registry.activity("Stubborn")
    def stubborn(ctx, _):
        started.set()
        release.wait(10)  # ignores cancellation
        finished.set()
        return "too late"

    @registry.activity("Next")
    def next_step(ctx, _):
        return "next ran"

    @registry.orchestration("Impatient")
    def impatient(ctx, _):
        index, _value = yield ctx.select(ctx.schedule_activity("Stubborn"), ctx.schedule_wait("go"))
        return [index, (yield ctx.schedule_activity("Next"))]

    # One worker slot: "Next" can only run if the runtime stopped waiting for "Stubborn".
    with harness.runtime(
        registry, worker_concurrency=1, activity_cancellation_grace_period=0.1
    ) as rt:
        harness.client.start_orchestration("imp", "Impatient")
        assert started.wait(5)
        _wait_until(_has_event(harness.client, "imp", "ExternalSubscribed"), what="wait subscribed")
        harness.client.raise_event("imp", "go")
        status = harness.client.wait_for_orchestration("imp", timeout=TIMEOUT)
        assert status.output == [1, "next ran"]
        assert rt.metrics().activities_cancelled >= 1
        release.set()
        assert finished.wait(5)
    history_kinds = _kinds(harness.client.read_execution_history("imp"))
    assert history_kinds.count("ActivityCompleted") == 1  # only "Next"; the late result was dropped


def test_cancel_instance_cascades_to_children_and_activities(harness):
    registry = Registry()
    signalled = threading.Event()
    started = threading.Event()

    @registry.activity("Watch")
    async def watch(ctx, _):
        started.set()
        await ctx.cancelled()
        signalled.set()

    @registry.orchestration("Child")
    def child(ctx, _):
        yield ctx.schedule_wait("never")

    @registry.orchestration("Parent")
    def parent(ctx, _):
        yield ctx.join(
            [
                ctx.schedule_sub_orchestration("Child", instance_id="the-child"),
                ctx.schedule_activity("Watch"),
            ]
        )

    with harness.runtime(registry):
        client = harness.client
        client.start_orchestration("parent", "Parent")
        _wait_until(_has_event(client, "the-child", "ExternalSubscribed"), what="child waiting")
        assert started.wait(5)
        client.cancel_instance("parent", "stop everything")
        parent_status = client.wait_for_orchestration("parent", timeout=TIMEOUT)
        child_status = client.wait_for_orchestration("the-child", timeout=TIMEOUT)
        assert signalled.wait(5)
    assert isinstance(parent_status, Failed) and parent_status.details.kind == "cancelled"
    assert isinstance(child_status, Failed) and child_status.details.kind == "cancelled"


# -- continue_as_new and versions ------------------------------------------------------------


def test_continue_as_new_carries_kv_custom_status_and_queued_events(harness):
    registry = Registry()

    @registry.orchestration("Accumulator")
    def accumulator(ctx, generation):
        message = yield ctx.dequeue_event("numbers")
        previous = ctx.get_custom_status()
        total = (ctx.get_kv_value("total") or 0) + message
        ctx.set_kv_value("total", total)
        ctx.set_custom_status(f"gen {generation} total {total}")
        if generation == 3:
            return {"total": total, "previous_status": previous}
        return (yield ctx.continue_as_new(generation + 1))

    with harness.runtime(registry):
        client = harness.client
        client.start_orchestration("acc", "Accumulator", 0)
        _wait_until(_has_event(client, "acc", "QueueSubscribed"), what="subscription")
        for n in (1, 2, 3, 4):  # all sent at once: later ones are carried across executions
            client.enqueue_event("acc", "numbers", n)
        status = client.wait_for_orchestration("acc", timeout=TIMEOUT)
    assert status.output == {"total": 10, "previous_status": "gen 2 total 6"}
    assert status.custom_status == "gen 3 total 10"
    assert harness.client.get_kv_value("acc", "total") == 10
    assert harness.client.list_executions("acc") == [1, 2, 3, 4]


def test_versioned_upgrade_at_continue_as_new(harness):
    registry = Registry()

    @registry.orchestration("Versioned", version="1.0.0")
    def v1(ctx, n):
        return (yield ctx.continue_as_new(n + 1))  # picks the latest version

    @registry.orchestration("Versioned", version="2.0.0")
    def v2(ctx, n):
        return f"v{ctx.orchestration_version} got {n}"
        yield

    with harness.runtime(registry):
        client = harness.client
        client.start_orchestration("pinned", "Versioned", 1, version="1.0.0")
        client.start_orchestration("latest", "Versioned", 1)
        assert client.wait_for_orchestration("pinned", timeout=TIMEOUT).output == "v2.0.0 got 2"
        assert client.wait_for_orchestration("latest", timeout=TIMEOUT).output == "v2.0.0 got 1"
        first = client.read_execution_history("pinned", 1)[0]
        second = client.read_execution_history("pinned", 2)[0]
    assert isinstance(first, history.OrchestrationStarted) and first.version == "1.0.0"
    assert isinstance(second, history.OrchestrationStarted) and second.version == "2.0.0"


# -- routing: sessions and tags ----------------------------------------------------------------


def test_sessions_pin_to_one_worker_and_move_when_it_stops(harness):
    registry = Registry()

    @registry.activity("WhoAmI")
    def who_am_i(ctx, _):
        return ctx.worker_id

    @registry.orchestration("Pinned")
    def pinned(ctx, _):
        first = yield ctx.join(
            [ctx.schedule_activity_on_session("WhoAmI", i, "s1") for i in range(4)]
        )
        ctx.set_custom_status(json.dumps(first))
        yield ctx.schedule_wait("continue")
        second = yield ctx.join(
            [ctx.schedule_activity_on_session("WhoAmI", i, "s1") for i in range(3)]
        )
        return {"first": first, "second": second}

    fast = {"session_lock_timeout": 1.0, "worker_concurrency": 2}
    runtimes = {
        "node-a": harness.runtime(registry, worker_node_id="node-a", **fast),
        "node-b": harness.runtime(
            registry, provider=harness.new_provider(), worker_node_id="node-b", **fast
        ),
    }
    try:
        client = harness.client
        client.start_orchestration("sess", "Pinned")
        status = client.wait_for_status_change("sess", 0, timeout=TIMEOUT)
        first = json.loads(status.custom_status)
        assert len(set(first)) == 1, f"session s1 ran on several workers: {first}"
        owner = first[0]
        runtimes[owner].stop()
        _wait_until(_has_event(client, "sess", "ExternalSubscribed"), what="wait subscribed")
        client.raise_event("sess", "continue")
        output = client.wait_for_orchestration("sess", timeout=TIMEOUT).output
        other = "node-b" if owner == "node-a" else "node-a"
        assert output["second"] == [other] * 3
    finally:
        for handle in runtimes.values():
            handle.stop()


def test_max_sessions_per_runtime_bounds_concurrent_sessions(harness):
    registry = Registry()
    lock = threading.Lock()
    active: dict[str, int] = {}
    most = [0]

    @registry.activity("InSession")
    def in_session(ctx, _):
        with lock:
            active[ctx.session_id] = active.get(ctx.session_id, 0) + 1
            most[0] = max(most[0], len(active))
        time.sleep(0.05)
        with lock:
            active[ctx.session_id] -= 1
            if not active[ctx.session_id]:
                del active[ctx.session_id]
        return ctx.session_id

    @registry.orchestration("TwoSessions")
    def two_sessions(ctx, _):
        tasks = [ctx.schedule_activity_on_session("InSession", i, f"s{i % 2}") for i in range(4)]
        return (yield ctx.join(tasks))

    with harness.runtime(registry, max_sessions_per_runtime=1, worker_concurrency=4):
        harness.client.start_orchestration("two", "TwoSessions")
        status = harness.client.wait_for_orchestration("two", timeout=TIMEOUT)
    assert status.output == ["s0", "s1", "s0", "s1"]
    assert most[0] == 1


def test_tags_route_activities_and_select_guards_unserved_tags(harness):
    registry = Registry()

    @registry.activity("Render")
    def render(ctx, _):
        return {"tag": ctx.tag, "worker": ctx.worker_id}

    @registry.orchestration("Routed")
    def routed(ctx, _):
        plain = yield ctx.schedule_activity("Render")
        gpu = yield ctx.schedule_activity("Render").with_tag("gpu")
        index, _value = yield ctx.select(
            ctx.schedule_activity("Render", tag="tpu"), ctx.schedule_timer(0.1)
        )
        return {"plain": plain, "gpu": gpu, "tpu_timed_out": index == 1}

    with (
        harness.runtime(registry, worker_node_id="cpu"),
        harness.runtime(
            registry,
            provider=harness.new_provider(),
            worker_node_id="gpu-box",
            worker_tag_filter=TagFilter.tags(["gpu"]),
        ),
    ):
        harness.client.start_orchestration("routed", "Routed")
        status = harness.client.wait_for_orchestration("routed", timeout=TIMEOUT)
    assert status.output == {
        "plain": {"tag": None, "worker": "cpu"},
        "gpu": {"tag": "gpu", "worker": "gpu-box"},
        "tpu_timed_out": True,
    }


# -- poison ---------------------------------------------------------------------------------------


def test_unregistered_names_are_poisoned_after_backoff(harness):
    registry = Registry()

    @registry.orchestration("CallsMissing")
    def calls_missing(ctx, _):
        try:
            yield ctx.schedule_activity("NotDeployed")
        except ActivityFailed as failure:
            return {"kind": failure.details.kind, "category": failure.details.category}
        return "ran?"

    with harness.runtime(registry, max_attempts=3) as rt:
        client = harness.client
        client.start_orchestration("no-orch", "NotDeployedEither")
        client.start_orchestration("no-act", "CallsMissing")
        orch = client.wait_for_orchestration("no-orch", timeout=TIMEOUT)
        act = client.wait_for_orchestration("no-act", timeout=TIMEOUT)
        metrics = rt.metrics()
    assert isinstance(orch, Failed)
    assert orch.details.category == "infrastructure" and orch.details.kind == "poison"
    assert act.output == {"kind": "poison", "category": "infrastructure"}
    assert metrics.orchestrations_poisoned == 1 and metrics.activities_poisoned == 1
    assert metrics.orchestration_abandons >= 3 and metrics.activity_abandons >= 3


# -- restarts and shutdown ---------------------------------------------------------------------------


def test_restart_mid_workflow_resumes_without_rerunning_activities(harness):
    registry = Registry()
    runs: list[int] = []
    hold = threading.Event()

    @registry.activity("Step")
    def step(ctx, n):
        runs.append(n)
        if n == 3:
            hold.wait(10)
        return n

    @registry.orchestration("Steps")
    def steps(ctx, count):
        total = 0
        for n in range(1, count + 1):
            total += yield ctx.schedule_activity("Step", n)
            ctx.set_kv_value("done", n)
        return total

    first = harness.runtime(registry)
    client = harness.client
    client.start_orchestration("restart", "Steps", 5)
    _wait_until(lambda: 3 in runs, what="step 3 running")
    hold.set()  # step 3 finishes during the graceful shutdown and is committed
    first.stop(timeout=5)
    done_before = client.get_kv_value("restart", "done")
    assert done_before is not None and done_before >= 2

    provider = harness.new_provider()  # a fresh process would open the store again
    with harness.runtime(registry, provider=provider):
        status = harness.client_for(provider).wait_for_orchestration("restart", timeout=TIMEOUT)
    assert status.output == 15
    assert sorted(runs) == [1, 2, 3, 4, 5], f"an activity ran twice: {runs}"


def test_shutdown_requeues_activities_that_do_not_finish(harness):
    registry = Registry()
    attempts: list[int] = []

    @registry.activity("Slow")
    def slow(ctx, _):
        attempts.append(ctx.attempt)
        if len(attempts) == 1:
            ctx.cancelled().wait(10)  # first run: only ends when cancelled at shutdown
            return "first run (dropped)"
        return "second run"

    @registry.orchestration("OneSlow")
    def one_slow(ctx, _):
        return (yield ctx.schedule_activity("Slow"))

    first = harness.runtime(registry)
    harness.client.start_orchestration("slow", "OneSlow")
    _wait_until(lambda: attempts, what="first run started")
    first.stop(timeout=0.2)
    with harness.runtime(registry):
        status = harness.client.wait_for_orchestration("slow", timeout=TIMEOUT)
    assert status.output == "second run"
    assert len(attempts) == 2


# -- wake-ups ------------------------------------------------------------------------------------------


def test_local_work_and_timers_wake_dispatchers_without_polling(harness):
    """With a 60 s backstop poll, only in-process wake-ups and timer deadlines can finish this."""
    registry = Registry()

    @registry.activity("Ping")
    def ping(ctx, n):
        return n + 1

    @registry.orchestration("Sleepy")
    def sleepy(ctx, n):
        n = yield ctx.schedule_activity("Ping", n)
        yield ctx.schedule_timer(0.1)
        return (yield ctx.schedule_activity("Ping", n))

    with harness.runtime(registry, poll_interval=60.0):
        time.sleep(0.05)  # every slot is idle, asleep for the full poll interval
        harness.client.start_orchestration("sleepy", "Sleepy", 1)
        assert harness.client.wait_for_orchestration("sleepy", timeout=20).output == 3


@pytest.mark.parametrize("driver", ["threads", "asyncio", "trio"])
def test_work_written_by_another_process_is_found_by_the_backstop_poll(driver, tmp_path):
    from durox.drivers.threads import Client
    from durox.providers.sqlite import SqliteProvider

    from .conftest import make_harness

    registry = Registry()

    @registry.activity("Ping")
    def ping(ctx, n):
        return n + 1

    @registry.orchestration("Remote")
    def remote(ctx, n):
        return (yield ctx.schedule_activity("Ping", n))

    harness = make_harness(driver, "sqlite", "cache", tmp_path)
    other_process = SqliteProvider(
        tmp_path / "durox.db"
    )  # a separate provider: no in-process wake-up
    try:
        with harness.runtime(registry, poll_interval=0.1):
            client = Client(other_process)
            client.start_orchestration("remote", "Remote", 41)
            assert client.wait_for_orchestration("remote", timeout=20).output == 42
    finally:
        other_process.close()
        harness.close()


# -- lock renewal -------------------------------------------------------------------------------------


def test_locks_are_renewed_while_turns_and_activities_run(harness):
    """Work that outlives its lock timeout keeps its lock: nothing runs twice, no ack is refused."""
    registry = Registry()
    runs: list[str] = []

    @registry.activity("Long")
    def long_activity(ctx, _):
        runs.append("activity")
        time.sleep(0.6)  # one and a half lock timeouts
        return "done"

    @registry.orchestration("SlowTurn")
    def slow_turn(ctx, _):
        if not ctx.is_replaying:
            runs.append("turn")
            time.sleep(0.6)  # a (badly behaved) slow turn
        return (yield ctx.schedule_activity("Long"))

    with harness.runtime(registry, orchestrator_lock_timeout=0.4, worker_lock_timeout=0.4) as rt:
        harness.client.start_orchestration("slow", "SlowTurn")
        status = harness.client.wait_for_orchestration("slow", timeout=TIMEOUT)
        metrics = rt.metrics()
    assert status.output == "done"
    assert runs.count("activity") == 1
    assert metrics.lock_lost == 0 and metrics.activities_cancelled == 0
