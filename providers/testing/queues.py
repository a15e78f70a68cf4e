"""Queue semantics: FIFO, peek-lock, delayed visibility, and orphans that never block."""

from __future__ import annotations

from durox.core.commit import OutgoingMessage
from durox.core.messages import ActivityResult, ExternalRaised, TimerDue
from durox.providers.testing.helpers import (
    LOCK,
    activity,
    create,
    drain_work,
    fetch,
    fetch_work,
    make_commit,
    start_instance,
    started_event,
    turn,
)
from durox.providers.testing.registry import Env, check

C = "queue_semantics"


@check(C)
def worker_queue_is_fifo(env: Env) -> None:
    """Activities come out in enqueue order, then the queue is empty."""
    p = env.provider
    for i in range(5):
        p.enqueue_worker(activity("i1", i + 2, name=f"A{i}"))
    taken = drain_work(p)
    assert [(a.id, a.name) for a in taken] == [(i + 2, f"A{i}") for i in range(5)]
    assert fetch_work(p) is None


@check(C)
def worker_item_is_visible_at_once(env: Env) -> None:
    """A new activity can be fetched immediately, and it round-trips every field."""
    p = env.provider
    message = activity("i1", 7, name="Resize", input='{"w": 3}')
    p.enqueue_worker(message)
    work = fetch_work(p)
    assert work is not None and work.message == message and work.attempt_count == 1


@check(C)
def worker_peek_lock_hides_without_removing(env: Env) -> None:
    """A fetched activity is invisible to other fetches but not gone: it returns after its lock expires."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2))
    assert fetch_work(p, lock_timeout=5) is not None
    assert fetch_work(p) is None
    env.advance(6)
    assert fetch_work(p) is not None


@check(C)
def worker_ack_moves_result_to_orchestrator_queue(env: Env) -> None:
    """ack_work_item(result) deletes the activity and enqueues the result for its instance, together."""
    p = env.provider
    start_instance(p, "i1", worker_items=[activity("i1", 2)])
    work = fetch_work(p)
    assert work is not None
    res = ActivityResult(instance="i1", execution_id=1, id=2, result='"done"')
    p.ack_work_item(work.lock_token, res)
    assert fetch_work(p) is None
    env.advance(LOCK + 1)
    assert fetch_work(p) is None, "an acked activity never comes back"
    assert fetch(p).messages == (res,)


@check(C)
def worker_ack_without_result_only_deletes(env: Env) -> None:
    """ack_work_item(token, None) deletes the activity and enqueues nothing."""
    p = env.provider
    start_instance(p, "i1", worker_items=[activity("i1", 2)])
    work = fetch_work(p)
    assert work is not None
    p.ack_work_item(work.lock_token, None)
    env.advance(LOCK + 1)
    assert fetch_work(p) is None
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None


@check(C)
def delayed_worker_item_is_skipped_for_the_next(env: Env) -> None:
    """An activity abandoned with a delay is skipped and the next one is served meanwhile."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2))
    p.enqueue_worker(activity("i1", 3))
    first = fetch_work(p)
    assert first is not None and first.message.id == 2
    p.abandon_work_item(first.lock_token, delay_ms=10_000)
    nxt = fetch_work(p)
    assert nxt is not None and nxt.message.id == 3
    env.advance(11)
    late = fetch_work(p)
    assert late is not None and late.message.id == 2


@check(C)
def enqueued_timer_is_invisible_until_due(env: Env) -> None:
    """A TimerDue enqueued with a delay is not fetched before it is due, and is after."""
    p = env.provider
    start_instance(p, "i1")
    timer = TimerDue(instance="i1", execution_id=1, id=2, fire_at_ms=0)
    p.enqueue_orchestrator(timer, delay_ms=60_000)
    env.advance(59)
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
    env.advance(2)
    assert fetch(p).messages == (timer,)


@check(C)
def committed_timer_is_delayed_from_commit_time(env: Env) -> None:
    """An OutgoingMessage with delay_ms in a commit becomes visible only after that delay."""
    p = env.provider
    timer = TimerDue(instance="i1", execution_id=1, id=2, fire_at_ms=0)
    start_instance(p, "i1", orchestrator_items=[OutgoingMessage(message=timer, delay_ms=30_000)])
    env.advance(29)
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
    env.advance(2)
    assert fetch(p).messages == (timer,)


@check(C)
def instances_are_served_in_creation_order(env: Env) -> None:
    """Five new instances are fetched in the order they were created."""
    p = env.provider
    names = [f"n{i}" for i in range(5)]
    for name in names:
        create(p, name)
    assert [fetch(p).instance for _ in names] == names


@check(C)
def orphan_messages_are_discarded(env: Env) -> None:
    """A message for an instance that does not exist is never returned, and is gone after the fetch."""
    p = env.provider
    stray = ExternalRaised(instance="ghost", name="e", data="1")
    start_instance(p, "i1", orchestrator_items=[OutgoingMessage(message=stray)])
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
    assert p.get_instance_status("ghost") is None


@check(C)
def orphans_do_not_block_other_instances(env: Env) -> None:
    """Orphans ahead in the queue are skipped: the next real instance is still fetched in one call."""
    p = env.provider
    strays = [
        OutgoingMessage(message=ExternalRaised(instance=f"ghost{i}", name="e", data="1"))
        for i in range(3)
    ]
    start_instance(p, "i1", orchestrator_items=strays)
    create(p, "real")
    item = fetch(p)
    assert item.instance == "real"
    p.ack_orchestration_item(item.lock_token, make_commit("real", events=[started_event()]))
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None


@check(C)
def worker_result_for_missing_instance_becomes_orphan(env: Env) -> None:
    """A completion reported for an instance that does not exist is accepted and then discarded."""
    p = env.provider
    p.enqueue_worker(activity("ghost", 2))
    work = fetch_work(p)
    assert work is not None
    p.ack_work_item(
        work.lock_token, ActivityResult(instance="ghost", execution_id=1, id=2, result="1")
    )
    start_instance(p, "i1")
    turn(p, "i1")
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
