"""is_replaying and traces: only new work logs."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from durox.core.turn import Trace
from tests.core.builders import INSTANCE, act_done, turn

Gen = Generator[Any, Any, Any]

seen: list[tuple[str, bool]] = []


def orch(ctx: Any, _: Any) -> Gen:
    seen.append(("start", ctx.is_replaying))
    ctx.trace_info("starting")
    a = yield ctx.schedule_activity("A")
    seen.append(("after A", ctx.is_replaying))
    ctx.trace_warn(f"got {a}")
    b = yield ctx.schedule_activity("B")
    ctx.trace_error(f"got {b}")
    ctx.trace_debug("done")
    return b


def test_first_turn_is_not_replaying_and_traces() -> None:
    seen.clear()
    result = turn(orch)
    assert seen == [("start", False)]
    assert result.traces == (
        Trace(
            level="info",
            message="starting",
            instance=INSTANCE,
            execution_id=1,
            orchestration_name="orchestration",
            orchestration_version="1.0.0",
        ),
    )


def test_replayed_part_is_replaying_and_silent() -> None:
    h = list(turn(orch).new_events)
    seen.clear()
    result = turn(orch, h, [act_done(2, '"a"')])
    assert seen == [("start", True), ("after A", False)]
    assert [(t.level, t.message) for t in result.traces] == [("warning", "got a")]
    h += result.new_events
    seen.clear()
    last = turn(orch, h, [act_done(4, '"b"')])
    assert seen == [("start", True), ("after A", True)]
    assert [(t.level, t.message) for t in last.traces] == [("error", "got b"), ("debug", "done")]


def test_sticky_turn_traces_only_new_work() -> None:
    first = turn(orch)
    h = list(first.new_events)
    seen.clear()
    result = turn(orch, h, [act_done(2, '"a"')], state=first.state)
    assert seen == [("after A", False)]  # the code is resumed, not re-run
    assert [t.message for t in result.traces] == ["got a"]


def test_engine_warnings_are_not_repeated_on_replay() -> None:
    from tests.core.builders import event, raised, started, subscribed

    def waiter(ctx: Any, _: Any) -> Gen:
        return (yield ctx.schedule_wait("Go"))

    # an event with no pending wait was dropped (and warned about) when first recorded
    h = [started(1), raised(2, "Other", "1"), subscribed(3, "Go")]
    result = turn(waiter, h, [event("Go", "2")])
    assert result.traces == ()
    assert result.new_events[-1].output == "2"
