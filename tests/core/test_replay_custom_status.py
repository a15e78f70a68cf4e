"""Custom status: set, reset, read back, replayed, carried across continue_as_new."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from durox.core import history, outcome
from durox.core.errors import PayloadError
from tests.core.builders import T0, kinds, started, status_set, timer, timer_due, turn

Gen = Generator[Any, Any, Any]


def progress(ctx: Any, _: Any) -> Gen:
    ctx.set_custom_status("starting")
    yield ctx.schedule_timer(1)
    ctx.set_custom_status({"pct": 50})
    yield ctx.schedule_timer(1)
    ctx.reset_custom_status()
    return ctx.get_custom_status()


def test_each_change_is_recorded_and_reported() -> None:
    first = turn(progress)
    assert first.new_events[1] == history.CustomStatusUpdated(
        event_id=2, timestamp_ms=T0, status="starting"
    )
    assert (first.custom_status_changed, first.custom_status) == (True, "starting")
    h = list(first.new_events)
    second = turn(progress, h, [timer_due(3)])
    assert (second.custom_status_changed, second.custom_status) == (True, '{"pct":50}')
    h += second.new_events
    third = turn(progress, h, [timer_due(6)])
    assert (third.custom_status_changed, third.custom_status) == (True, None)
    assert third.outcome == outcome.Complete(output="null")


def test_turn_without_a_change_reports_the_current_status_unchanged() -> None:
    h = [started(1), status_set(2, "starting"), timer(3, 9)]
    result = turn(progress, h)
    assert (result.custom_status_changed, result.custom_status) == (False, "starting")
    assert result.new_events == ()


def test_initial_status_comes_from_the_previous_execution() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        return ctx.get_custom_status()
        yield  # pragma: no cover

    result = turn(orch, started_event=started(1, initial_custom_status="carried"))
    assert result.outcome == outcome.Complete(output='"carried"')
    assert result.custom_status_changed is False


def test_status_text_is_not_compared_on_replay() -> None:
    # status text may embed clock values; only the call itself must recur
    h = [started(1), status_set(2, "at 12:00"), timer(3, 9)]
    result = turn(progress, h)
    assert result.outcome == outcome.Continue()


def test_missing_status_call_on_replay_is_nondeterminism() -> None:
    def v2(ctx: Any, _: Any) -> Gen:
        yield ctx.schedule_timer(1)

    result = turn(v2, [started(1), status_set(2, "x"), timer(3, 9)])
    assert isinstance(result.outcome, outcome.Fail)
    assert result.outcome.details.kind == "nondeterminism"


def test_oversized_status_raises() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        try:
            ctx.set_custom_status("x" * (256 * 1024 + 1))
        except PayloadError as exc:
            return str(exc)
        yield  # pragma: no cover

    result = turn(orch)
    assert isinstance(result.outcome, outcome.Complete)
    assert "over the limit of 262144" in result.outcome.output
    assert kinds(result.new_events) == ["OrchestrationStarted", "OrchestrationCompleted"]
