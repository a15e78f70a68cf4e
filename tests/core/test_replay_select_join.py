"""select and join: winners by history order, cancelled losers, results in argument order."""

from __future__ import annotations

from typing import Any

from durox.core import history, outcome
from durox.core.commit import ActivityRef, OutgoingMessage
from durox.core.context import TaskCancelled
from durox.core.errors import ActivityFailed
from durox.core.messages import CancelInstance
from tests.core.builders import (
    INSTANCE,
    act_done,
    act_failed,
    activity_cancelled,
    completed,
    failed,
    fired,
    kinds,
    scheduled,
    started,
    sub_scheduled,
    timer,
    timer_due,
    turn,
)


def race(ctx: Any, _: Any) -> Any:
    index, value = yield ctx.select(ctx.schedule_activity("A"), ctx.schedule_activity("B"))
    return [index, value]


RACE = [started(1), scheduled(2, "A"), scheduled(3, "B")]


def test_winner_is_the_completion_history_recorded_first() -> None:
    result = turn(race, RACE, [act_done(3, '"b"'), act_done(2, '"a"')])
    assert result.outcome == outcome.Complete(output='[1,"b"]')


def test_same_messages_in_other_order_pick_the_other_winner() -> None:
    result = turn(race, RACE, [act_done(2, '"a"'), act_done(3, '"b"')])
    assert result.outcome == outcome.Complete(output='[0,"a"]')


def test_replay_keeps_the_recorded_winner() -> None:
    h = [*RACE, completed(4, 3, '"b"'), completed(5, 2, '"a"')]

    def then_more(ctx: Any, _: Any) -> Any:
        index, value = yield ctx.select(ctx.schedule_activity("A"), ctx.schedule_activity("B"))
        return (yield ctx.schedule_activity("Next", [index, value]))

    result = turn(then_more, h)
    assert result.new_events[0].input == '[1,"b"]'


def test_loser_is_cancelled_with_a_breadcrumb_and_a_ref() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        index, _ = yield ctx.select(ctx.schedule_activity("Slow"), ctx.schedule_timer(5))
        yield ctx.schedule_activity("After", index)

    h = [started(1), scheduled(2, "Slow"), timer(3, 9)]
    result = turn(orch, h, [timer_due(3, 9)])
    assert kinds(result.new_events) == [
        "TimerFired",
        "ActivityScheduled",
        "ActivityCancelRequested",
    ]
    crumb = result.new_events[2]
    assert isinstance(crumb, history.ActivityCancelRequested)
    assert (crumb.event_id, crumb.source_id, crumb.reason) == (6, 2, "select_loser")
    assert result.cancelled_activities == (ActivityRef(instance=INSTANCE, execution_id=1, id=2),)
    # a late completion of the loser is recorded but never delivered
    h2 = [*h, *result.new_events]
    late = turn(orch, h2, [act_done(2, '"late"')])
    assert kinds(late.new_events) == ["ActivityCompleted"]
    assert late.outcome == outcome.Continue()


def test_breadcrumb_is_written_once() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        yield ctx.select(ctx.schedule_activity("Slow"), ctx.schedule_timer(5))
        yield ctx.schedule_timer(10)

    h = [
        started(1),
        scheduled(2, "Slow"),
        timer(3, 9),
        fired(4, 3),
        timer(5, 99),
        activity_cancelled(6, 2),
    ]
    result = turn(orch, h)
    assert result.new_events == () and result.cancelled_activities == ()


def test_sub_orchestration_loser_gets_cancel_instance() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        yield ctx.select(ctx.schedule_sub_orchestration("Child"), ctx.schedule_timer(5))

    h = [started(1), sub_scheduled(2, "Child", "inst::sub::1.2"), timer(3, 9)]
    result = turn(orch, h, [timer_due(3)])
    crumbs = [
        e for e in result.new_events if isinstance(e, history.SubOrchestrationCancelRequested)
    ]
    assert [(c.source_id, c.reason) for c in crumbs] == [(2, "select_loser")]
    assert result.orchestrator_items == (
        OutgoingMessage(
            message=CancelInstance(
                instance="inst::sub::1.2", reason="parent 'inst' cancelled it (select_loser)"
            )
        ),
    )
    assert result.outcome == outcome.Complete(output="null")


def test_wait_loser_gets_its_breadcrumb_and_no_longer_consumes_events() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        yield ctx.select(ctx.schedule_wait("Go"), ctx.schedule_timer(1))
        return (yield ctx.schedule_wait("Go"))

    first = turn(orch)
    h = list(first.new_events)
    second = turn(orch, h, [timer_due(3)])
    assert kinds(second.new_events) == [
        "TimerFired",
        "ExternalSubscribed",
        "ExternalSubscriptionCancelled",
    ]
    h += second.new_events
    from tests.core.builders import event

    third = turn(orch, h, [event("Go", '"second wait"')])
    assert third.outcome == outcome.Complete(output='"second wait"')


def test_ties_go_to_argument_order() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        # both futures are already resolved when the select is first polled
        a = ctx.schedule_activity("A")
        b = ctx.schedule_activity("B")
        yield ctx.join([a, b])
        index, _ = yield ctx.select(b, a)
        return index

    result = turn(orch, RACE, [act_done(2), act_done(3)])
    assert result.outcome == outcome.Complete(output="0")


def test_select_of_a_failed_winner_raises() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        try:
            yield ctx.select(ctx.schedule_activity("A"), ctx.schedule_activity("B"))
        except ActivityFailed as exc:
            return exc.message

    assert turn(orch, RACE, [act_failed(2, "a broke")]).outcome == outcome.Complete(
        output='"a broke"'
    )


def test_yielding_a_cancelled_loser_raises_task_cancelled() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        a, b = ctx.schedule_activity("A"), ctx.schedule_activity("B")
        yield ctx.select(a, b)
        try:
            yield b
        except TaskCancelled:
            return "cancelled"

    assert turn(orch, RACE, [act_done(2)]).outcome == outcome.Complete(output='"cancelled"')


def test_join_returns_results_in_argument_order() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        return (yield ctx.join([ctx.schedule_activity("A"), ctx.schedule_activity("B")]))

    result = turn(orch, RACE, [act_done(3, '"b"'), act_done(2, '"a"')])
    assert result.outcome == outcome.Complete(output='["a","b"]')


def test_join_raises_the_first_failure_in_argument_order_after_all_finish() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        try:
            yield ctx.join([ctx.schedule_activity("A"), ctx.schedule_activity("B")])
        except ActivityFailed as exc:
            return exc.message

    h = [*RACE, failed(4, 3, "b broke")]
    assert turn(orch, h).outcome == outcome.Continue()  # A still running
    result = turn(orch, h, [act_failed(2, "a broke")])
    assert result.outcome == outcome.Complete(output='"a broke"')


def test_join_with_return_exceptions_lists_failures() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        results = yield ctx.join(
            [ctx.schedule_activity("A"), ctx.schedule_activity("B")], return_exceptions=True
        )
        return [r.message if isinstance(r, ActivityFailed) else r for r in results]

    result = turn(orch, RACE, [act_done(2, "1"), act_failed(3, "b broke")])
    assert result.outcome == outcome.Complete(output='[1,"b broke"]')


def test_empty_join_resolves_at_once() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        return (yield ctx.join([]))

    assert turn(orch).outcome == outcome.Complete(output="[]")


def test_select_needs_a_task() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        try:
            ctx.select()
        except ValueError as exc:
            return str(exc)
        yield  # pragma: no cover

    assert turn(orch).outcome == outcome.Complete(output='"select() needs at least one task"')


def test_select_accepts_a_list() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        index, value = yield ctx.select([ctx.schedule_activity("A"), ctx.schedule_activity("B")])
        return [index, value]

    assert turn(orch, RACE, [act_done(3, "7")]).outcome == outcome.Complete(output="[1,7]")


def test_nested_select_inside_join() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        inner = ctx.select(ctx.schedule_activity("A"), ctx.schedule_activity("B"))
        other = ctx.schedule_activity("C")
        (index, value), c = yield ctx.join([inner, other])
        return [index, value, c]

    h = [*RACE, scheduled(4, "C")]
    result = turn(orch, h, [act_done(4, '"c"'), act_done(3, '"b"')])
    assert result.outcome == outcome.Complete(output='[1,"b","c"]')
    crumbs = [e for e in result.new_events if isinstance(e, history.ActivityCancelRequested)]
    assert [(c.source_id, c.reason) for c in crumbs] == [(2, "select_loser")]
    assert [ref.id for ref in result.cancelled_activities] == [2]
