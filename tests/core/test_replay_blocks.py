"""Blocks: multi-step generators run inline and composed with join and select."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from durox.core import history, outcome
from durox.core.commit import OutgoingMessage
from durox.core.errors import ActivityFailed, InvalidArgument
from durox.core.messages import CancelInstance
from tests.core.builders import act_done, act_failed, child_done, kinds, timer_due, turn

Gen = Generator[Any, Any, Any]


def two_steps(ctx: Any, name: str) -> Gen:
    first = yield ctx.schedule_activity(f"{name}1")
    second = yield ctx.schedule_activity(f"{name}2", first)
    return f"{name}:{second}"


@pytest.mark.parametrize("wrap", [True, False], ids=["ctx.block", "bare-generator"])
def test_join_of_blocks_interleaves_their_steps(wrap: bool) -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        blocks = [two_steps(ctx, "A"), two_steps(ctx, "B")]
        return (yield ctx.join([ctx.block(b) if wrap else b for b in blocks]))

    first = turn(orch)
    assert [e.name for e in first.new_events[1:]] == ["A1", "B1"]
    h = list(first.new_events)
    second = turn(orch, h, [act_done(3, '"b"')])
    assert [getattr(e, "name", None) for e in second.new_events] == [None, "B2"]
    h += second.new_events
    third = turn(orch, h, [act_done(2, '"a"'), act_done(5, '"b2"')])
    assert kinds(third.new_events) == [
        "ActivityCompleted",
        "ActivityCompleted",
        "ActivityScheduled",
    ]
    assert third.new_events[2].event_id == 8
    h += third.new_events
    last = turn(orch, h, [act_done(8, '"a2"')])
    assert last.outcome == outcome.Complete(output='["A:a2","B:b2"]')


def test_block_losing_a_select_cancels_its_inner_work() -> None:
    closed: list[str] = []

    def slow(ctx: Any) -> Gen:
        try:
            yield ctx.schedule_activity("Inner1")
            yield ctx.join([ctx.schedule_activity("Inner2"), ctx.schedule_sub_orchestration("Kid")])
        finally:
            closed.append("finally ran")

    def orch(ctx: Any, _: Any) -> Gen:
        index, _ = yield ctx.select(ctx.block(slow(ctx)), ctx.schedule_activity("Fast"))
        return index

    # Keep every turn's engine state alive: a dropped state's suspended generator
    # is closed by the garbage collector, which would run the finally block too.
    first = turn(orch)
    h = list(first.new_events)  # Inner1=2, Fast=3
    second = turn(orch, h, [act_done(2)])
    h += second.new_events  # Inner2=5, Kid=6
    result = turn(orch, h, [act_done(3)])
    assert result.outcome == outcome.Complete(output="1")
    crumbs = [
        (type(e).__name__, e.source_id, e.reason)
        for e in result.new_events
        if isinstance(e, (history.ActivityCancelRequested, history.SubOrchestrationCancelRequested))
    ]
    assert crumbs == [
        ("ActivityCancelRequested", 5, "select_loser"),
        ("SubOrchestrationCancelRequested", 6, "select_loser"),
    ]
    assert [ref.id for ref in result.cancelled_activities] == [5]
    assert (
        OutgoingMessage(
            message=CancelInstance(
                instance="inst::sub::1.6", reason="parent 'inst' cancelled it (select_loser)"
            )
        )
        in result.orchestrator_items
    )
    assert closed == ["finally ran"]
    del first, second


def test_block_winning_a_select_cancels_the_timer_only() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        index, value = yield ctx.select(two_steps(ctx, "A"), ctx.schedule_timer(60))
        return [index, value]

    h = list(turn(orch).new_events)
    # the generator object starts only inside select(), after the timer was scheduled
    assert kinds(h) == ["OrchestrationStarted", "TimerCreated", "ActivityScheduled"]
    h += turn(orch, h, [act_done(3, "1")]).new_events  # A2=5
    result = turn(orch, h, [act_done(5, "2")])
    assert result.outcome == outcome.Complete(output='[0,"A:2"]')
    assert result.cancelled_activities == ()
    assert not any(isinstance(e, history.ActivityCancelRequested) for e in result.new_events)


def test_block_failure_propagates_through_join() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        try:
            yield ctx.join([two_steps(ctx, "A")])
        except ActivityFailed as exc:
            return f"caught {exc.message}"

    h = list(turn(orch).new_events)
    assert turn(orch, h, [act_failed(2, "a1 broke")]).outcome == outcome.Complete(
        output='"caught a1 broke"'
    )


def test_block_that_returns_at_once() -> None:
    def instant(ctx: Any) -> Gen:
        return 5
        yield  # pragma: no cover

    def orch(ctx: Any, _: Any) -> Gen:
        value = yield ctx.block(instant(ctx))
        return value + 1

    assert turn(orch).outcome == outcome.Complete(output="6")


def test_yielding_a_block_directly_waits_for_it() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        return (yield two_steps(ctx, "A"))

    h = list(turn(orch).new_events)
    h += turn(orch, h, [act_done(2, "1")]).new_events
    assert turn(orch, h, [act_done(4, "2")]).outcome == outcome.Complete(output='"A:2"')


def test_block_needs_a_generator_object() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        try:
            ctx.block(two_steps)
        except InvalidArgument as exc:
            return "call the generator function" in str(exc)
        yield  # pragma: no cover

    assert turn(orch).outcome == outcome.Complete(output="true")


def test_child_in_a_block_completes_normally() -> None:
    def kid(ctx: Any) -> Gen:
        value = yield ctx.schedule_sub_orchestration("Kid", 1)
        return value * 10

    def orch(ctx: Any, _: Any) -> Gen:
        return (yield ctx.join([ctx.block(kid(ctx))]))

    h = list(turn(orch).new_events)
    assert turn(orch, h, [child_done(2, "4")]).outcome == outcome.Complete(output="[40]")


def test_abandoned_block_whose_finally_yields_is_traced() -> None:
    def stubborn(ctx: Any) -> Gen:
        try:
            yield ctx.schedule_activity("Slow")
        finally:
            yield ctx.schedule_timer(1)  # not allowed while closing

    def orch(ctx: Any, _: Any) -> Gen:
        index, _ = yield ctx.select(ctx.block(stubborn(ctx)), ctx.schedule_activity("Fast"))
        return index

    h = list(turn(orch).new_events)
    result = turn(orch, h, [act_done(3)])
    assert result.outcome == outcome.Complete(output="1")
    assert [t.level for t in result.traces] == ["warning"]
    assert result.traces[0].message.startswith("abandoned block raised while closing")


def test_block_finally_may_schedule_compensation_replayably() -> None:
    def guarded(ctx: Any) -> Gen:
        try:
            yield ctx.schedule_activity("Reserve")
        finally:
            ctx.schedule_activity("Release")  # fire and forget, while being cancelled

    def orch(ctx: Any, _: Any) -> Gen:
        index, _ = yield ctx.select(ctx.block(guarded(ctx)), ctx.schedule_timer(5))
        yield ctx.schedule_timer(60)
        return index

    h = list(turn(orch).new_events)  # Reserve=2, timer=3
    result = turn(orch, h, [timer_due(3)])
    names = [getattr(e, "name", type(e).__name__) for e in result.new_events]
    assert names == ["TimerFired", "Release", "TimerCreated", "ActivityCancelRequested"]
    h += result.new_events
    again = turn(orch, h)
    assert again.new_events == () and again.outcome == outcome.Continue()
