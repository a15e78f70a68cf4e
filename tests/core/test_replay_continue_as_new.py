"""continue_as_new: the execution ends, a ContinueAsNew message starts the next one."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from durox.core import history, outcome
from durox.core.items import OrchestrationItem
from durox.core.messages import ContinueAsNew
from durox.core.options import RuntimeOptions
from durox.core.registry import Registry
from durox.core.turn import AckTurn, decide_turn
from tests.core.builders import (
    INSTANCE,
    T0,
    act_done,
    continued,
    kinds,
    scheduled,
    started,
    turn,
)
from tests.core.builders import timer_due as timer_due_msg
from tests.core.harness import World

Gen = Generator[Any, Any, Any]


def looper(ctx: Any, n: int) -> Gen:
    ctx.set_custom_status(f"round {n}")
    value = yield ctx.schedule_activity("Work", n)
    if n < 2:
        return (yield ctx.continue_as_new(n + 1))
    return value


def test_outcome_event_and_message() -> None:
    child = started(1, "Loop", input="0", parent_instance="mom", parent_execution_id=2, parent_id=5)
    h = list(turn(looper, started_event=child).new_events)
    result = turn(looper, h, [act_done(3, '"w"')])
    assert result.outcome == outcome.ContinueAsNew(input="1")
    assert kinds(result.new_events) == ["ActivityCompleted", "OrchestrationContinuedAsNew"]
    assert result.new_events[-1] == history.OrchestrationContinuedAsNew(
        event_id=5, timestamp_ms=T0, input="1", version=None
    )
    assert [m.message for m in result.orchestrator_items] == [
        ContinueAsNew(
            instance=INSTANCE,
            execution_id=2,
            name="Loop",
            input="1",
            version=None,
            parent_instance="mom",
            parent_execution_id=2,
            parent_id=5,
            carry_forward=(),
            initial_custom_status="round 0",
        )
    ]
    assert result.state is None


def test_pinned_version_travels_with_the_message() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        return (yield ctx.continue_as_new("x", version="2.1.0"))

    result = turn(orch)
    assert result.outcome == outcome.ContinueAsNew(input='"x"', version="2.1.0")
    message = result.orchestrator_items[0].message
    assert isinstance(message, ContinueAsNew) and message.version == "2.1.0"


def test_code_after_continue_as_new_never_runs_and_work_is_cancelled() -> None:
    ran: list[str] = []

    def orch(ctx: Any, _: Any) -> Gen:
        ctx.schedule_activity("Orphan")
        yield ctx.continue_as_new(1)
        ran.append("after")  # pragma: no cover

    result = turn(orch)
    assert ran == []
    assert kinds(result.new_events) == [
        "OrchestrationStarted",
        "ActivityScheduled",
        "ActivityCancelRequested",
        "OrchestrationContinuedAsNew",
    ]
    # never dispatched: the execution ended in the turn that scheduled it
    assert result.worker_items == ()
    assert [ref.id for ref in result.cancelled_activities] == [2]


def test_first_request_wins() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        ctx.continue_as_new(1)
        return (yield ctx.continue_as_new(2))

    assert turn(orch).outcome == outcome.ContinueAsNew(input="1")


def _registry() -> Registry:
    registry = Registry()
    registry.add_orchestration("Loop", looper, version="1.0.0")

    def looper_v2(ctx: Any, n: int) -> Gen:
        return f"v2 got {n}"
        yield  # pragma: no cover

    registry.add_orchestration("Loop", looper_v2, version="2.0.0")
    registry.add_activity("Work", lambda ctx, n: f"w{n}")
    return registry


def _item(restart: ContinueAsNew) -> OrchestrationItem:
    return OrchestrationItem(
        instance=INSTANCE,
        lock_token="t",
        execution_id=1,
        orchestration_name="Loop",
        orchestration_version="1.0.0",
        history=(started(1, "Loop", input="0"), continued(2, "1")),
        history_len=2,
        messages=(restart,),
    )


def restart_message(**kw: Any) -> ContinueAsNew:
    fields: dict[str, Any] = {
        "instance": INSTANCE,
        "execution_id": 2,
        "name": "Loop",
        "input": "1",
        "carry_forward": (history.QueuedEvent(name="q", data="3"),),
        "initial_custom_status": "round 0",
        "parent_instance": "mom",
        "parent_execution_id": 1,
        "parent_id": 4,
    }
    fields.update(kw)
    return ContinueAsNew(**fields)


def test_decide_turn_starts_the_next_execution_with_the_latest_version() -> None:
    decision = decide_turn(
        _item(restart_message()), _registry(), options=RuntimeOptions(), now_ms=T0, entropy=b""
    )
    assert isinstance(decision, AckTurn)
    commit = decision.commit
    assert (commit.execution_id, commit.orchestration_version, commit.status) == (
        2,
        "2.0.0",
        "Completed",
    )
    first = commit.new_events[0]
    assert first == history.OrchestrationStarted(
        event_id=1,
        timestamp_ms=T0,
        name="Loop",
        version="2.0.0",
        input="1",
        parent_instance="mom",
        parent_execution_id=1,
        parent_id=4,
        carry_forward=(history.QueuedEvent(name="q", data="3"),),
        initial_custom_status="round 0",
    )
    assert commit.output == '"v2 got 1"'
    assert commit.parent_instance == "mom"


def test_decide_turn_honours_a_pinned_version() -> None:
    decision = decide_turn(
        _item(restart_message(version="1.0.0")),
        _registry(),
        options=RuntimeOptions(),
        now_ms=T0,
        entropy=b"",
    )
    assert isinstance(decision, AckTurn)
    assert decision.commit.orchestration_version == "1.0.0"
    assert kinds(decision.commit.new_events) == [
        "OrchestrationStarted",
        "CustomStatusUpdated",
        "ActivityScheduled",
    ]
    assert decision.commit.status == "Running"


def test_restart_for_the_wrong_execution_is_discarded() -> None:
    decision = decide_turn(
        _item(restart_message(execution_id=5)),
        _registry(),
        options=RuntimeOptions(),
        now_ms=T0,
        entropy=b"",
    )
    assert isinstance(decision, AckTurn) and decision.outcome == "discarded"
    assert decision.commit.new_events == ()


def test_world_runs_executions_and_re_chooses_the_version() -> None:
    world = World(_registry())
    world.start("loop", "Loop", 0, version="1.0.0")
    world.run()
    assert world.output("loop") == "v2 got 1"
    state = world.instances["loop"]
    assert sorted(state.executions) == [1, 2]
    second = state.executions[2][0]
    assert isinstance(second, history.OrchestrationStarted)
    assert (second.version, second.initial_custom_status) == ("2.0.0", "round 0")


def test_world_runs_a_pinned_loop_to_its_end() -> None:
    registry = Registry()
    registry.add_orchestration("Loop", looper)

    registry.add_activity("Work", lambda ctx, n: f"w{n}")

    world = World(registry, sticky=False)
    world.start("loop", "Loop", 0)
    world.run()
    assert world.output("loop") == "w2"
    assert world.instances["loop"].custom_status == "round 2"
    assert sorted(world.instances["loop"].executions) == [1, 2, 3]


def test_cancel_beats_continue_as_new() -> None:
    from tests.core.builders import cancel

    def orch(ctx: Any, _: Any) -> Gen:
        yield ctx.schedule_timer(1)
        return (yield ctx.continue_as_new(1))

    h = list(turn(orch).new_events)
    result = turn(orch, h, [timer_due_msg(2), cancel("stop")])
    assert isinstance(result.outcome, outcome.Fail)
    assert result.outcome.details.kind == "cancelled"
    assert not any(isinstance(m.message, ContinueAsNew) for m in result.orchestrator_items)
    assert kinds(result.new_events)[-1] == "OrchestrationFailed"


def test_nondeterminism_beats_continue_as_new() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        ctx.continue_as_new(1)
        yield ctx.schedule_activity("Changed")

    result = turn(orch, [started(1), scheduled(2, "Original")])
    assert isinstance(result.outcome, outcome.Fail)
    assert result.outcome.details.kind == "nondeterminism"
    assert result.orchestrator_items == ()
