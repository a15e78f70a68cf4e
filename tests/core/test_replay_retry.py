"""RetryPolicy: backoff timers, per-attempt and total timeouts, exhausted attempts."""

from __future__ import annotations

import math
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import pytest

from durox.core import history, outcome
from durox.core.errors import ActivityFailed, InvalidArgument
from durox.core.registry import Registry
from durox.core.retry import Backoff, RetryPolicy, seconds
from tests.core.builders import T0, act_failed, kinds, timer_due, turn
from tests.core.harness import World

Gen = Generator[Any, Any, Any]


def _world(policy: RetryPolicy, failures: int) -> World:
    registry = Registry()
    calls: list[int] = []

    def flaky(ctx: Any, _: Any) -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionError(f"attempt {len(calls)} failed")
        return f"ok after {len(calls)}"

    def orch(ctx: Any, _: Any) -> Gen:
        try:
            return (yield ctx.schedule_activity_with_retry("Flaky", None, policy))
        except ActivityFailed as exc:
            return {"failed": exc.message, "type": exc.error_type}

    registry.add_activity("Flaky", flaky)
    registry.add_orchestration("Retry", orch)
    world = World(registry)
    world.start("r", "Retry")
    world.run()
    return world


def _delays(world: World) -> list[int]:
    return [
        e.fire_at_ms - e.timestamp_ms
        for e in world.history("r")
        if isinstance(e, history.TimerCreated)
    ]


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        (Backoff.none(), []),
        (Backoff.fixed(2), [2000, 2000, 2000]),
        (Backoff.fixed(timedelta(milliseconds=1500)), [1500, 1500, 1500]),
        (Backoff.linear(1.0, max=2.5), [1000, 2000, 2500]),
        (Backoff.exponential(1.0, multiplier=3.0, max=5.0), [1000, 3000, 5000]),
    ],
    ids=["none", "fixed", "fixed-timedelta", "linear", "exponential"],
)
def test_backoff_delays_become_timers(backoff: Backoff, delays: list[int]) -> None:
    world = _world(RetryPolicy(max_attempts=4, backoff=backoff), failures=3)
    assert world.output("r") == "ok after 4"
    assert _delays(world) == delays
    scheduled = [e for e in world.history("r") if isinstance(e, history.ActivityScheduled)]
    assert len(scheduled) == 4
    warnings = [t for t in world.traces if t.startswith("warning: activity 'Flaky' attempt")]
    assert warnings == [
        f"warning: activity 'Flaky' attempt {n}/4 failed: attempt {n} failed" for n in (1, 2, 3)
    ]


def test_exhausted_attempts_raise_the_last_failure() -> None:
    world = _world(RetryPolicy(max_attempts=3, backoff=Backoff.none()), failures=10)
    assert world.output("r") == {"failed": "attempt 3 failed", "type": "ConnectionError"}


def test_single_attempt_has_no_timers() -> None:
    world = _world(RetryPolicy(max_attempts=1), failures=1)
    assert world.output("r") == {"failed": "attempt 1 failed", "type": "ConnectionError"}
    assert _delays(world) == []


def with_timeout(ctx: Any, _: Any) -> Gen:
    policy = RetryPolicy(max_attempts=2, timeout=5, backoff=Backoff.none())
    try:
        return (yield ctx.schedule_activity_with_retry("Slow", None, policy))
    except ActivityFailed as exc:
        return [exc.message, exc.error_type, exc.attempt]


def test_per_attempt_timeout_cancels_and_retries() -> None:
    first = turn(with_timeout)
    assert kinds(first.new_events) == ["OrchestrationStarted", "ActivityScheduled", "TimerCreated"]
    h = list(first.new_events)
    second = turn(with_timeout, h, [timer_due(3)], now_ms=T0 + 5000)
    assert kinds(second.new_events) == [
        "TimerFired",
        "ActivityScheduled",
        "TimerCreated",
        "ActivityCancelRequested",
    ]
    assert [ref.id for ref in second.cancelled_activities] == [2]
    assert [t.message for t in second.traces] == [
        "activity 'Slow' attempt 1/2 failed: activity 'Slow' attempt 1 timed out after 5s"
    ]
    h += second.new_events
    last = turn(with_timeout, h, [timer_due(6)], now_ms=T0 + 10_000)
    assert last.outcome == outcome.Complete(
        output='["activity \'Slow\' attempt 2 timed out after 5s","Timeout",2]'
    )
    assert [ref.id for ref in last.cancelled_activities] == [5]


def with_total(ctx: Any, _: Any) -> Gen:
    policy = RetryPolicy(max_attempts=5, total_timeout=10, backoff=Backoff.fixed(3))
    try:
        return (yield ctx.schedule_activity_with_retry("Slow", None, policy))
    except ActivityFailed as exc:
        return [exc.message, exc.error_type]


def test_total_timeout_stops_retrying() -> None:
    first = turn(with_total)
    assert kinds(first.new_events) == ["OrchestrationStarted", "ActivityScheduled", "TimerCreated"]
    assert first.new_events[2].fire_at_ms == T0 + 10_000
    h = list(first.new_events)
    second = turn(with_total, h, [act_failed(2, "nope")], now_ms=T0 + 1000)
    assert kinds(second.new_events) == ["ActivityFailed", "TimerCreated"]  # the 3 s backoff
    h += second.new_events
    last = turn(with_total, h, [timer_due(3)], now_ms=T0 + 10_000)
    assert last.outcome == outcome.Complete(
        output='["activity \'Slow\' did not succeed within its total timeout of 10s","Timeout"]'
    )
    # the backoff timer is simply abandoned; no activity is running
    assert last.cancelled_activities == ()


def test_policy_validation() -> None:
    with pytest.raises(InvalidArgument, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(InvalidArgument, match="max_attempts"):
        RetryPolicy(max_attempts=True)
    with pytest.raises(InvalidArgument, match="timeout"):
        RetryPolicy(timeout=-1)
    with pytest.raises(InvalidArgument, match="Backoff"):
        RetryPolicy(backoff=1.0)
    with pytest.raises(InvalidArgument, match="multiplier"):
        Backoff.exponential(1.0, multiplier=0.5)
    with pytest.raises(InvalidArgument, match="must not be negative"):
        Backoff.fixed(-1)


def test_policy_must_be_a_retry_policy() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        try:
            ctx.schedule_activity_with_retry("A", None, {"max_attempts": 3})
        except InvalidArgument as exc:
            return str(exc)
        yield  # pragma: no cover

    assert turn(orch).outcome == outcome.Complete(output='"policy must be a RetryPolicy"')


def test_delay_arithmetic() -> None:
    assert [Backoff.linear(2).delay_for_attempt(a) for a in (1, 2, 3)] == [2, 4, 6]
    assert Backoff.exponential(0.1, max=30).delay_for_attempt(10**9) == 30
    assert seconds(timedelta(seconds=90)) == 90.0
    assert RetryPolicy().backoff == Backoff.exponential(0.1, multiplier=2.0, max=30.0)


@pytest.mark.parametrize("max_delay", [math.inf, 60.0])
def test_large_multiplier_and_attempt_do_not_overflow(max_delay: float) -> None:
    backoff = Backoff.exponential(1.0, multiplier=10.0, max=max_delay)
    assert backoff.delay_for_attempt(400) == max_delay


def test_total_timeout_lets_a_fast_success_through() -> None:
    world = _world(
        RetryPolicy(max_attempts=3, total_timeout=100, backoff=Backoff.fixed(1)), failures=1
    )
    assert world.output("r") == "ok after 2"
    timers = [e for e in world.history("r") if isinstance(e, history.TimerCreated)]
    assert [t.fire_at_ms - t.timestamp_ms for t in timers] == [100_000, 1000]


def test_total_timeout_reports_exhausted_attempts_as_such() -> None:
    world = _world(
        RetryPolicy(max_attempts=2, total_timeout=100, backoff=Backoff.none()), failures=5
    )
    assert world.output("r") == {"failed": "attempt 2 failed", "type": "ConnectionError"}


def test_retry_on_a_session_keeps_every_attempt_on_it() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        policy = RetryPolicy(max_attempts=2, backoff=Backoff.none())
        return (yield ctx.schedule_activity_with_retry("A", 1, policy, session_id="s", tag="t"))

    h = list(turn(orch).new_events)
    result = turn(orch, h, [act_failed(2)])
    attempts = [e for e in h + list(result.new_events) if isinstance(e, history.ActivityScheduled)]
    assert [(e.session_id, e.tag) for e in attempts] == [("s", "t"), ("s", "t")]
