"""External events (positional waits) and event queues (FIFO, buffered, carried forward)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import attrs

from durox.core import history, outcome
from durox.core.messages import ContinueAsNew
from tests.core.builders import (
    act_done,
    delivered,
    dequeued,
    enqueue,
    event,
    kinds,
    raised,
    started,
    subscribed,
    timer_due,
    turn,
)

Gen = Generator[Any, Any, Any]


def two_waits(ctx: Any, _: Any) -> Gen:
    first = yield ctx.schedule_wait("E")
    second = yield ctx.schedule_wait("E")
    return [first, second]


def test_nth_wait_receives_nth_raise() -> None:
    h = list(turn(two_waits).new_events)
    result = turn(two_waits, h, [event("E", "1"), event("E", "2")])
    # messages are recorded first; the second wait (made while the first event was
    # applied) is recorded after them, and still receives the second event
    assert kinds(result.new_events) == [
        "ExternalEvent",
        "ExternalEvent",
        "ExternalSubscribed",
        "OrchestrationCompleted",
    ]
    assert result.outcome == outcome.Complete(output="[1,2]")
    replayed = turn(two_waits, h + list(result.new_events[:-1]))
    assert replayed.outcome == outcome.Complete(output="[1,2]")
    assert kinds(replayed.new_events) == ["OrchestrationCompleted"]


def test_concurrent_waits_for_one_name_are_served_in_call_order() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        return (yield ctx.join([ctx.schedule_wait("E"), ctx.schedule_wait("E")]))

    h = list(turn(orch).new_events)
    assert turn(orch, h, [event("E", '"a"'), event("E", '"b"')]).outcome == outcome.Complete(
        output='["a","b"]'
    )


def test_raise_with_no_pending_wait_is_recorded_dropped_and_traced() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        yield ctx.schedule_timer(1)
        return (yield ctx.schedule_wait("E"))

    h = list(turn(orch).new_events)
    early = turn(orch, h, [event("E", '"too early"')])
    assert kinds(early.new_events) == ["ExternalEvent"]
    assert [(t.level, t.message) for t in early.traces] == [
        ("warning", "external event 'E' dropped: no schedule_wait for it is pending")
    ]
    h += early.new_events
    h += turn(orch, h, [timer_due(2)]).new_events
    late = turn(orch, h, [event("E", '"on time"')])
    assert late.outcome == outcome.Complete(output='"on time"')


def test_events_of_other_names_do_not_satisfy_a_wait() -> None:
    h = [started(1), subscribed(2, "E")]
    result = turn(two_waits, h, [event("Other", "1")])
    assert result.outcome == outcome.Continue()


def test_replayed_events_go_to_the_same_waits() -> None:
    h = [
        started(1),
        subscribed(2, "E"),
        raised(3, "E", "10"),
        subscribed(4, "E"),
        raised(5, "E", "20"),
    ]
    assert turn(two_waits, h).outcome == outcome.Complete(output="[10,20]")


def test_cancelled_wait_is_skipped() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        stale = ctx.schedule_wait("E")
        yield ctx.select(stale, ctx.schedule_timer(5))  # the timer wins, the wait is cancelled
        return (yield ctx.schedule_wait("E"))

    h = list(turn(orch).new_events)
    h += turn(orch, h, [timer_due(3)]).new_events
    assert turn(orch, h, [event("E", '"fresh"')]).outcome == outcome.Complete(output='"fresh"')


def test_typed_wait() -> None:
    @attrs.frozen
    class Approval:
        by: str
        ok: bool

    def orch(ctx: Any, _: Any) -> Gen:
        approval = yield ctx.schedule_wait("A", result_type=Approval)
        return approval.by if approval.ok else "no"

    h = list(turn(orch).new_events)
    result = turn(orch, h, [event("A", '{"by":"ann","ok":true}')])
    assert result.outcome == outcome.Complete(output='"ann"')


# -- queues --------------------------------------------------------------------------


def reader(count: int) -> Any:
    def orch(ctx: Any, _: Any) -> Gen:
        out = []
        for _ in range(count):
            out.append((yield ctx.dequeue_event("q")))
        return out

    return orch


def test_queue_is_fifo() -> None:
    h = list(turn(reader(3)).new_events)
    result = turn(reader(3), h, [enqueue("q", "1"), enqueue("q", "2"), enqueue("q", "3")])
    assert result.outcome == outcome.Complete(output="[1,2,3]")


def test_messages_wait_in_the_buffer_until_dequeued() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        yield ctx.schedule_timer(10)
        first = yield ctx.dequeue_event("q")
        second = yield ctx.dequeue_event("q")
        return [first, second]

    h = list(turn(orch).new_events)
    early = turn(orch, h, [enqueue("q", '"a"'), enqueue("q", '"b"')])
    assert kinds(early.new_events) == ["QueueEventDelivered", "QueueEventDelivered"]
    assert early.traces == ()
    h += early.new_events
    result = turn(orch, h, [timer_due(2)])
    assert result.outcome == outcome.Complete(output='["a","b"]')
    assert kinds(result.new_events) == [
        "TimerFired",
        "QueueSubscribed",
        "QueueSubscribed",
        "OrchestrationCompleted",
    ]


def test_queues_are_independent() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        return [(yield ctx.dequeue_event("a")), (yield ctx.dequeue_event("b"))]

    h = list(turn(orch).new_events)
    result = turn(orch, h, [enqueue("b", "2"), enqueue("a", "1")])
    assert result.outcome == outcome.Complete(output="[1,2]")


def test_replay_buffers_exactly_as_the_first_run() -> None:
    h = [
        started(1),
        delivered(2, "q", "1"),
        delivered(3, "q", "2"),
    ]
    result = turn(reader(2), h)
    assert kinds(result.new_events) == [
        "QueueSubscribed",
        "QueueSubscribed",
        "OrchestrationCompleted",
    ]
    assert result.outcome == outcome.Complete(output="[1,2]")


def test_replayed_dequeue_matches_recorded_subscription() -> None:
    h = [started(1), dequeued(2, "q"), delivered(3, "q", '"x"'), dequeued(4, "q")]
    result = turn(reader(2), h, [enqueue("q", '"y"')])
    assert result.outcome == outcome.Complete(output='["x","y"]')


def test_unconsumed_messages_carry_forward_across_continue_as_new() -> None:
    def orch(ctx: Any, n: int) -> Gen:
        taken = yield ctx.dequeue_event("q")
        if n == 0:
            return (yield ctx.continue_as_new(1))
        return taken

    h = list(turn(orch, input=0).new_events)
    result = turn(
        orch,
        h,
        [enqueue("q", '"m1"'), enqueue("q", '"m2"'), enqueue("q", '"m3"'), enqueue("other", "7")],
    )
    assert result.outcome == outcome.ContinueAsNew(input="1")
    (restart,) = [m.message for m in result.orchestrator_items]
    assert isinstance(restart, ContinueAsNew)
    assert [(c.name, c.data) for c in restart.carry_forward] == [
        ("other", "7"),
        ("q", '"m2"'),
        ("q", '"m3"'),
    ]
    nxt = history.OrchestrationStarted(
        event_id=1,
        timestamp_ms=0,
        name="orchestration",
        version="1.0.0",
        input=restart.input,
        carry_forward=restart.carry_forward,
    )
    second = turn(orch, started_event=nxt, execution_id=2)
    assert second.outcome == outcome.Complete(output='"m2"')


def test_carry_forward_is_capped_with_a_warning() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        yield ctx.schedule_timer(1)
        return (yield ctx.continue_as_new(None))

    h = list(turn(orch).new_events)
    result = turn(orch, h, [enqueue("q", str(i)) for i in range(25)] + [timer_due(2)])
    (restart,) = [m.message for m in result.orchestrator_items]
    assert isinstance(restart, ContinueAsNew)
    assert [c.data for c in restart.carry_forward] == [str(i) for i in range(20)]
    assert ("warning", "5 queued events dropped at continue_as_new") in [
        (t.level, t.message) for t in result.traces
    ]


def test_cancelled_dequeue_leaves_later_messages_for_the_next_one() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        yield ctx.select(ctx.dequeue_event("q"), ctx.schedule_timer(1))  # the timer wins
        return (yield ctx.dequeue_event("q"))

    h = list(turn(orch).new_events)
    second = turn(orch, h, [timer_due(3)])
    assert kinds(second.new_events) == [
        "TimerFired",
        "QueueSubscribed",
        "QueueSubscriptionCancelled",
    ]
    crumb = second.new_events[2]
    assert isinstance(crumb, history.QueueSubscriptionCancelled)
    assert (crumb.source_id, crumb.reason) == (2, "select_loser")
    h += second.new_events
    assert turn(orch, h, [enqueue("q", '"kept"')]).outcome == outcome.Complete(output='"kept"')


def test_select_losing_dequeue_does_not_swallow_a_buffered_message() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        activity = ctx.schedule_activity("A")
        yield ctx.schedule_timer(1)
        index, value = yield ctx.select(activity, ctx.dequeue_event("q"))
        rest = yield ctx.dequeue_event("q")
        return [index, value, rest]

    h = list(turn(orch).new_events)
    result = turn(orch, h, [act_done(2, '"a"'), enqueue("q", '"m"'), timer_due(3)])
    assert result.outcome == outcome.Complete(output='[0,"a","m"]')


def test_select_between_two_dequeues_keeps_the_losers_message() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        yield ctx.schedule_timer(1)
        index, value = yield ctx.select(ctx.dequeue_event("q"), ctx.dequeue_event("q"))
        rest = yield ctx.dequeue_event("q")
        return [index, value, rest]

    h = list(turn(orch).new_events)
    result = turn(orch, h, [enqueue("q", '"m1"'), enqueue("q", '"m2"'), timer_due(2)])
    assert result.outcome == outcome.Complete(output='[0,"m1","m2"]')


def test_event_in_the_same_batch_as_the_completion_that_leads_to_the_wait() -> None:
    # the wait is made while the completion is applied, so the next event in the batch finds it
    def orch(ctx: Any, _: Any) -> Gen:
        yield ctx.schedule_activity("A")
        return (yield ctx.schedule_wait("E"))

    h = list(turn(orch).new_events)
    result = turn(orch, h, [act_done(2), event("E", '"same batch"')])
    assert result.outcome == outcome.Complete(output='"same batch"')
    replayed = turn(orch, h + list(result.new_events[:-1]))
    assert replayed.outcome == outcome.Complete(output='"same batch"')


def test_queue_message_carried_into_the_next_execution_is_consumed_first() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        return (yield ctx.dequeue_event("q"))

    nxt = started(1, carry_forward=[("q", '"carried"')])
    result = turn(orch, started_event=nxt, msgs=[enqueue("q", '"new"')], execution_id=2)
    assert result.outcome == outcome.Complete(output='"carried"')


def test_select_losing_wait_does_not_consume_its_event() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        wait = ctx.schedule_wait("E")
        activity = ctx.schedule_activity("A")
        yield ctx.schedule_timer(1)
        index, _ = yield ctx.select(activity, wait)
        return [index, (yield ctx.schedule_wait("E"))]

    h = list(turn(orch).new_events)
    result = turn(orch, h, [act_done(3), event("E", '"e"'), timer_due(4)])
    assert result.outcome == outcome.Complete(output='[0,"e"]')
