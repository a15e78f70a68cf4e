"""The first turn of an execution: each kind of command, and code that ends at once."""

from __future__ import annotations

from typing import Any

from durox.core import history, outcome
from durox.core.commit import OutgoingMessage
from durox.core.errors import InvalidArgument
from durox.core.messages import ExecuteActivity, StartOrchestration, TimerDue
from tests.core.builders import INSTANCE, T0, kinds, turn


def test_activity_is_recorded_and_dispatched() -> None:
    def orch(ctx: Any, name: str) -> Any:
        return (yield ctx.schedule_activity("Greet", name))

    result = turn(orch, input="World")
    assert kinds(result.new_events) == ["OrchestrationStarted", "ActivityScheduled"]
    start, act = result.new_events
    assert isinstance(start, history.OrchestrationStarted)
    assert (start.event_id, start.input, start.timestamp_ms) == (1, '"World"', T0)
    assert act == history.ActivityScheduled(
        event_id=2, timestamp_ms=T0, name="Greet", input='"World"'
    )
    assert result.worker_items == (
        ExecuteActivity(
            instance=INSTANCE,
            execution_id=1,
            id=2,
            name="Greet",
            input='"World"',
            orchestration_name="orchestration",
            orchestration_version="1.0.0",
        ),
    )
    assert result.outcome == outcome.Continue()
    assert result.orchestrator_items == ()
    assert result.state is not None


def test_session_and_tag_travel_with_the_activity() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        a = ctx.schedule_activity_on_session("Run", 1, "s-1")
        b = ctx.schedule_activity("Render", 2).with_tag("gpu")
        return (yield ctx.join([a, b]))

    result = turn(orch)
    _, a, b = result.new_events
    assert isinstance(a, history.ActivityScheduled) and isinstance(b, history.ActivityScheduled)
    assert (a.session_id, a.tag, b.session_id, b.tag) == ("s-1", None, None, "gpu")
    assert [(w.session_id, w.tag) for w in result.worker_items] == [("s-1", None), (None, "gpu")]


def test_timer_is_recorded_and_sent_delayed() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        yield ctx.schedule_timer(2.5)

    result = turn(orch)
    assert result.new_events[1] == history.TimerCreated(
        event_id=2, timestamp_ms=T0, fire_at_ms=T0 + 2500
    )
    assert result.orchestrator_items == (
        OutgoingMessage(
            message=TimerDue(instance=INSTANCE, execution_id=1, id=2, fire_at_ms=T0 + 2500),
            delay_ms=2500,
        ),
    )
    assert result.worker_items == ()


def test_wait_and_dequeue_only_record_a_subscription() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        yield ctx.join([ctx.schedule_wait("Go"), ctx.dequeue_event("inbox")])

    result = turn(orch)
    assert result.new_events[1:] == (
        history.ExternalSubscribed(event_id=2, timestamp_ms=T0, name="Go"),
        history.QueueSubscribed(event_id=3, timestamp_ms=T0, name="inbox"),
    )
    assert result.worker_items == () and result.orchestrator_items == ()


def test_sub_orchestration_start_carries_the_parent_link() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        return (yield ctx.schedule_sub_orchestration("Child", {"n": 1}, version="2.0.0"))

    result = turn(orch)
    assert result.new_events[1] == history.SubOrchestrationScheduled(
        event_id=2,
        timestamp_ms=T0,
        name="Child",
        instance=f"{INSTANCE}::sub::1.2",
        input='{"n":1}',
        version="2.0.0",
    )
    assert result.orchestrator_items == (
        OutgoingMessage(
            message=StartOrchestration(
                instance=f"{INSTANCE}::sub::1.2",
                name="Child",
                input='{"n":1}',
                version="2.0.0",
                parent_instance=INSTANCE,
                parent_execution_id=1,
                parent_id=2,
            )
        ),
    )


def test_detached_start_has_no_parent_and_does_not_suspend() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        ctx.schedule_orchestration("Other", "other-1", [1])
        return "fired"
        yield  # pragma: no cover

    result = turn(orch)
    assert kinds(result.new_events) == [
        "OrchestrationStarted",
        "OrchestrationChained",
        "OrchestrationCompleted",
    ]
    assert result.orchestrator_items == (
        OutgoingMessage(message=StartOrchestration(instance="other-1", name="Other", input="[1]")),
    )
    assert result.outcome == outcome.Complete(output='"fired"')


def test_several_commands_in_one_turn_get_consecutive_ids() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        tasks = [ctx.schedule_activity("A"), ctx.schedule_timer(1), ctx.schedule_activity("B")]
        yield ctx.join(tasks)

    result = turn(orch)
    assert [(type(e).__name__, e.event_id) for e in result.new_events] == [
        ("OrchestrationStarted", 1),
        ("ActivityScheduled", 2),
        ("TimerCreated", 3),
        ("ActivityScheduled", 4),
    ]
    assert [w.id for w in result.worker_items] == [2, 4]


def test_immediate_return_completes_in_the_first_turn() -> None:
    def orch(ctx: Any, value: int) -> Any:
        return {"double": value * 2}
        yield  # pragma: no cover

    result = turn(orch, input=21)
    assert result.outcome == outcome.Complete(output='{"double":42}')
    assert result.new_events[-1] == history.OrchestrationCompleted(
        event_id=2, timestamp_ms=T0, output='{"double":42}'
    )
    assert result.state is None


def test_plain_function_is_an_orchestration_that_returns_at_once() -> None:
    result = turn(lambda ctx, value: value + 1, input=1)
    assert result.outcome == outcome.Complete(output="2")


def test_immediate_raise_fails_with_the_exception() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        raise KeyError("missing")
        yield  # pragma: no cover

    result = turn(orch)
    assert isinstance(result.outcome, outcome.Fail)
    details = result.outcome.details
    assert (details.category, details.kind, details.error_type) == (
        "application",
        "orchestration_failed",
        "KeyError",
    )
    failed = result.new_events[-1]
    assert isinstance(failed, history.OrchestrationFailed) and failed.details == details


def test_calling_the_function_raising_fails_the_orchestration() -> None:
    def orch(ctx: Any, value: Any) -> Any:
        raise ValueError(f"bad {value}")

    result = turn(orch, input=3)
    assert isinstance(result.outcome, outcome.Fail)
    assert result.outcome.details.message == "bad 3"


def test_async_orchestration_is_rejected_with_a_hint() -> None:
    async def orch(ctx: Any, _: Any) -> Any:
        return 1

    result = turn(orch)
    assert isinstance(result.outcome, outcome.Fail)
    assert result.outcome.details.error_type == "InvalidArgument"
    assert "generator functions" in result.outcome.details.message


def test_yielding_something_else_raises_invalid_argument_at_the_yield() -> None:
    seen: list[BaseException] = []

    def orch(ctx: Any, _: Any) -> Any:
        try:
            yield 42
        except InvalidArgument as exc:
            seen.append(exc)
        return "recovered"

    result = turn(orch)
    assert result.outcome == outcome.Complete(output='"recovered"')
    assert "yielded 42" in str(seen[0])


def test_unserializable_output_fails_with_payload_error() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        return {1, 2}
        yield  # pragma: no cover

    result = turn(orch)
    assert isinstance(result.outcome, outcome.Fail)
    assert result.outcome.details.error_type == "PayloadError"


def test_oversized_output_fails_with_payload_error() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        return "x" * 200
        yield  # pragma: no cover

    result = turn(orch, max_payload_bytes=100)
    assert isinstance(result.outcome, outcome.Fail)
    assert "over the limit of 100" in result.outcome.details.message


def test_bad_activity_name_raises_into_the_code() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        try:
            ctx.schedule_activity("")
        except InvalidArgument:
            return "caught"
        yield  # pragma: no cover

    assert turn(orch).outcome == outcome.Complete(output='"caught"')


def test_identity_properties() -> None:
    seen: dict[str, Any] = {}

    def orch(ctx: Any, _: Any) -> Any:
        seen.update(
            instance=ctx.instance_id,
            execution=ctx.execution_id,
            name=ctx.orchestration_name,
            version=ctx.orchestration_version,
        )
        return None
        yield  # pragma: no cover

    turn(orch, execution_id=3)
    assert seen == {
        "instance": INSTANCE,
        "execution": 3,
        "name": "orchestration",
        "version": "1.0.0",
    }


def test_with_tag_rules() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        messages: list[str] = []
        try:
            ctx.schedule_timer(1).with_tag("gpu")
        except InvalidArgument as exc:
            messages.append(str(exc))
        first = ctx.schedule_activity("A")
        yield ctx.schedule_timer(0)
        try:
            first.with_tag("late")
        except InvalidArgument as exc:
            messages.append(str(exc))
        try:
            ctx.schedule_activity("B").with_tag("")
        except InvalidArgument as exc:
            messages.append(str(exc))
        return messages

    from tests.core.builders import timer_due

    h = list(turn(orch).new_events)
    result = turn(orch, h, [timer_due(4)])
    assert result.outcome == outcome.Complete(
        output='["with_tag() applies to activities only",'
        '"with_tag() must be called right after scheduling the activity, before any yield",'
        '"tag must not be empty"]'
    )


def test_oversized_activity_input_raises_into_the_code() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        try:
            ctx.schedule_activity("A", "x" * 100)
        except Exception as exc:
            return [type(exc).__name__, "input of activity 'A'" in str(exc)]
        yield  # pragma: no cover

    result = turn(orch, max_payload_bytes=50)
    assert result.outcome == outcome.Complete(output='["PayloadError",true]')
    assert result.worker_items == ()
