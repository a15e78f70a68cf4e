"""Durable timers: fire times from the turn's clock, recorded, replayed, raced."""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import pytest

from durox.core import history, outcome
from durox.core.errors import InvalidArgument
from tests.core.builders import T0, fired, kinds, started, timer, timer_due, turn

Gen = Generator[Any, Any, Any]


def sleeper(ctx: Any, _: Any) -> Gen:
    yield ctx.schedule_timer(timedelta(minutes=1))
    yield ctx.schedule_timer(0.5)
    return "awake"


def test_fire_time_is_now_plus_delay_at_the_turn_that_creates_it() -> None:
    h = list(turn(sleeper, now_ms=T0).new_events)
    assert h[1] == history.TimerCreated(event_id=2, timestamp_ms=T0, fire_at_ms=T0 + 60_000)
    later = T0 + 61_000
    result = turn(sleeper, h, [timer_due(2, T0 + 60_000)], now_ms=later)
    assert result.new_events == (
        history.TimerFired(event_id=3, timestamp_ms=later, source_id=2, fire_at_ms=T0 + 60_000),
        history.TimerCreated(event_id=4, timestamp_ms=later, fire_at_ms=later + 500),
    )
    assert result.orchestrator_items[0].delay_ms == 500


def test_replay_does_not_recompute_fire_times() -> None:
    h = [started(1), timer(2, 123), fired(3, 2, 123), timer(4, 456)]
    result = turn(sleeper, h, now_ms=T0 * 5)
    assert result.new_events == () and result.orchestrator_items == ()
    assert turn(sleeper, h, [timer_due(4, 456)]).outcome == outcome.Complete(output='"awake"')


def test_zero_delay_timer_is_still_durable() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        yield ctx.schedule_timer(0)
        return 1

    first = turn(orch)
    assert kinds(first.new_events) == ["OrchestrationStarted", "TimerCreated"]
    assert first.orchestrator_items[0].delay_ms == 0
    assert first.outcome == outcome.Continue()


def test_duplicate_timer_message_is_ignored() -> None:
    h = list(turn(sleeper).new_events)
    result = turn(sleeper, h, [timer_due(2), timer_due(2)])
    assert kinds(result.new_events) == ["TimerFired", "TimerCreated"]


def test_timer_for_another_execution_is_ignored() -> None:
    h = list(turn(sleeper).new_events)
    assert turn(sleeper, h, [timer_due(2, execution_id=2)]).new_events == ()


@pytest.mark.parametrize("delay", [-1, float("nan"), float("inf"), "5", True])
def test_bad_delays_raise_into_the_code(delay: Any) -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        try:
            ctx.schedule_timer(delay)
        except InvalidArgument as exc:
            return str(exc)
        yield  # pragma: no cover

    result = turn(orch)
    assert isinstance(result.outcome, outcome.Complete)
    assert "timer delay" in result.outcome.output


def test_timer_loses_to_a_completion_recorded_first() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        index, _ = yield ctx.select(ctx.schedule_timer(5), ctx.schedule_wait("Go"))
        return index

    h = list(turn(orch).new_events)
    from tests.core.builders import event

    result = turn(orch, h, [event("Go"), timer_due(2)])
    assert result.outcome == outcome.Complete(output="1")
    # a timer loser needs no breadcrumb: there is nothing to cancel
    assert kinds(result.new_events) == [
        "ExternalEvent",
        "TimerFired",
        "OrchestrationCompleted",
    ]
