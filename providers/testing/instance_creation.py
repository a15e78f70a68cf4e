"""Instance creation: ``create_instance`` makes the instance at once; enqueues never do."""

from __future__ import annotations

from durox.core.commit import OutgoingMessage
from durox.core.errors import InstanceAlreadyExists, InstanceNotFound
from durox.core.messages import ExternalRaised, StartOrchestration
from durox.providers.testing.helpers import (
    ORCH,
    VERSION,
    create,
    fetch,
    make_commit,
    start_instance,
    started_event,
)
from durox.providers.testing.registry import Env, check

C = "instance_creation"


@check(C)
def created_instance_is_running_before_any_turn(env: Env) -> None:
    """A created instance exists at once: Running, execution 1, the start's name and version."""
    p = env.provider
    create(p, "i1", version="2.0.0")
    status = p.get_instance_status("i1")
    assert status is not None
    assert (status.status, status.execution_id, status.orchestration_name) == ("Running", 1, ORCH)
    assert status.orchestration_version == "2.0.0"
    assert (status.output, status.error, status.custom_status, status.custom_status_version) == (
        None,
        None,
        None,
        0,
    )


@check(C)
def create_enqueues_the_start_message(env: Env) -> None:
    """The start message is fetched as the only message of a brand-new instance with empty history."""
    p = env.provider
    create(p, "i1", input='{"n": 1}')
    item = fetch(p)
    assert item.instance == "i1" and item.execution_id == 1
    assert item.history == () and item.history_len == 0 and item.history_offset == 0
    assert len(item.messages) == 1 and isinstance(item.messages[0], StartOrchestration)
    assert item.messages[0].input == '{"n": 1}'
    assert item.orchestration_name == ORCH and item.attempt_count == 1


@check(C)
def null_version_until_first_turn_picks_one(env: Env) -> None:
    """A start without version leaves it None; the first ack stores the commit's version."""
    p = env.provider
    create(p, "i1")
    item = fetch(p)
    assert item.orchestration_version is None
    assert p.get_instance_status("i1").orchestration_version is None  # type: ignore[union-attr]
    p.ack_orchestration_item(item.lock_token, make_commit("i1", events=[started_event()]))
    assert p.get_instance_status("i1").orchestration_version == VERSION  # type: ignore[union-attr]


@check(C)
def duplicate_create_raises_and_writes_nothing(env: Env) -> None:
    """Creating an existing id raises InstanceAlreadyExists and enqueues no second start."""
    p = env.provider
    create(p, "i1", input='"first"')
    try:
        create(p, "i1", input='"second"')
    except InstanceAlreadyExists:
        pass
    else:
        raise AssertionError(
            "a second create_instance of the same id must raise InstanceAlreadyExists"
        )
    item = fetch(p)
    assert [m.input for m in item.messages] == ['"first"']  # type: ignore[union-attr]


@check(C)
def enqueue_to_unknown_instance_raises_and_creates_nothing(env: Env) -> None:
    """enqueue_orchestrator for an unknown id raises InstanceNotFound, even a StartOrchestration."""
    p = env.provider
    for message in (
        ExternalRaised(instance="ghost", name="e", data="1"),
        StartOrchestration(instance="ghost", name=ORCH, input="1"),
    ):
        try:
            p.enqueue_orchestrator(message)
        except InstanceNotFound:
            pass
        else:
            raise AssertionError(
                f"enqueue of {type(message).__name__} to an unknown instance must raise"
            )
    assert p.get_instance_status("ghost") is None
    assert p.fetch_orchestration_item(lock_timeout=30) is None


@check(C)
def first_ack_records_history(env: Env) -> None:
    """After the first ack the history holds OrchestrationStarted and the instance stays Running."""
    p = env.provider
    start_instance(p, "i1")
    events = p.read_history("i1")
    assert events == [started_event(1)]
    assert p.get_instance_status("i1").status == "Running"  # type: ignore[union-attr]


@check(C)
def commit_start_message_creates_child_instance(env: Env) -> None:
    """A StartOrchestration in a commit's orchestrator items creates the child row with its parent."""
    p = env.provider
    child = StartOrchestration(
        instance="i1::c",
        name="Child",
        input="5",
        parent_instance="i1",
        parent_execution_id=1,
        parent_id=2,
    )
    start_instance(p, "i1", orchestrator_items=[OutgoingMessage(message=child)])
    status = p.get_instance_status("i1::c")
    assert (
        status is not None and status.status == "Running" and status.orchestration_name == "Child"
    )
    item = fetch(p)
    assert item.instance == "i1::c" and item.messages == (child,)


@check(C, admin=True)
def child_instance_records_its_parent(env: Env) -> None:
    """A child created by a commit reports parent_instance_id; a root reports None."""
    p = env.provider
    child = StartOrchestration(instance="kid", name="Child", input="5", parent_instance="root")
    start_instance(p, "root", orchestrator_items=[OutgoingMessage(message=child)])
    assert env.admin.get_instance_info("kid").parent_instance_id == "root"
    assert env.admin.get_instance_info("root").parent_instance_id is None


@check(C)
def commit_start_message_for_existing_instance_keeps_it(env: Env) -> None:
    """A commit's StartOrchestration for an existing id leaves the row as is and still delivers the message."""
    p = env.provider
    start_instance(p, "other")
    again = StartOrchestration(instance="other", name="Different", input="1")
    create(p, "i1")
    item = fetch(p)
    p.ack_orchestration_item(
        item.lock_token,
        make_commit(
            "i1", events=[started_event()], orchestrator_items=[OutgoingMessage(message=again)]
        ),
    )
    status = p.get_instance_status("other")
    assert status is not None and status.orchestration_name == ORCH
    assert p.read_history("other") == [started_event(1)]
    item = fetch(p)
    assert item.instance == "other" and item.messages == (again,)
