"""Partial completion: some scheduled work finished, the rest is still pending."""

from __future__ import annotations

from typing import Any

from durox.core import outcome
from tests.core.builders import act_done, completed, kinds, scheduled, started, turn


def three(ctx: Any, _: Any) -> Any:
    tasks = [ctx.schedule_activity(name) for name in ("A", "B", "C")]
    results = yield ctx.join(tasks)
    after = yield ctx.schedule_activity("D", results)
    return after


BASE = [started(1), scheduled(2, "A"), scheduled(3, "B"), scheduled(4, "C")]


def test_join_waits_while_any_task_is_pending() -> None:
    result = turn(three, BASE, [act_done(3, '"b"')])
    assert kinds(result.new_events) == ["ActivityCompleted"]
    assert result.worker_items == ()
    assert result.outcome == outcome.Continue()


def test_out_of_order_completions_keep_argument_order() -> None:
    h = [*BASE, completed(5, 4, '"c"'), completed(6, 2, '"a"')]
    result = turn(three, h, [act_done(3, '"b"')])
    assert kinds(result.new_events) == ["ActivityCompleted", "ActivityScheduled"]
    assert result.new_events[1].input == '["a","b","c"]'


def test_replaying_partial_history_schedules_nothing_again() -> None:
    h = [*BASE, completed(5, 2, '"a"')]
    result = turn(three, h)
    assert result.new_events == () and result.worker_items == ()


def test_pending_work_is_still_pending_after_a_sticky_turn() -> None:
    first = turn(three, BASE, [act_done(2, '"a"')])
    h = BASE + list(first.new_events)
    second = turn(three, h, [act_done(4, '"c"')], state=first.state)
    assert kinds(second.new_events) == ["ActivityCompleted"]
    h += second.new_events
    third = turn(three, h, [act_done(3, '"b"')], state=second.state)
    assert kinds(third.new_events) == ["ActivityCompleted", "ActivityScheduled"]
    assert third.new_events[1].event_id == 8


def test_duplicate_and_foreign_messages_are_dropped() -> None:
    h = [*BASE, completed(5, 2, '"a"')]
    result = turn(
        three,
        h,
        [
            act_done(2, '"again"'),  # already completed in history
            act_done(3, '"b"'),
            act_done(3, '"b twice"'),  # at-least-once delivery: the first one counts
            act_done(9, '"x"'),  # never scheduled
            act_done(4, '"old"', execution_id=7),  # another execution's work
        ],
    )
    assert [(type(e).__name__, getattr(e, "source_id", None)) for e in result.new_events] == [
        ("ActivityCompleted", 3)
    ]
    assert result.new_events[0].result == '"b"'


def test_timer_message_for_an_activity_id_is_dropped() -> None:
    from tests.core.builders import timer_due

    result = turn(three, BASE, [timer_due(2)])
    assert result.new_events == ()
