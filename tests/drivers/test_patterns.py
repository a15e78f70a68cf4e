"""Every orchestration pattern of the guide, end to end, on every driver × provider × cache."""

from __future__ import annotations

import json
import threading

import pytest

from durox import (
    ActivityFailed,
    Backoff,
    Completed,
    Failed,
    Registry,
    RetryPolicy,
    SubOrchestrationFailed,
)

TIMEOUT = 15


def test_function_chaining(harness):
    registry = Registry()

    @registry.activity("Add")
    def add(ctx, pair):
        return pair[0] + pair[1]

    @registry.activity("Double")
    async def double(ctx, value: int) -> int:
        return value * 2

    @registry.orchestration("Chain")
    def chain(ctx, start):
        total = yield ctx.schedule_activity("Add", [start, 1])
        total = yield ctx.schedule_activity("Double", total)
        total = yield ctx.schedule_activity("Add", [total, 10])
        return total

    with harness.runtime(registry):
        harness.client.start_orchestration("chain", "Chain", 4)
        status = harness.client.wait_for_orchestration("chain", timeout=TIMEOUT)
    assert status == Completed(20)
    assert status.status == "Completed"


def test_fan_out_fan_in(harness):
    registry = Registry()

    @registry.activity("Square")
    def square(ctx, n):
        return n * n

    @registry.orchestration("FanOut")
    def fan_out(ctx, count):
        tasks = [ctx.schedule_activity("Square", n) for n in range(count)]
        results = yield ctx.join(tasks)
        return {"results": results, "sum": sum(results)}

    with harness.runtime(registry):
        harness.client.start_orchestration("fan", "FanOut", 8)
        status = harness.client.wait_for_orchestration("fan", timeout=TIMEOUT)
    assert status.output == {"results": [n * n for n in range(8)], "sum": 140}


def _approval_registry():
    registry = Registry()

    @registry.activity("Notify")
    def notify(ctx, text):
        return f"sent {text}"

    @registry.orchestration("Approval")
    def approval(ctx, timeout):
        yield ctx.schedule_activity("Notify", "approve please")
        index, value = yield ctx.select(ctx.schedule_wait("Approved"), ctx.schedule_timer(timeout))
        if index == 0:
            return {"approved": True, "by": value["by"]}
        return {"approved": False, "reason": "timeout"}

    return registry


def test_human_in_the_loop_approved(harness):
    registry = _approval_registry()
    with harness.runtime(registry):
        client = harness.client
        client.start_orchestration("hitl-yes", "Approval", 30)
        # Raise only once the wait is subscribed (events before that are dropped).
        _wait_for_history(client, "hitl-yes", "ExternalSubscribed")
        client.raise_event("hitl-yes", "Approved", {"by": "alice"})
        status = client.wait_for_orchestration("hitl-yes", timeout=TIMEOUT)
    assert status.output == {"approved": True, "by": "alice"}
    kinds = _kinds(harness.client.read_execution_history("hitl-yes"))
    assert "TimerCreated" in kinds and "TimerFired" not in kinds


def test_human_in_the_loop_timeout(harness):
    registry = _approval_registry()
    with harness.runtime(registry):
        harness.client.start_orchestration("hitl-no", "Approval", 0.1)
        status = harness.client.wait_for_orchestration("hitl-no", timeout=TIMEOUT)
    assert status.output == {"approved": False, "reason": "timeout"}
    assert "ExternalSubscriptionCancelled" in _kinds(
        harness.client.read_execution_history("hitl-no")
    )


def test_saga_compensation(harness):
    registry = Registry()
    done: list[str] = []

    @registry.activity("Reserve")
    def reserve(ctx, item):
        done.append(f"reserve {item}")
        return f"res-{item}"

    @registry.activity("Release")
    def release(ctx, reservation):
        done.append(f"release {reservation}")

    @registry.activity("Ship")
    def ship(ctx, order):
        raise RuntimeError("carrier unavailable")

    @registry.orchestration("Saga")
    def saga(ctx, items):
        reservations = yield ctx.join([ctx.schedule_activity("Reserve", item) for item in items])
        try:
            yield ctx.schedule_activity("Ship", reservations)
        except ActivityFailed as failure:
            for reservation in reversed(reservations):
                yield ctx.schedule_activity("Release", reservation)
            return {"status": "compensated", "error": failure.message, "type": failure.error_type}
        return {"status": "shipped"}

    with harness.runtime(registry):
        harness.client.start_orchestration("saga", "Saga", ["a", "b"])
        status = harness.client.wait_for_orchestration("saga", timeout=TIMEOUT)
    assert status.output == {
        "status": "compensated",
        "error": "carrier unavailable",
        "type": "RuntimeError",
    }
    assert done[-2:] == ["release res-b", "release res-a"]


def test_retry_with_backoff(harness):
    registry = Registry()
    calls: list[int] = []

    @registry.activity("Flaky")
    def flaky(ctx, succeed_on):
        calls.append(ctx.attempt)
        if len(calls) < succeed_on:
            raise ConnectionError(f"try {len(calls)} failed")
        return len(calls)

    @registry.orchestration("Retry")
    def retry(ctx, succeed_on):
        policy = RetryPolicy(
            max_attempts=3, backoff=Backoff.exponential(0.02, multiplier=2.0, max=0.1)
        )
        try:
            return (yield ctx.schedule_activity_with_retry("Flaky", succeed_on, policy))
        except ActivityFailed as failure:
            return f"gave up: {failure.message}"

    with harness.runtime(registry):
        harness.client.start_orchestration("retry-ok", "Retry", 3)
        assert harness.client.wait_for_orchestration("retry-ok", timeout=TIMEOUT).output == 3
        calls.clear()
        harness.client.start_orchestration("retry-fail", "Retry", 10)
        status = harness.client.wait_for_orchestration("retry-fail", timeout=TIMEOUT)
    assert status.output == "gave up: try 3 failed"
    history = harness.client.read_execution_history("retry-fail")
    assert _kinds(history).count("ActivityFailed") == 3
    assert _kinds(history).count("TimerCreated") == 2  # a backoff between attempts


def test_retry_timeout_per_attempt(harness):
    registry = Registry()

    @registry.activity("Slow")
    async def slow(ctx, _):
        await ctx.cancelled()  # never finishes on its own; cancelled when the attempt times out
        return "late"

    @registry.orchestration("RetryTimeout")
    def retry_timeout(ctx, _):
        policy = RetryPolicy(max_attempts=2, timeout=0.1, backoff=Backoff.none())
        try:
            yield ctx.schedule_activity_with_retry("Slow", None, policy)
        except ActivityFailed as failure:
            return failure.message
        return "unexpected"

    with harness.runtime(registry, activity_cancellation_grace_period=0.2):
        harness.client.start_orchestration("rt", "RetryTimeout")
        status = harness.client.wait_for_orchestration("rt", timeout=TIMEOUT)
    assert "timed out" in status.output
    kinds = _kinds(harness.client.read_execution_history("rt"))
    assert kinds.count("ActivityCancelRequested") == 2


def test_sub_orchestrations(harness):
    registry = Registry()

    @registry.activity("Upper")
    def upper(ctx, text):
        return text.upper()

    @registry.orchestration("Child")
    def child(ctx, text):
        if text == "boom":
            raise ValueError("child exploded")
        return (yield ctx.schedule_activity("Upper", text))

    @registry.orchestration("Parent")
    def parent(ctx, words):
        results = yield ctx.join([ctx.schedule_sub_orchestration("Child", w) for w in words])
        try:
            yield ctx.schedule_sub_orchestration("Child", "boom", instance_id="explicit-child")
        except SubOrchestrationFailed as failure:
            return {"results": results, "failure": failure.message}
        return {"results": results}

    with harness.runtime(registry):
        harness.client.start_orchestration("parent", "Parent", ["a", "b"])
        status = harness.client.wait_for_orchestration("parent", timeout=TIMEOUT)
        child_status = harness.client.get_orchestration_status("explicit-child")
    assert status.output["results"] == ["A", "B"]
    assert "child exploded" in status.output["failure"]
    assert isinstance(child_status, Failed)
    assert child_status.details.category == "application"


def test_eternal_monitor_continue_as_new(harness):
    registry = Registry()

    @registry.activity("Check")
    def check(ctx, n):
        return n % 2 == 0

    @registry.orchestration("Monitor")
    def monitor(ctx, state):
        healthy = yield ctx.schedule_activity("Check", state["round"])
        state = {"round": state["round"] + 1, "healthy": state["healthy"] + int(healthy)}
        if state["round"] >= 4:
            return state
        yield ctx.schedule_timer(0.01)
        return (yield ctx.continue_as_new(state))

    with harness.runtime(registry):
        harness.client.start_orchestration("monitor", "Monitor", {"round": 0, "healthy": 0})
        status = harness.client.wait_for_orchestration("monitor", timeout=TIMEOUT)
    assert status.output == {"round": 4, "healthy": 2}
    assert harness.client.list_executions("monitor") == [1, 2, 3, 4]


def test_actor_style_event_loop(harness):
    """An actor: a long-lived instance that processes commands from its queue."""
    registry = Registry()

    @registry.orchestration("Counter")
    def counter(ctx, total):
        while True:
            command = yield ctx.dequeue_event("commands")
            if command["op"] == "add":
                total += command["value"]
                ctx.set_kv_value("total", total)
            elif command["op"] == "stop":
                return total

    with harness.runtime(registry):
        client = harness.client
        client.start_orchestration("actor", "Counter", 0)
        _wait_for_history(client, "actor", "QueueSubscribed")
        for value in (1, 2, 3):
            client.enqueue_event("actor", "commands", {"op": "add", "value": value})
        client.enqueue_event("actor", "commands", {"op": "stop"})
        status = client.wait_for_orchestration("actor", timeout=TIMEOUT)
        assert client.get_kv_value("actor", "total") == 6
    assert status.output == 6


def test_kv_and_custom_status_progress(harness):
    registry = Registry()
    gate = threading.Event()

    @registry.activity("Step")
    def step(ctx, n):
        if n == 2:
            gate.wait(10)
        return n

    @registry.orchestration("Progress")
    def progress(ctx, steps):
        for n in range(1, steps + 1):
            yield ctx.schedule_activity("Step", n)
            ctx.set_kv_value("done", n)
            ctx.set_custom_status({"done": n, "of": steps})
        return "finished"

    with harness.runtime(registry):
        client = harness.client
        client.start_orchestration("prog", "Progress", 3)
        assert client.wait_for_kv_value("prog", "done", timeout=TIMEOUT) == 1
        status = client.wait_for_status_change("prog", 0, timeout=TIMEOUT)
        assert json.loads(status.custom_status) == {"done": 1, "of": 3}
        seen = status.custom_status_version
        gate.set()
        final = client.wait_for_orchestration("prog", timeout=TIMEOUT)
        assert client.get_kv_all_values("prog") == {"done": 3}
    assert final.output == "finished"
    assert final.custom_status_version > seen
    assert json.loads(final.custom_status) == {"done": 3, "of": 3}


def test_event_queue_chat_loop(harness):
    registry = Registry()

    @registry.activity("Reply")
    def reply(ctx, text):
        return f"echo: {text}"

    @registry.orchestration("Chat")
    def chat(ctx, _):
        transcript = []
        while True:
            message = yield ctx.dequeue_event("inbox")
            if message == "bye":
                return transcript
            answer = yield ctx.schedule_activity("Reply", message)
            transcript.append(answer)
            ctx.set_custom_status(answer)

    with harness.runtime(registry):
        client = harness.client
        client.start_orchestration("chat", "Chat")
        _wait_for_history(client, "chat", "QueueSubscribed")
        for text in ("hi", "how are you", "bye"):
            client.enqueue_event("chat", "inbox", text)
        status = client.wait_for_orchestration("chat", timeout=TIMEOUT)
    assert status.output == ["echo: hi", "echo: how are you"]


def test_dynamic_activity_names_and_conditional_approval(harness):
    registry = Registry()

    for region in ("eu", "us"):

        def provision(ctx, size, region=region):
            return f"{region}:{size}"

        registry.add_activity(f"Provision-{region}", provision)

    @registry.activity("GetValue")
    def get_value(ctx, order):
        return order["value"]

    @registry.orchestration("Conditional")
    def conditional(ctx, order):
        value = yield ctx.schedule_activity("GetValue", order)
        if value > 100:
            decision = yield ctx.schedule_wait("Manager")
            if not decision["ok"]:
                return "rejected"
        return (yield ctx.schedule_activity(f"Provision-{order['region']}", value))

    with harness.runtime(registry):
        client = harness.client
        client.start_orchestration("small", "Conditional", {"value": 5, "region": "eu"})
        client.start_orchestration("big", "Conditional", {"value": 500, "region": "us"})
        client.start_orchestration("bigno", "Conditional", {"value": 500, "region": "us"})
        assert client.wait_for_orchestration("small", timeout=TIMEOUT).output == "eu:5"
        _wait_for_history(client, "big", "ExternalSubscribed")
        _wait_for_history(client, "bigno", "ExternalSubscribed")
        client.raise_event("big", "Manager", {"ok": True})
        client.raise_event("bigno", "Manager", {"ok": False})
        assert client.wait_for_orchestration("big", timeout=TIMEOUT).output == "us:500"
        assert client.wait_for_orchestration("bigno", timeout=TIMEOUT).output == "rejected"


def test_uncaught_exception_fails_orchestration(harness):
    registry = Registry()

    @registry.activity("Boom")
    def boom(ctx, _):
        raise KeyError("missing")

    @registry.orchestration("Fails")
    def fails(ctx, _):
        yield ctx.schedule_activity("Boom")

    with harness.runtime(registry) as rt:
        harness.client.start_orchestration("fails", "Fails")
        status = harness.client.wait_for_orchestration("fails", timeout=TIMEOUT)
        metrics = rt.metrics()
    assert isinstance(status, Failed)
    assert status.status == "Failed"
    assert status.details.category == "application"
    assert "missing" in status.details.display_message()
    assert metrics.orchestrations_failed == 1 and metrics.activities_failed == 1
    assert metrics.failures_by_category["application"] == 2


def test_deterministic_values_and_detached_orchestration(harness):
    registry = Registry()

    @registry.orchestration("Leaf")
    def leaf(ctx, value):
        ctx.set_kv_value("got", value)
        return value
        yield  # a generator function

    @registry.orchestration("Root")
    def root(ctx, _):
        guid = yield ctx.new_guid()
        now = yield ctx.utc_now()
        ctx.schedule_orchestration("Leaf", "detached-leaf", guid)
        return {"guid": guid, "year": now.year}

    with harness.runtime(registry):
        harness.client.start_orchestration("root", "Root")
        status = harness.client.wait_for_orchestration("root", timeout=TIMEOUT)
        leaf_status = harness.client.wait_for_orchestration("detached-leaf", timeout=TIMEOUT)
    assert leaf_status.output == status.output["guid"]
    assert status.output["year"] >= 2024


def test_get_kv_value_from_instance(harness):
    registry = Registry()

    @registry.orchestration("Writer")
    def writer(ctx, _):
        ctx.set_kv_value("config", {"level": 3})
        yield ctx.schedule_wait("never")

    @registry.orchestration("Reader")
    def reader(ctx, source):
        value = yield ctx.get_kv_value_from_instance(source, "config")
        missing = yield ctx.get_kv_value_from_instance(source, "nope")
        return {"value": value, "missing": missing}

    with harness.runtime(registry):
        client = harness.client
        client.start_orchestration("writer", "Writer")
        client.wait_for_kv_value("writer", "config", timeout=TIMEOUT)
        client.start_orchestration("reader", "Reader", "writer")
        status = client.wait_for_orchestration("reader", timeout=TIMEOUT)
        client.cancel_instance("writer", "done")
        client.wait_for_orchestration("writer", timeout=TIMEOUT)
    assert status.output == {"value": {"level": 3}, "missing": None}


# -- helpers ------------------------------------------------------------------------------


def _kinds(events):
    return [type(event).__name__ for event in events]


def _wait_for_history(client, instance, kind, timeout=TIMEOUT):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if kind in _kinds(client.read_execution_history(instance)):
                return
        except LookupError:
            pass
        time.sleep(0.01)
    pytest.fail(f"{instance} never recorded {kind}")
