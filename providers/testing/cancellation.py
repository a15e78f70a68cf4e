"""Activity cancellation: the orchestration deletes the worker row; the worker learns it by LockLost."""

from __future__ import annotations

from durox.core.errors import LockLost
from durox.providers.testing.helpers import (
    LOCK,
    activity,
    cancel_ref,
    complete_instance,
    drain_work,
    fetch,
    fetch_work,
    raises,
    result,
    start_instance,
    turn,
)
from durox.providers.testing.registry import Env, check

C = "cancellation"


@check(C)
def cancelled_activities_leave_the_worker_queue(env: Env) -> None:
    """Cancelling activities 2 and 4 of 2, 3, 4 leaves only 3 to fetch."""
    p = env.provider
    start_instance(p, "i1", worker_items=[activity("i1", i) for i in (2, 3, 4)])
    turn(p, "i1", cancelled=[cancel_ref("i1", 2), cancel_ref("i1", 4)])
    assert [a.id for a in drain_work(p)] == [3]


@check(C)
def ack_of_a_cancelled_activity_fails(env: Env) -> None:
    """A worker holding a cancelled activity gets LockLost on ack, and its result is not enqueued."""
    p = env.provider
    start_instance(p, "i1", worker_items=[activity("i1", 2)])
    work = fetch_work(p)
    assert work is not None
    turn(p, "i1", cancelled=[cancel_ref("i1", 2)])
    exc = raises(LockLost, p.ack_work_item, work.lock_token, result("i1", 2))
    assert exc.retryable is False
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None


@check(C)
def renew_of_a_cancelled_activity_fails(env: Env) -> None:
    """renew_work_item_lock raises LockLost once the activity is cancelled: the worker's cancel signal."""
    p = env.provider
    start_instance(p, "i1", worker_items=[activity("i1", 2)])
    work = fetch_work(p)
    assert work is not None
    p.renew_work_item_lock(work.lock_token, lock_timeout=LOCK)
    turn(p, "i1", cancelled=[cancel_ref("i1", 2)])
    raises(LockLost, p.renew_work_item_lock, work.lock_token, lock_timeout=LOCK)
    raises(LockLost, p.abandon_work_item, work.lock_token)


@check(C)
def cancelling_unknown_activities_is_harmless(env: Env) -> None:
    """Cancel references to activities that do not exist are ignored; the commit still applies."""
    p = env.provider
    start_instance(p, "i1", worker_items=[activity("i1", 2)])
    turn(
        p,
        "i1",
        cancelled=[cancel_ref("i1", 99), cancel_ref("nobody", 2)],
        custom_status="ok",
        custom_status_changed=True,
    )
    assert p.get_instance_status("i1").custom_status == "ok"  # type: ignore[union-attr]
    assert [a.id for a in drain_work(p)] == [2]


@check(C)
def scheduled_and_cancelled_in_one_commit_leaves_no_row(env: Env) -> None:
    """An activity both scheduled and cancelled by one commit is never fetchable."""
    p = env.provider
    start_instance(
        p,
        "i1",
        worker_items=[activity("i1", 2), activity("i1", 3)],
        cancelled=[cancel_ref("i1", 2)],
    )
    assert [a.id for a in drain_work(p)] == [3]


@check(C)
def cancellation_matches_the_execution(env: Env) -> None:
    """A cancel for (instance, execution 2, id) does not touch the activity of execution 1 with that id."""
    p = env.provider
    start_instance(p, "i1", worker_items=[activity("i1", 2)])
    turn(p, "i1", cancelled=[cancel_ref("i1", 2, execution_id=2)])
    assert [a.id for a in drain_work(p)] == [2]


@check(C)
def cancellation_matches_the_instance(env: Env) -> None:
    """Cancelling i1's activity 2 leaves i2's activity 2 alone."""
    p = env.provider
    start_instance(p, "i1", worker_items=[activity("i1", 2)])
    start_instance(p, "i2", worker_items=[activity("i2", 2)])
    turn(p, "i1", cancelled=[cancel_ref("i1", 2)])
    assert [a.instance for a in drain_work(p)] == ["i2"]


@check(C)
def activity_stays_fetchable_after_its_orchestration_ends(env: Env) -> None:
    """The provider never filters activities by orchestration state: one left queued by a completed instance still runs."""
    p = env.provider
    start_instance(p, "i1", worker_items=[activity("i1", 2)])
    complete_instance(p, "i1")
    work = fetch_work(p)
    assert work is not None and work.message.id == 2
    p.renew_work_item_lock(work.lock_token, lock_timeout=LOCK)
    p.ack_work_item(work.lock_token, result("i1", 2))
    assert fetch(p).messages == (result("i1", 2),)
