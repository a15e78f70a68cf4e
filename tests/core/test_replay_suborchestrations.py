"""Sub-orchestrations: ids, parent links, results and failures, foreign starts."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import attrs

from durox.core import history, outcome
from durox.core.commit import OutgoingMessage
from durox.core.errors import ErrorDetails, SubOrchestrationFailed
from durox.core.items import OrchestrationItem
from durox.core.messages import CancelInstance, StartOrchestration, SubOrchestrationResult
from durox.core.options import RuntimeOptions
from durox.core.registry import Registry
from durox.core.turn import AckTurn, decide_turn
from tests.core.builders import (
    INSTANCE,
    T0,
    child_done,
    child_failed,
    kinds,
    started,
    sub_scheduled,
    subscribed,
    turn,
)

Gen = Generator[Any, Any, Any]


def parent(ctx: Any, _: Any) -> Gen:
    first = yield ctx.schedule_sub_orchestration("Child", 1)
    second = yield ctx.schedule_sub_orchestration("Child", 2, instance_id="named-child")
    return [first, second]


def test_derived_ids_name_parent_execution_and_event() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        yield ctx.join([ctx.schedule_activity("A"), ctx.schedule_sub_orchestration("Child")])

    result = turn(orch, execution_id=3)
    child = result.new_events[2]
    assert isinstance(child, history.SubOrchestrationScheduled)
    assert child.instance == f"{INSTANCE}::sub::3.3"
    start = result.orchestrator_items[0].message
    assert isinstance(start, StartOrchestration)
    assert (start.instance, start.parent_execution_id, start.parent_id) == (
        f"{INSTANCE}::sub::3.3",
        3,
        3,
    )


def test_explicit_ids_are_used_and_results_flow_back() -> None:
    h = list(turn(parent).new_events)
    second = turn(parent, h, [child_done(2, '"one"')])
    child = second.new_events[1]
    assert isinstance(child, history.SubOrchestrationScheduled)
    assert (child.instance, child.input) == ("named-child", "2")
    h += second.new_events
    assert turn(parent, h, [child_done(4, '"two"')]).outcome == outcome.Complete(
        output='["one","two"]'
    )


def test_child_failure_raises_sub_orchestration_failed() -> None:
    caught: list[SubOrchestrationFailed] = []

    def orch(ctx: Any, _: Any) -> Gen:
        try:
            yield ctx.schedule_sub_orchestration("Child")
        except SubOrchestrationFailed as exc:
            caught.append(exc)
            return "handled"

    h = list(turn(orch).new_events)
    result = turn(orch, h, [child_failed(2, "kid broke")])
    assert result.outcome == outcome.Complete(output='"handled"')
    assert kinds(result.new_events) == ["SubOrchestrationFailed", "OrchestrationCompleted"]
    assert caught[0].details is not None and caught[0].details.message == "kid broke"
    assert caught[0].message == "kid broke"


def test_unhandled_child_failure_fails_the_parent() -> None:
    h = list(turn(parent).new_events)
    result = turn(parent, h, [child_failed(2, "kid broke")])
    assert isinstance(result.outcome, outcome.Fail)
    assert result.outcome.details.message == "kid broke"


def test_replayed_child_result_is_read_back() -> None:
    h = [started(1), sub_scheduled(2, "Child", f"{INSTANCE}::sub::1.2", "1")]
    result = turn(parent, h, [child_done(2, "5")])
    assert kinds(result.new_events) == ["SubOrchestrationCompleted", "SubOrchestrationScheduled"]


def child_started(**kw: Any) -> history.OrchestrationStarted:
    return started(1, "Child", parent_instance="mom", parent_execution_id=4, parent_id=7, **kw)


def test_child_completion_notifies_its_parent_execution() -> None:
    def child(ctx: Any, n: int) -> Gen:
        return n * 2
        yield  # pragma: no cover

    result = turn(child, started_event=child_started(input="21"), instance="kid")
    assert result.orchestrator_items == (
        OutgoingMessage(
            message=SubOrchestrationResult(
                instance="mom", execution_id=4, id=7, child_instance="kid", result="42"
            )
        ),
    )


def test_child_failure_notifies_its_parent_with_the_error() -> None:
    def child(ctx: Any, _: Any) -> Gen:
        raise ValueError("nope")
        yield  # pragma: no cover

    result = turn(child, started_event=child_started(), instance="kid")
    (message,) = [m.message for m in result.orchestrator_items]
    assert isinstance(message, SubOrchestrationResult)
    assert (message.instance, message.id, message.result) == ("mom", 7, None)
    assert message.error == ErrorDetails(
        category="application", kind="orchestration_failed", message="nope", error_type="ValueError"
    )


def test_parent_ending_cancels_running_children() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        ctx.schedule_sub_orchestration("Slow")
        return "not waiting"
        yield  # pragma: no cover

    result = turn(orch)
    assert kinds(result.new_events) == [
        "OrchestrationStarted",
        "SubOrchestrationScheduled",
        "SubOrchestrationCancelRequested",
        "OrchestrationCompleted",
    ]
    crumb = result.new_events[2]
    assert isinstance(crumb, history.SubOrchestrationCancelRequested)
    assert crumb.reason == "orchestration_terminal"
    # the child is not started (the execution ended) but is told to cancel
    assert [type(m.message).__name__ for m in result.orchestrator_items] == ["CancelInstance"]
    cancel = result.orchestrator_items[0].message
    assert isinstance(cancel, CancelInstance) and cancel.instance == f"{INSTANCE}::sub::1.2"


def _item(messages: tuple[Any, ...], events: tuple[history.Event, ...] = ()) -> OrchestrationItem:
    return OrchestrationItem(
        instance="taken",
        lock_token="t",
        execution_id=1,
        orchestration_name="Child",
        orchestration_version="1.0.0",
        history=events,
        history_len=len(events),
        messages=messages,
    )


def _registry() -> Registry:
    registry = Registry()

    def child(ctx: Any, _: Any) -> Gen:
        return (yield ctx.schedule_wait("never"))

    registry.add_orchestration("Child", child)
    return registry


def test_foreign_start_of_an_existing_instance_is_rejected_to_its_parent() -> None:
    own = started(1, "Child", parent_instance="mom", parent_execution_id=1, parent_id=2)
    foreign = StartOrchestration(
        instance="taken",
        name="Child",
        input="null",
        parent_instance="dad",
        parent_execution_id=3,
        parent_id=9,
    )
    decision = decide_turn(
        _item((foreign,), (own, subscribed(2, "never"))),
        _registry(),
        options=RuntimeOptions(),
        now_ms=T0,
        entropy=b"",
    )
    assert isinstance(decision, AckTurn)
    (rejection,) = [m.message for m in decision.commit.orchestrator_items]
    assert isinstance(rejection, SubOrchestrationResult)
    assert (rejection.instance, rejection.execution_id, rejection.id, rejection.child_instance) == (
        "dad",
        3,
        9,
        "taken",
    )
    assert rejection.error is not None
    assert (rejection.error.kind, rejection.error.error_type) == (
        "instance_exists",
        "InstanceAlreadyExists",
    )
    assert decision.commit.new_events == ()


def test_own_start_message_is_not_rejected() -> None:
    start = StartOrchestration(
        instance="taken",
        name="Child",
        input="null",
        parent_instance="mom",
        parent_execution_id=1,
        parent_id=2,
    )
    decision = decide_turn(
        _item((start,)), _registry(), options=RuntimeOptions(), now_ms=T0, entropy=b""
    )
    assert isinstance(decision, AckTurn)
    assert decision.commit.orchestrator_items == ()
    assert kinds(decision.commit.new_events) == ["OrchestrationStarted", "ExternalSubscribed"]
    assert decision.commit.parent_instance == "mom"


def test_foreign_start_of_an_ended_instance_is_rejected_too() -> None:
    from tests.core.builders import orch_completed

    foreign = StartOrchestration(
        instance="taken",
        name="Child",
        input="null",
        parent_instance="dad",
        parent_execution_id=1,
        parent_id=4,
    )
    events = (started(1, "Child"), orch_completed(2))
    decision = decide_turn(
        _item((foreign,), events), _registry(), options=RuntimeOptions(), now_ms=T0, entropy=b""
    )
    assert isinstance(decision, AckTurn) and decision.outcome == "discarded"
    (rejection,) = [m.message for m in decision.commit.orchestrator_items]
    assert isinstance(rejection, SubOrchestrationResult) and rejection.instance == "dad"


def test_cancelled_child_surfaces_as_a_catchable_failure() -> None:
    from durox.core.messages import SubOrchestrationResult as Result

    caught: list[SubOrchestrationFailed] = []

    def orch(ctx: Any, _: Any) -> Gen:
        try:
            yield ctx.schedule_sub_orchestration("Child")
        except SubOrchestrationFailed as exc:
            caught.append(exc)
            return "child was cancelled"

    h = list(turn(orch).new_events)
    cancelled = ErrorDetails(category="application", kind="cancelled", message="by admin")
    message = Result(instance=INSTANCE, execution_id=1, id=2, child_instance="c", error=cancelled)
    assert turn(orch, h, [message]).outcome == outcome.Complete(output='"child was cancelled"')
    assert caught[0].message == "canceled: by admin"
    assert caught[0].details == cancelled


def test_child_result_for_another_parent_execution_is_dropped() -> None:
    h = list(turn(parent).new_events)
    assert turn(parent, h, [child_done(2, "1", execution_id=2)]).new_events == ()


def test_typed_child_result() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        pair = yield ctx.schedule_sub_orchestration("Child", result_type=tuple[str, int])
        return [type(pair).__name__, *pair]

    h = list(turn(orch).new_events)
    assert turn(orch, h, [child_done(2, '["a",1]')]).outcome == outcome.Complete(
        output='["tuple","a",1]'
    )


def test_two_parents_racing_for_one_child_id_the_second_is_rejected() -> None:
    first = StartOrchestration(
        instance="taken",
        name="Child",
        input="null",
        parent_instance="mom",
        parent_execution_id=1,
        parent_id=2,
    )
    second = attrs.evolve(first, parent_instance="dad", parent_id=5)
    decision = decide_turn(
        _item((first, second)), _registry(), options=RuntimeOptions(), now_ms=T0, entropy=b""
    )
    assert isinstance(decision, AckTurn)
    assert decision.commit.parent_instance == "mom"
    (rejection,) = [m.message for m in decision.commit.orchestrator_items]
    assert isinstance(rejection, SubOrchestrationResult)
    assert (rejection.instance, rejection.id) == ("dad", 5)
