"""Lock expiration: locks end at their expiry, renewals push it out, late callers lose."""

from __future__ import annotations

from durox.core.errors import LockLost
from durox.providers.testing.helpers import (
    LOCK,
    activity,
    create,
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

C = "lock_expiration"


@check(C)
def orchestration_lock_expires_after_timeout(env: Env) -> None:
    """Before the timeout the instance stays locked; after it a fetch gets it with a new token."""
    p = env.provider
    create(p, "i1")
    first = fetch(p, lock_timeout=10)
    env.advance(8)
    assert p.fetch_orchestration_item(lock_timeout=10) is None
    env.advance(3)
    second = fetch(p, lock_timeout=10)
    assert second.instance == "i1" and second.lock_token != first.lock_token


@check(C)
def ack_with_expired_token_fails_after_takeover(env: Env) -> None:
    """Once another fetch took the expired lock, the old holder's ack fails and the new holder's succeeds."""
    p = env.provider
    create(p, "i1")
    first = fetch(p, lock_timeout=5)
    env.advance(6)
    second = fetch(p)
    raises(
        LockLost,
        p.ack_orchestration_item,
        first.lock_token,
        make_commit("i1", events=[started_event()]),
    )
    p.ack_orchestration_item(second.lock_token, make_commit("i1", events=[started_event()]))
    assert p.read_history("i1") == [started_event()]


@check(C)
def renewal_extends_the_orchestration_lock(env: Env) -> None:
    """Renewing at 8 of 10 seconds keeps the instance locked past the original expiry; the ack then works."""
    p = env.provider
    create(p, "i1")
    item = fetch(p, lock_timeout=10)
    env.advance(8)
    p.renew_orchestration_lock(item.lock_token, lock_timeout=10)
    env.advance(8)
    assert p.fetch_orchestration_item(lock_timeout=10) is None
    p.ack_orchestration_item(item.lock_token, make_commit("i1", events=[started_event()]))


@check(C)
def orchestration_renew_after_expiry_fails(env: Env) -> None:
    """An expired lock cannot be renewed back to life, even if nobody took it."""
    p = env.provider
    create(p, "i1")
    item = fetch(p, lock_timeout=5)
    env.advance(6)
    raises(LockLost, p.renew_orchestration_lock, item.lock_token, lock_timeout=30)
    assert fetch(p).instance == "i1"


@check(C)
def orchestration_abandon_after_expiry_fails(env: Env) -> None:
    """abandon with an expired token raises LockLost and does not disturb the new holder."""
    p = env.provider
    create(p, "i1")
    first = fetch(p, lock_timeout=5)
    env.advance(6)
    second = fetch(p)
    raises(LockLost, p.abandon_orchestration_item, first.lock_token)
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
    p.ack_orchestration_item(second.lock_token, make_commit("i1", events=[started_event()]))


@check(C)
def ack_releases_the_lock_at_once(env: Env) -> None:
    """A message enqueued during the lock is fetchable right after the ack, with no wait."""
    p = env.provider
    create(p, "i1")
    item = fetch(p)
    poke(p, "i1")
    p.ack_orchestration_item(item.lock_token, make_commit("i1", events=[started_event()]))
    assert fetch(p).instance == "i1"


@check(C)
def abandon_with_delay_hides_the_messages(env: Env) -> None:
    """abandon(delay_ms) releases the lock but the messages stay invisible until the delay passes."""
    p = env.provider
    create(p, "i1")
    item = fetch(p)
    p.abandon_orchestration_item(item.lock_token, delay_ms=10_000)
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
    env.advance(9)
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
    env.advance(2)
    assert fetch(p).messages == item.messages


@check(C)
def expired_batch_comes_back_with_later_messages(env: Env) -> None:
    """After expiry the next batch has the unacked messages plus those that arrived during the lock."""
    p = env.provider
    start_instance(p, "i1")
    poke(p, "i1", data="1")
    fetch(p, lock_timeout=5)
    poke(p, "i1", data="2")
    env.advance(6)
    item = fetch(p)
    assert [m.data for m in item.messages] == ["1", "2"]  # type: ignore[union-attr]


@check(C)
def worker_lock_expires_and_item_is_redelivered(env: Env) -> None:
    """An unacked activity is invisible until its lock expires, then redelivered with a new token."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2))
    first = fetch_work(p, lock_timeout=10)
    assert first is not None
    env.advance(8)
    assert fetch_work(p) is None
    env.advance(3)
    second = fetch_work(p)
    assert (
        second is not None
        and second.message == first.message
        and second.lock_token != first.lock_token
    )


@check(C)
def worker_ack_after_expiry_fails_and_item_stays(env: Env) -> None:
    """ack_work_item after the lock expired raises LockLost, enqueues nothing, and the item is fetchable again."""
    p = env.provider
    create(p, "i1")
    fetch(p)  # keep the start message out of the way
    p.enqueue_worker(activity("i1", 2))
    work = fetch_work(p, lock_timeout=5)
    assert work is not None
    env.advance(6)
    raises(LockLost, p.ack_work_item, work.lock_token, result("i1", 2))
    env.advance(LOCK + 1)  # the orchestration lock expires too
    item = fetch(p)
    assert all(m.__class__.__name__ != "ActivityResult" for m in item.messages)
    assert fetch_work(p) is not None


@check(C)
def worker_renewal_extends_the_lock(env: Env) -> None:
    """Renewing at 8 of 10 seconds keeps the activity locked past the original expiry; the ack then works."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2))
    work = fetch_work(p, lock_timeout=10)
    assert work is not None
    env.advance(8)
    p.renew_work_item_lock(work.lock_token, lock_timeout=10)
    env.advance(8)
    assert fetch_work(p) is None
    p.ack_work_item(work.lock_token, None)


@check(C)
def worker_renew_after_expiry_fails(env: Env) -> None:
    """renew_work_item_lock after expiry raises LockLost: no resurrection."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2))
    work = fetch_work(p, lock_timeout=5)
    assert work is not None
    env.advance(6)
    raises(LockLost, p.renew_work_item_lock, work.lock_token, lock_timeout=30)


@check(C)
def worker_renew_after_ack_fails(env: Env) -> None:
    """renew after the ack raises LockLost: the row is gone."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2))
    work = fetch_work(p)
    assert work is not None
    p.ack_work_item(work.lock_token, None)
    raises(LockLost, p.renew_work_item_lock, work.lock_token, lock_timeout=LOCK)
    raises(LockLost, p.ack_work_item, work.lock_token, None)


@check(C)
def worker_abandon_releases_at_once(env: Env) -> None:
    """An abandoned activity is fetchable at once, with a new token; the old token is dead."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2))
    first = fetch_work(p)
    assert first is not None
    p.abandon_work_item(first.lock_token)
    second = fetch_work(p)
    assert second is not None and second.lock_token != first.lock_token
    raises(LockLost, p.ack_work_item, first.lock_token, None)


@check(C)
def worker_abandon_with_delay_hides_the_item(env: Env) -> None:
    """abandon_work_item(delay_ms) keeps the activity invisible until the delay passes."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2))
    work = fetch_work(p)
    assert work is not None
    p.abandon_work_item(work.lock_token, delay_ms=10_000)
    env.advance(9)
    assert fetch_work(p) is None
    env.advance(2)
    assert fetch_work(p) is not None


@check(C)
def worker_abandon_after_expiry_fails(env: Env) -> None:
    """abandon_work_item with an expired token raises LockLost."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2))
    work = fetch_work(p, lock_timeout=5)
    assert work is not None
    env.advance(6)
    raises(LockLost, p.abandon_work_item, work.lock_token)
