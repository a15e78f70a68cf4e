"""Cancelling an instance: it fails as cancelled, its activities and children are cancelled."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from durox.core import history, outcome
from durox.core.commit import ActivityRef, OutgoingMessage
from durox.core.errors import ErrorDetails
from durox.core.messages import CancelInstance, SubOrchestrationResult
from tests.core.builders import (
    INSTANCE,
    act_done,
    cancel,
    kinds,
    started,
    turn,
)
from tests.core.harness import World

Gen = Generator[Any, Any, Any]


def busy(ctx: Any, _: Any) -> Gen:
    a = ctx.schedule_activity("A")
    b = ctx.schedule_activity("B")
    kid = ctx.schedule_sub_orchestration("Kid")
    wait = ctx.schedule_wait("E")
    return (yield ctx.join([a, b, kid, wait]))


CANCELLED = ErrorDetails(category="application", kind="cancelled", message="user asked")


def test_cancel_fails_the_instance_as_cancelled() -> None:
    h = list(turn(busy).new_events)
    result = turn(busy, h, [cancel("user asked")])
    assert result.outcome == outcome.Fail(details=CANCELLED)
    assert CANCELLED.display_message() == "canceled: user asked"
    assert kinds(result.new_events) == [
        "OrchestrationCancelRequested",
        "ActivityCancelRequested",
        "ActivityCancelRequested",
        "SubOrchestrationCancelRequested",
        "OrchestrationFailed",
    ]
    assert [(e.source_id, e.reason) for e in result.new_events[1:4]] == [
        (2, "orchestration_terminal"),
        (3, "orchestration_terminal"),
        (4, "orchestration_terminal"),
    ]
    assert result.cancelled_activities == (
        ActivityRef(instance=INSTANCE, execution_id=1, id=2),
        ActivityRef(instance=INSTANCE, execution_id=1, id=3),
    )
    assert result.orchestrator_items == (
        OutgoingMessage(
            message=CancelInstance(
                instance=f"{INSTANCE}::sub::1.4",
                reason=f"parent {INSTANCE!r} cancelled it (orchestration_terminal)",
            )
        ),
    )


def test_completed_work_is_not_cancelled() -> None:
    h = list(turn(busy).new_events)
    result = turn(busy, h, [act_done(2), cancel()])
    assert [ref.id for ref in result.cancelled_activities] == [3]


def test_cancel_wins_over_a_completion_in_the_same_turn() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        value = yield ctx.schedule_activity("A")
        ctx.schedule_activity("Never")
        return value

    h = list(turn(orch).new_events)
    result = turn(orch, h, [act_done(2, '"done"'), cancel("late")])
    assert isinstance(result.outcome, outcome.Fail)
    assert result.outcome.details.kind == "cancelled"
    assert kinds(result.new_events) == [
        "ActivityCompleted",
        "OrchestrationCancelRequested",
        "OrchestrationFailed",
    ]
    assert result.worker_items == ()


def test_only_the_first_cancel_is_recorded() -> None:
    h = list(turn(busy).new_events)
    result = turn(busy, h, [cancel("one"), cancel("two")])
    requests = [e for e in result.new_events if isinstance(e, history.OrchestrationCancelRequested)]
    assert [r.reason for r in requests] == ["one"]
    assert isinstance(result.outcome, outcome.Fail) and result.outcome.details.message == "one"


def test_cancelled_child_reports_cancellation_to_its_parent() -> None:
    kid = started(1, "Kid", parent_instance="mom", parent_execution_id=1, parent_id=3)
    h = list(turn(busy, started_event=kid, instance="kid").new_events)
    result = turn(busy, h, [cancel("parent ended", instance="kid")], instance="kid")
    results = [
        m.message
        for m in result.orchestrator_items
        if isinstance(m.message, SubOrchestrationResult)
    ]
    assert len(results) == 1
    assert results[0].instance == "mom" and results[0].id == 3
    assert results[0].error is not None and results[0].error.kind == "cancelled"


def test_cancel_in_the_first_turn() -> None:
    result = turn(busy, msgs=[cancel()])
    assert kinds(result.new_events) == [
        "OrchestrationStarted",
        "OrchestrationCancelRequested",
        "OrchestrationFailed",
    ]
    assert result.worker_items == () and result.cancelled_activities == ()


def test_cancel_cascades_through_a_world() -> None:
    from durox.core.registry import Registry

    registry = Registry()

    def parent(ctx: Any, _: Any) -> Gen:
        return (yield ctx.schedule_sub_orchestration("Kid"))

    def kid(ctx: Any, _: Any) -> Gen:
        return (yield ctx.schedule_wait("never"))

    registry.add_orchestration("Parent", parent)
    registry.add_orchestration("Kid", kid)
    world = World(registry)
    world.start("p", "Parent")
    world.run()
    world.cancel("p", "stop all")
    world.run()
    assert world.failure("p").kind == "cancelled"
    child = world.failure("p::sub::1.2")
    assert (child.kind, child.message) == (
        "cancelled",
        "parent 'p' cancelled it (orchestration_terminal)",
    )
