"""Every way code can diverge from its history, and how the failure reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from durox.core import history, outcome
from durox.core.errors import ErrorDetails
from durox.core.replay import TurnResult
from tests.core.builders import (
    act_done,
    activity_cancelled,
    completed,
    fired,
    kinds,
    scheduled,
    started,
    sub_scheduled,
    subscribed,
    timer,
    turn,
)


def nondeterminism(result: TurnResult) -> ErrorDetails:
    assert isinstance(result.outcome, outcome.Fail), result.outcome
    details = result.outcome.details
    assert (details.category, details.kind, details.error_type) == (
        "configuration",
        "nondeterminism",
        "NondeterminismError",
    )
    last = result.new_events[-1]
    assert isinstance(last, history.OrchestrationFailed) and last.details == details
    assert result.state is None
    return details


def one_activity(name: str, input: Any = None, **kw: Any) -> Any:
    def orch(ctx: Any, _: Any) -> Any:
        return (yield ctx.schedule_activity(name, input, **kw))

    return orch


@pytest.mark.parametrize(
    ("code", "recorded", "reason"),
    [
        (one_activity("B"), scheduled(2, "A"), "name differs: code produced 'B', history has 'A'"),
        (
            one_activity("A", 2),
            scheduled(2, "A", "1"),
            "input differs: code produced '2', history has '1'",
        ),
        (
            one_activity("A", tag="gpu"),
            scheduled(2, "A", tag="cpu"),
            "tag differs: code produced 'gpu', history has 'cpu'",
        ),
        (
            one_activity("A", session_id="s2"),
            scheduled(2, "A", session_id="s1"),
            "session_id differs: code produced 's2', history has 's1'",
        ),
        (
            one_activity("A"),
            timer(2, 5),
            "kind differs: code produced ScheduleActivity, history has TimerCreated",
        ),
        (
            lambda ctx, _: (yield ctx.schedule_wait("Y")),
            subscribed(2, "X"),
            "name differs: code produced 'Y', history has 'X'",
        ),
        (
            lambda ctx, _: (yield ctx.schedule_sub_orchestration("C", instance_id="mine")),
            sub_scheduled(2, "C", "theirs"),
            "instance differs: code produced 'mine', history has 'theirs'",
        ),
    ],
    ids=["name", "input", "tag", "session", "kind", "wait-name", "child-instance"],
)
def test_field_mismatch(code: Any, recorded: history.Event, reason: str) -> None:
    details = nondeterminism(turn(code, [started(1), recorded]))
    assert details.message.startswith(f"at history position 1 (event 2): {reason}")


def test_timer_duration_is_not_compared() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        yield ctx.schedule_timer(99)

    result = turn(orch, [started(1), timer(2, 5)])
    assert result.outcome == outcome.Continue()


def test_derived_child_id_is_not_compared() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        yield ctx.schedule_sub_orchestration("C")

    result = turn(orch, [started(1), sub_scheduled(2, "C", "named-by-older-code")])
    assert result.outcome == outcome.Continue()


def test_code_producing_fewer_commands_leaves_history_over() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        return "done early"
        yield  # pragma: no cover

    details = nondeterminism(turn(orch, [started(1), scheduled(2, "A")]))
    assert "history recorded this command but the code did not produce it" in details.message
    assert "(nothing)" in details.message


def test_code_producing_an_extra_command_mismatches_the_next_recorded_one() -> None:
    def v2(ctx: Any, _: Any) -> Any:
        yield ctx.schedule_activity("A")
        yield ctx.schedule_activity("Audit")  # added in a new deployment
        yield ctx.schedule_timer(1)

    h = [started(1), scheduled(2, "A"), completed(3, 2), timer(4, 9)]
    details = nondeterminism(turn(v2, h))
    assert details.message.startswith(
        "at history position 3 (event 4): kind differs: code produced ScheduleActivity, history has TimerCreated"
    )
    assert "ScheduleActivity(name='Audit', input='null')" in details.message


def test_completion_for_a_never_scheduled_id() -> None:
    details = nondeterminism(turn(one_activity("A"), [started(1), completed(2, 9)]))
    assert "completion for event 9, which history never scheduled" in details.message


def test_duplicate_completion() -> None:
    h = [started(1), scheduled(2, "A"), completed(3, 2), completed(4, 2)]

    def orch(ctx: Any, _: Any) -> Any:
        yield ctx.schedule_activity("A")
        yield ctx.schedule_timer(1)

    details = nondeterminism(turn(orch, h))
    assert "at history position 3 (event 4): second completion for event 2" in details.message


def test_completion_kind_mismatch() -> None:
    details = nondeterminism(turn(one_activity("A"), [started(1), scheduled(2, "A"), fired(3, 2)]))
    assert "completion kind TimerFired for a ActivityScheduled event" in details.message


def test_select_loser_cancellation_not_repeated() -> None:
    def v2(ctx: Any, _: Any) -> Any:
        ctx.schedule_activity("A")  # no longer raced: never cancelled
        yield ctx.schedule_timer(1)
        return "timer"

    h = [started(1), scheduled(2, "A"), timer(3, 9), fired(4, 3), activity_cancelled(5, 2)]
    details = nondeterminism(turn(v2, h))
    assert "cancelled the work scheduled at event(s) [2]" in details.message


def test_select_loser_cancellation_repeated_is_fine() -> None:
    def v1(ctx: Any, _: Any) -> Any:
        index, _ = yield ctx.select(ctx.schedule_activity("A"), ctx.schedule_timer(1))
        yield ctx.schedule_activity("After", index)

    h = [started(1), scheduled(2, "A"), timer(3, 9), fired(4, 3), activity_cancelled(5, 2)]
    result = turn(v1, h)
    assert result.outcome == outcome.Continue()
    assert kinds(result.new_events) == ["ActivityScheduled"]
    assert result.cancelled_activities == ()


def test_message_lists_matched_history_aligned_with_code() -> None:
    def v2(ctx: Any, _: Any) -> Any:
        yield ctx.schedule_activity("A", 1)
        yield ctx.schedule_activity("B", 2)
        yield ctx.schedule_activity("Changed", 3)

    h = [
        started(1),
        scheduled(2, "A", "1"),
        completed(3, 2),
        scheduled(4, "B", "2"),
        completed(5, 4),
        scheduled(6, "C", "3"),
    ]
    lines = nondeterminism(turn(v2, h)).message.splitlines()
    assert (
        lines[0]
        == "at history position 5 (event 6): name differs: code produced 'Changed', history has 'C'"
    )
    assert "history (expected)" in lines[1] and "code (produced)" in lines[1]
    assert lines[2].split() == [
        "1",
        "ActivityScheduled(name='A',",
        "input='1')",
        "ScheduleActivity(name='A',",
        "input='1')",
    ]
    assert lines[3].split()[0] == "3"
    assert lines[4].startswith("  >     5  ActivityScheduled(name='C', input='3')")
    assert lines[4].endswith("ScheduleActivity(name='Changed', input='3')")


def test_nondeterminism_cancels_outstanding_activities_and_closes_the_code() -> None:
    closed: list[bool] = []

    def v2(ctx: Any, _: Any) -> Any:
        try:
            ctx.schedule_activity("Other")
            yield ctx.schedule_timer(1)
        finally:
            closed.append(True)

    h = [started(1), scheduled(2, "A"), timer(3, 9)]
    result = turn(v2, h, [act_done(2)])
    nondeterminism(result)
    assert closed == [True]
    # the staged completion is still recorded; nothing new is scheduled
    assert result.worker_items == ()


def test_outstanding_recorded_activity_is_cancelled_when_diverging() -> None:
    h = [started(1), scheduled(2, "A"), scheduled(3, "B")]

    def v2(ctx: Any, _: Any) -> Any:
        yield ctx.join([ctx.schedule_activity("A"), ctx.schedule_activity("X")])

    result = turn(v2, h)
    nondeterminism(result)
    crumbs = [e for e in result.new_events if isinstance(e, history.ActivityCancelRequested)]
    assert [(c.source_id, c.reason) for c in crumbs] == [(2, "orchestration_terminal")]
    assert [ref.id for ref in result.cancelled_activities] == [2]


@pytest.mark.parametrize(
    "events",
    [
        [started(1), scheduled(2, "A"), scheduled(3, "A")],
        [started(1), completed(2, 2)],
        [started(1), fired(2, 1)],
        [started(1), scheduled(2, "A"), started(3)],
        [started(1), scheduled(2, "A"), completed(3, 2), completed(4, 2), completed(5, 2)],
    ],
)
def test_run_turn_never_raises_on_divergent_history(events: Sequence[history.Event]) -> None:
    result = turn(one_activity("A"), events, [act_done(2), act_done(3)])
    assert isinstance(result.outcome, outcome.Fail)
    assert result.outcome.details.category == "configuration"


def test_listing_shows_at_most_the_last_eight_matches() -> None:
    def v2(ctx: Any, _: Any) -> Any:
        for i in range(12):
            yield ctx.schedule_activity(f"S{i}")
        yield ctx.schedule_activity("Changed")

    h: list[history.Event] = [started(1)]
    for i in range(12):
        h += [scheduled(len(h) + 1, f"S{i}"), completed(len(h) + 2, len(h) + 1)]
    h.append(scheduled(len(h) + 1, "Original"))
    lines = nondeterminism(turn(v2, h)).message.splitlines()
    assert len(lines) == 2 + 8 + 1
    assert "S4" in lines[2] and "S11" in lines[9]
    assert "Original" in lines[10] and "Changed" in lines[10]
