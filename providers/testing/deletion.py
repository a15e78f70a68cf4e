"""Deletion: whole trees, in one step, refusing what must not go, fencing in-flight acks."""

from __future__ import annotations

from durox.core import history
from durox.core.commit import OutgoingMessage
from durox.core.errors import InstanceNotFound, InvalidArgument, LockLost
from durox.core.messages import StartOrchestration
from durox.providers.testing.helpers import (
    LOCK,
    ORCH,
    activity,
    complete_instance,
    create,
    drain_work,
    fail_instance,
    fetch,
    fetch_work,
    make_commit,
    poke,
    raises,
    result,
    start_instance,
    started_event,
)
from durox.providers.testing.registry import Env, check

C = "deletion"


def _child(instance: str, parent: str) -> OutgoingMessage:
    return OutgoingMessage(
        message=StartOrchestration(
            instance=instance,
            name=ORCH,
            input="1",
            parent_instance=parent,
            parent_execution_id=1,
            parent_id=2,
        )
    )


def _run_child(env: Env, instance: str, children: list[OutgoingMessage] | None = None) -> None:
    """Fetch a created child and ack its first turn, optionally starting grandchildren."""
    item = fetch(env.provider)
    assert item.instance == instance, (item.instance, instance)
    env.provider.ack_orchestration_item(
        item.lock_token,
        make_commit(instance, events=[started_event()], orchestrator_items=children or []),
    )


def _tree(env: Env) -> None:
    """root -> (c1 -> g1, c2); all running."""
    start_instance(
        env.provider, "root", orchestrator_items=[_child("c1", "root"), _child("c2", "root")]
    )
    _run_child(env, "c1", [_child("g1", "c1")])
    _run_child(env, "c2")
    _run_child(env, "g1")


@check(C, admin=True)
def delete_completed_instance_removes_everything(env: Env) -> None:
    """Deleting a completed instance removes status, history, executions and KV, and reports the counts."""
    p, admin = env.provider, env.admin
    start_instance(
        p,
        "i1",
        kv_ops=[
            history.KeyValueSet(event_id=2, timestamp_ms=0, key="k", value="1", updated_at_ms=0)
        ],
    )
    complete_instance(p, "i1")
    events = len(p.read_history("i1"))
    res = admin.delete_instance("i1")
    assert (res.instances_deleted, res.executions_deleted, res.events_deleted) == (1, 1, events)
    assert p.get_instance_status("i1") is None and p.read_history("i1") == []
    assert p.get_kv_all_values("i1") == {}
    assert "i1" not in admin.list_instances()
    raises(InstanceNotFound, admin.get_instance_info, "i1")


@check(C, admin=True)
def delete_failed_instance(env: Env) -> None:
    """A failed instance can be deleted without force."""
    p = env.provider
    start_instance(p, "i1")
    fail_instance(p, "i1")
    assert env.admin.delete_instance("i1").instances_deleted == 1
    assert p.get_instance_status("i1") is None


@check(C, admin=True)
def delete_running_instance_needs_force(env: Env) -> None:
    """A running instance is refused with InvalidArgument and left intact; force deletes it."""
    p, admin = env.provider, env.admin
    start_instance(p, "i1")
    raises(InvalidArgument, admin.delete_instance, "i1")
    assert p.read_history("i1") == [started_event()]
    assert admin.delete_instance("i1", force=True).instances_deleted == 1
    assert p.get_instance_status("i1") is None


@check(C, admin=True)
def delete_unknown_instance_raises_not_found(env: Env) -> None:
    """Deleting an id that does not exist raises InstanceNotFound."""
    raises(InstanceNotFound, env.admin.delete_instance, "nobody")
    raises(InstanceNotFound, env.admin.delete_instance, "nobody", force=True)


@check(C, admin=True)
def delete_removes_queued_messages_and_counts_them(env: Env) -> None:
    """Queued orchestrator messages and activities of the instance are deleted and counted."""
    p, admin = env.provider, env.admin
    start_instance(p, "i1", worker_items=[activity("i1", 2), activity("i1", 3)])
    poke(p, "i1")
    poke(p, "i1", delay_ms=60_000)
    res = admin.delete_instance("i1", force=True)
    assert res.queue_messages_deleted == 4
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
    assert drain_work(p) == []
    env.advance(61)
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None


@check(C, admin=True)
def deleted_id_can_be_reused_with_no_stale_data(env: Env) -> None:
    """After a delete the same id starts fresh: no old history, KV, custom status or messages."""
    p, admin = env.provider, env.admin
    start_instance(
        p,
        "i1",
        custom_status="old",
        custom_status_changed=True,
        kv_ops=[
            history.KeyValueSet(event_id=2, timestamp_ms=0, key="k", value="1", updated_at_ms=0)
        ],
    )
    poke(p, "i1")
    admin.delete_instance("i1", force=True)
    create(p, "i1", input='"new"')
    status = p.get_instance_status("i1")
    assert status is not None and (status.custom_status, status.custom_status_version) == (None, 0)
    assert p.get_kv_all_values("i1") == {} and p.read_history("i1") == []
    item = fetch(p)
    assert [m.input for m in item.messages] == ['"new"']  # type: ignore[union-attr]
    assert item.kv_snapshot == {}


@check(C, admin=True)
def forced_delete_fences_an_in_flight_ack(env: Env) -> None:
    """Force-deleting a locked instance makes its holder's ack raise LockLost, and the instance stays gone."""
    p, admin = env.provider, env.admin
    start_instance(p, "i1")
    poke(p, "i1")
    item = fetch(p)
    admin.delete_instance("i1", force=True)
    raises(
        LockLost,
        p.ack_orchestration_item,
        item.lock_token,
        make_commit("i1", events=[started_event(2)]),
    )
    assert p.get_instance_status("i1") is None and p.read_history("i1") == []


@check(C, admin=True)
def forced_delete_cancels_in_flight_activity(env: Env) -> None:
    """An activity running when its instance is force-deleted cannot ack into a re-created instance."""
    p, admin = env.provider, env.admin
    start_instance(p, "i1", worker_items=[activity("i1", 2)])
    work = fetch_work(p)
    assert work is not None
    admin.delete_instance("i1", force=True)
    create(p, "i1")
    raises(LockLost, p.ack_work_item, work.lock_token, result("i1", 2))
    item = fetch(p)
    assert [type(m).__name__ for m in item.messages] == ["StartOrchestration"]


@check(C, admin=True)
def delete_cascades_through_the_tree(env: Env) -> None:
    """Deleting the root removes children and grandchildren, and the counts add up over the tree."""
    p, admin = env.provider, env.admin
    _tree(env)
    res = admin.delete_instance("root", force=True)
    assert res.instances_deleted == 4 and res.executions_deleted == 4 and res.events_deleted == 4
    for name in ("root", "c1", "c2", "g1"):
        assert p.get_instance_status(name) is None
    assert admin.list_instances() == []


@check(C, admin=True)
def sub_orchestration_cannot_be_deleted_directly(env: Env) -> None:
    """Deleting a child raises InvalidArgument even with force; it stays."""
    p, admin = env.provider, env.admin
    _tree(env)
    raises(InvalidArgument, admin.delete_instance, "c1")
    raises(InvalidArgument, admin.delete_instance, "g1", force=True)
    assert p.get_instance_status("c1") is not None and p.get_instance_status("g1") is not None


@check(C, admin=True)
def running_child_blocks_unforced_delete(env: Env) -> None:
    """A completed root with a running child is refused without force; nothing of the tree is deleted."""
    p, admin = env.provider, env.admin
    start_instance(p, "root", orchestrator_items=[_child("kid", "root")])
    _run_child(env, "kid")
    complete_instance(p, "root")
    raises(InvalidArgument, admin.delete_instance, "root")
    assert p.get_instance_status("root") is not None and p.get_instance_status("kid") is not None
    assert admin.delete_instance("root", force=True).instances_deleted == 2


@check(C, admin=True)
def list_children_lists_direct_children(env: Env) -> None:
    """list_children gives direct children only; a leaf or unknown id gives []."""
    admin = env.admin
    _tree(env)
    assert sorted(admin.list_children("root")) == ["c1", "c2"]
    assert admin.list_children("c1") == ["g1"]
    assert admin.list_children("g1") == []
    assert admin.list_children("nobody") == []


@check(C, admin=True)
def delete_leaves_other_instances_alone(env: Env) -> None:
    """Deleting one instance keeps another's history, messages and activities."""
    p, admin = env.provider, env.admin
    start_instance(p, "keep", worker_items=[activity("keep", 2)])
    start_instance(p, "drop", worker_items=[activity("drop", 2)])
    poke(p, "keep")
    admin.delete_instance("drop", force=True)
    assert p.read_history("keep") == [started_event()]
    assert [a.instance for a in drain_work(p)] == ["keep"]
    assert fetch(p).instance == "keep"
