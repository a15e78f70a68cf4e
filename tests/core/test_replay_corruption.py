"""Odd and corrupted histories: failed as configuration errors, never an exception."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from durox.core import history, outcome
from durox.core.errors import ErrorDetails, InvalidArgument
from durox.core.items import OrchestrationItem
from durox.core.options import RuntimeOptions
from durox.core.registry import Registry
from durox.core.replay import run_turn
from durox.core.turn import AbandonTurn, AckTurn, decide_turn
from tests.core.builders import (
    T0,
    act_done,
    completed,
    continued,
    kinds,
    orch_completed,
    orch_failed,
    scheduled,
    started,
    turn,
)

Gen = Generator[Any, Any, Any]


def orch(ctx: Any, _: Any) -> Gen:
    return (yield ctx.schedule_activity("A"))


@pytest.mark.parametrize(
    "events",
    [
        [scheduled(1, "A")],
        [completed(1, 1)],
        [scheduled(1, "A"), started(2)],
    ],
    ids=["schedule-first", "completion-first", "started-second"],
)
def test_first_event_must_be_orchestration_started(events: list[history.Event]) -> None:
    result = turn(orch, events)
    assert isinstance(result.outcome, outcome.Fail)
    details = result.outcome.details
    assert (details.category, details.kind) == ("configuration", "nondeterminism")
    assert "corrupted history: the first event must be OrchestrationStarted" in details.message
    assert kinds(result.new_events) == ["OrchestrationFailed"]
    assert result.new_events[0].event_id == len(events) + 1


def test_second_orchestration_started_is_rejected() -> None:
    result = turn(orch, [started(1), scheduled(2, "A"), started(3)])
    assert isinstance(result.outcome, outcome.Fail)
    assert "OrchestrationStarted may only be the first event" in result.outcome.details.message


@pytest.mark.parametrize(
    ("terminal", "expected"),
    [
        (orch_completed(3, '"x"'), outcome.Complete(output='"x"')),
        (
            orch_failed(3, "dead"),
            outcome.Fail(
                details=ErrorDetails(
                    category="application", kind="orchestration_failed", message="dead"
                )
            ),
        ),
        (continued(3, "5"), outcome.ContinueAsNew(input="5")),
    ],
    ids=["completed", "failed", "continued"],
)
def test_terminal_history_yields_no_new_events(
    terminal: history.Event, expected: outcome.Outcome
) -> None:
    h = [started(1), scheduled(2, "A"), terminal]
    result = turn(orch, h, [act_done(2)])
    assert result.new_events == ()
    assert result.outcome == expected
    assert result.worker_items == () and result.orchestrator_items == () and result.state is None


def test_terminal_event_in_the_middle_still_ends_the_history() -> None:
    h = [started(1), orch_completed(2, "1"), scheduled(3, "A")]
    result = turn(orch, h)
    assert result.new_events == () and result.outcome == outcome.Complete(output="1")


def test_history_tail_without_state_is_driver_misuse() -> None:
    with pytest.raises(InvalidArgument, match="read the whole history"):
        run_turn([scheduled(2, "A")], [], orch, instance="i", now_ms=0, history_len=2)


def test_stored_input_that_is_not_json_fails_the_orchestration() -> None:
    result = turn(orch, [started(1, input="{not json")])
    assert isinstance(result.outcome, outcome.Fail)
    assert result.outcome.details.error_type == "PayloadError"


def _registry() -> Registry:
    registry = Registry()
    registry.add_orchestration("orchestration", orch)
    return registry


def _item(
    events: tuple[history.Event, ...], messages: tuple[Any, ...] = (), **kw: Any
) -> OrchestrationItem:
    return OrchestrationItem(
        instance="inst",
        lock_token="t",
        execution_id=1,
        orchestration_name="orchestration",
        orchestration_version="1.0.0",
        history=events,
        history_len=len(events),
        messages=messages,
        **kw,
    )


def test_decide_turn_fails_a_history_that_does_not_start_properly() -> None:
    decision = decide_turn(
        _item((scheduled(1, "A"),), (act_done(1),)),
        _registry(),
        options=RuntimeOptions(),
        now_ms=T0,
        entropy=b"",
    )
    assert isinstance(decision, AckTurn) and decision.outcome == "failed"
    (failed,) = decision.commit.new_events
    assert isinstance(failed, history.OrchestrationFailed) and failed.event_id == 2
    assert failed.details.category == "configuration"
    assert "first event is ActivityScheduled" in failed.details.message
    assert decision.commit.status == "Failed"


def test_decide_turn_discards_messages_for_an_instance_that_never_started() -> None:
    decision = decide_turn(
        _item((), (act_done(2),)), _registry(), options=RuntimeOptions(), now_ms=T0, entropy=b""
    )
    assert isinstance(decision, AckTurn) and decision.outcome == "discarded"
    assert decision.commit.new_events == ()


def test_unreadable_history_is_abandoned_for_a_while() -> None:
    decision = decide_turn(
        _item((), (act_done(2),), history_error="bad JSON at event 3"),
        _registry(),
        options=RuntimeOptions(),
        now_ms=T0,
        entropy=b"",
    )
    assert isinstance(decision, AbandonTurn)
    assert decision.delay_ms == 1000
    assert "bad JSON at event 3" in decision.reason
