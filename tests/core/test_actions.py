"""The matching table: every action becomes its event, and matches it back."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from durox.core import actions, history, outcome
from durox.core.commit import OutgoingMessage
from durox.core.messages import StartOrchestration
from tests.core.builders import chained, kinds, started, turn

Gen = Generator[Any, Any, Any]

EXAMPLES: list[actions.Action] = [
    actions.ScheduleActivity(name="A", input="1", session_id="s", tag="t"),
    actions.CreateTimer(fire_at_ms=99),
    actions.WaitExternal(name="E"),
    actions.DequeueEvent(name="q"),
    actions.StartSubOrchestration(name="C", input="2", version="1.0.0"),
    actions.StartSubOrchestration(name="C", input="2", instance="explicit"),
    actions.StartDetached(name="D", instance="d-1", input="3"),
    actions.SetCustomStatus(status="busy"),
    actions.SetKeyValue(key="k", value="4", updated_at_ms=7),
    actions.ClearKeyValue(key="k"),
    actions.ClearKeyValues(),
    actions.RecordSystemCall(op="new_guid", value="g"),
]


def test_every_action_type_has_an_example() -> None:
    assert {type(a) for a in EXAMPLES} == set(actions.MATCHING)


@pytest.mark.parametrize("action", EXAMPLES, ids=lambda a: type(a).__name__)
def test_action_becomes_its_event_and_matches_it(action: actions.Action) -> None:
    event = actions.to_event(action, event_id=5, timestamp_ms=3, instance="p", execution_id=2)
    event_type, fields = actions.MATCHING[type(action)]
    assert type(event) is event_type
    assert (event.event_id, event.timestamp_ms) == (5, 3)
    for field in fields:
        assert getattr(event, field) == getattr(action, field)
    assert actions.mismatch(action, event) is None


def test_derived_child_instance() -> None:
    event = actions.to_event(
        actions.StartSubOrchestration(name="C", input="2"),
        event_id=5,
        timestamp_ms=0,
        instance="p",
        execution_id=2,
    )
    assert isinstance(event, history.SubOrchestrationScheduled) and event.instance == "p::sub::2.5"


def test_describe_omits_clock_fields_and_nones() -> None:
    assert actions.describe(history.TimerCreated(event_id=1, timestamp_ms=2, fire_at_ms=3)) == (
        "TimerCreated()"
    )
    assert actions.describe(actions.ScheduleActivity(name="A", input="x" * 60)) == (
        "ScheduleActivity(name='A', input='" + "x" * 36 + "...)"
    )


def test_detached_start_mismatch_is_nondeterminism() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        ctx.schedule_orchestration("D", "d-2")
        yield ctx.schedule_timer(1)

    result = turn(orch, [started(1), chained(2, "D", "d-1")])
    assert isinstance(result.outcome, outcome.Fail)
    assert (
        "instance differs: code produced 'd-2', history has 'd-1'" in result.outcome.details.message
    )


def test_detached_start_is_honoured_when_the_orchestration_fails() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        ctx.schedule_orchestration("D", "d-1", {"x": 1})
        raise RuntimeError("after the detached start")
        yield  # pragma: no cover

    result = turn(orch)
    assert kinds(result.new_events) == [
        "OrchestrationStarted",
        "OrchestrationChained",
        "OrchestrationFailed",
    ]
    assert result.orchestrator_items == (
        OutgoingMessage(message=StartOrchestration(instance="d-1", name="D", input='{"x":1}')),
    )


def test_detached_start_is_not_repeated_on_replay() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        ctx.schedule_orchestration("D", "d-1")
        yield ctx.schedule_timer(1)

    first = turn(orch)
    again = turn(orch, first.new_events)
    assert again.new_events == () and again.orchestrator_items == ()
