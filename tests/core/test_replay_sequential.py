"""Sequential progress: one command per turn, history grows, replay reaches the same point."""

from __future__ import annotations

from typing import Any

from durox.core import history, outcome
from tests.core.builders import (
    act_done,
    act_failed,
    completed,
    kinds,
    scheduled,
    started,
    turn,
)


def chain(ctx: Any, value: str) -> Any:
    a = yield ctx.schedule_activity("A", value)
    b = yield ctx.schedule_activity("B", a)
    return f"{a}+{b}"


def test_each_turn_appends_the_next_step() -> None:
    first = turn(chain, input="x")
    assert kinds(first.new_events) == ["OrchestrationStarted", "ActivityScheduled"]
    h = list(first.new_events)

    second = turn(chain, h, [act_done(2, '"a1"')])
    assert second.new_events == (
        history.ActivityCompleted(
            event_id=3, timestamp_ms=second.new_events[0].timestamp_ms, source_id=2, result='"a1"'
        ),
        history.ActivityScheduled(
            event_id=4, timestamp_ms=second.new_events[1].timestamp_ms, name="B", input='"a1"'
        ),
    )
    assert [w.id for w in second.worker_items] == [4]
    h += second.new_events

    third = turn(chain, h, [act_done(4, '"b1"')])
    assert kinds(third.new_events) == ["ActivityCompleted", "OrchestrationCompleted"]
    assert third.outcome == outcome.Complete(output='"a1+b1"')
    assert third.worker_items == ()


def test_full_replay_of_a_finished_step_produces_nothing_new() -> None:
    h = [
        started(1, input='"x"'),
        scheduled(2, "A", '"x"'),
        completed(3, 2, '"a"'),
        scheduled(4, "B", '"a"'),
    ]
    result = turn(chain, h)
    assert result.new_events == ()
    assert result.worker_items == ()
    assert result.outcome == outcome.Continue()


def test_completions_delivered_in_one_turn_drive_several_steps() -> None:
    h = [started(1, input='"x"'), scheduled(2, "A", '"x"')]
    # B's completion cannot arrive before B exists; but A's result moves the code to B.
    result = turn(chain, h, [act_done(2, '"a"')])
    assert kinds(result.new_events) == ["ActivityCompleted", "ActivityScheduled"]


def test_sticky_state_continues_exactly_like_a_full_replay() -> None:
    first = turn(chain, input="x")
    h = list(first.new_events)
    sticky = turn(chain, h, [act_done(2, '"a"')], state=first.state)
    full = turn(chain, h, [act_done(2, '"a"')])
    assert sticky.new_events == full.new_events
    assert sticky.worker_items == full.worker_items
    h += sticky.new_events
    assert turn(chain, h, [act_done(4, '"b"')], state=sticky.state).outcome == outcome.Complete(
        output='"a+b"'
    )


def test_stale_state_is_ignored_and_history_replayed() -> None:
    first = turn(chain, input="x")
    h = list(first.new_events)
    second = turn(chain, h, [act_done(2, '"a"')], state=first.state)
    h += second.new_events
    # first.state is the very object second advanced; pretend the cache handed over an
    # unrelated state: another instance's state never matches.
    other = turn(chain, input="y", instance="other")
    result = turn(chain, h, [act_done(4, '"b"')], state=other.state)
    assert result.outcome == outcome.Complete(output='"a+b"')


def test_activity_failure_is_raised_at_the_yield() -> None:
    caught: list[Any] = []

    def orch(ctx: Any, _: Any) -> Any:
        try:
            yield ctx.schedule_activity("A")
        except Exception as exc:
            caught.append(exc)
            return "handled"

    h = list(turn(orch).new_events)
    result = turn(orch, h, [act_failed(2, "no disk", "OSError", attempt=3)])
    assert result.outcome == outcome.Complete(output='"handled"')
    exc = caught[-1]
    assert type(exc).__name__ == "ActivityFailed"
    assert (exc.message, exc.error_type, exc.attempt) == ("no disk", "OSError", 3)
    assert exc.details.kind == "activity_failed"


def test_unhandled_activity_failure_fails_the_orchestration_with_its_type() -> None:
    h = list(turn(chain, input="x").new_events)
    result = turn(chain, h, [act_failed(2, "no disk", "OSError")])
    assert isinstance(result.outcome, outcome.Fail)
    assert (result.outcome.details.message, result.outcome.details.error_type) == (
        "no disk",
        "OSError",
    )
    assert kinds(result.new_events) == ["ActivityFailed", "OrchestrationFailed"]


def test_typed_activity_result() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        value = yield ctx.schedule_activity("A", result_type=tuple[int, int])
        return [*list(value), type(value).__name__]

    h = list(turn(orch).new_events)
    result = turn(orch, h, [act_done(2, "[1,2]")])
    assert result.outcome == outcome.Complete(output='[1,2,"tuple"]')


def test_result_that_does_not_fit_the_type_raises_payload_error() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        try:
            yield ctx.schedule_activity("A", result_type=int)
        except Exception as exc:
            return type(exc).__name__

    h = list(turn(orch).new_events)
    assert turn(orch, h, [act_done(2, '"nope"')]).outcome == outcome.Complete(
        output='"PayloadError"'
    )
