"""Multiple executions: continue-as-new starts a new execution with its own history and status."""

from __future__ import annotations

from durox.core import history
from durox.core.commit import OutgoingMessage
from durox.core.messages import ContinueAsNew
from durox.providers.testing.helpers import (
    complete_instance,
    continue_as_new,
    fetch,
    make_commit,
    next_event_id,
    poke,
    start_instance,
    started_event,
    turn,
)
from durox.providers.testing.registry import Env, check

C = "multi_execution"


@check(C)
def continue_as_new_makes_execution_two_current(env: Env) -> None:
    """A commit with execution_id + 1 creates that execution and makes it current, Running."""
    p = env.provider
    start_instance(p, "i1")
    assert continue_as_new(p, "i1") == 2
    status = p.get_instance_status("i1")
    assert status is not None and status.execution_id == 2 and status.status == "Running"


@check(C)
def each_execution_keeps_its_own_history(env: Env) -> None:
    """Execution 1 keeps Started + ContinuedAsNew; execution 2 starts from event id 1 with its new input."""
    p = env.provider
    start_instance(p, "i1")
    continue_as_new(p, "i1", input='"round2"')
    first = p.read_history("i1", 1)
    assert [type(e).__name__ for e in first] == [
        "OrchestrationStarted",
        "OrchestrationContinuedAsNew",
    ]
    assert p.read_history("i1", 2) == [started_event(1, input='"round2"')]


@check(C)
def default_history_read_is_the_latest_execution(env: Env) -> None:
    """read_history without an execution id returns the current execution's events."""
    p = env.provider
    start_instance(p, "i1")
    continue_as_new(p, "i1", input='"2"')
    continue_as_new(p, "i1", input='"3"')
    assert p.read_history("i1") == p.read_history("i1", 3) == [started_event(1, input='"3"')]


@check(C)
def execution_ids_follow_in_sequence(env: Env) -> None:
    """Three continue-as-new steps give executions 2, 3, 4; every one's history stays readable."""
    p = env.provider
    start_instance(p, "i1")
    assert [continue_as_new(p, "i1", input=f'"{n}"') for n in (2, 3, 4)] == [2, 3, 4]
    for n in (1, 2, 3):
        assert isinstance(p.read_history("i1", n)[-1], history.OrchestrationContinuedAsNew)
    assert len(p.read_history("i1", 4)) == 1


@check(C)
def status_between_executions_is_continued_as_new(env: Env) -> None:
    """Between the ending ack and the new execution's first ack, the instance reports ContinuedAsNew."""
    p = env.provider
    start_instance(p, "i1")
    eid = next_event_id(p, "i1")

    nxt = ContinueAsNew(instance="i1", execution_id=2, name="TestOrch", input='"x"')
    turn(
        p,
        "i1",
        events=[history.OrchestrationContinuedAsNew(event_id=eid, timestamp_ms=0, input='"x"')],
        orchestrator_items=[OutgoingMessage(message=nxt)],
        status="ContinuedAsNew",
        output='"x"',
    )
    status = p.get_instance_status("i1")
    assert status is not None and (status.status, status.execution_id) == ("ContinuedAsNew", 1)
    item = fetch(p)
    assert item.messages == (nxt,)


@check(C)
def new_execution_turns_see_only_their_history(env: Env) -> None:
    """A later turn of execution 2 is fetched with execution_id 2 and only that execution's events."""
    p = env.provider
    start_instance(p, "i1")
    continue_as_new(p, "i1", input='"2"')
    poke(p, "i1")
    item = fetch(p)
    assert item.execution_id == 2
    assert item.history == (started_event(1, input='"2"'),) and item.history_len == 1
    p.ack_orchestration_item(item.lock_token, make_commit("i1", execution_id=2))


@check(C)
def status_and_output_are_per_execution(env: Env) -> None:
    """Completing execution 2 sets its status and output; the instance reports them; execution 1 is unchanged."""
    p = env.provider
    start_instance(p, "i1")
    continue_as_new(p, "i1", input='"2"')
    complete_instance(p, "i1", output='"final"')
    status = p.get_instance_status("i1")
    assert status is not None
    assert (status.status, status.execution_id, status.output) == ("Completed", 2, '"final"')


@check(C, admin=True)
def execution_infos_record_each_outcome(env: Env) -> None:
    """get_execution_info shows ContinuedAsNew (with the new input) for 1 and Completed for 2."""
    p, admin = env.provider, env.admin
    start_instance(p, "i1")
    continue_as_new(p, "i1", input='"2"')
    complete_instance(p, "i1", output='"final"')
    assert admin.list_executions("i1") == [1, 2]
    one, two = admin.get_execution_info("i1", 1), admin.get_execution_info("i1", 2)
    assert (one.status, one.output, one.event_count) == ("ContinuedAsNew", '"2"', 2)
    assert (two.status, two.output, two.event_count) == ("Completed", '"final"', 2)
    assert one.completed_at_ms is not None and two.completed_at_ms is not None
    assert admin.get_instance_info("i1").current_execution_id == 2
