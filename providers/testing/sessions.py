"""Sessions: activity affinity with one owner at a time, renewed while active, reclaimable when lapsed."""

from __future__ import annotations

import threading

from durox.core.items import ActivityItem
from durox.providers.base import SessionClaim
from durox.providers.testing.helpers import activity, fetch_work, result, start_instance
from durox.providers.testing.registry import Env, check

C = "sessions"

SESSION_LOCK = 20.0


def _claim(owner: str, lock_timeout: float = SESSION_LOCK) -> SessionClaim:
    return SessionClaim(owner_id=owner, lock_timeout=lock_timeout)


def _take(
    env: Env, owner: str, *, lock_timeout: float = 30.0, session_lock: float = SESSION_LOCK
) -> ActivityItem | None:
    return fetch_work(env.provider, lock_timeout=lock_timeout, session=_claim(owner, session_lock))


def _ids(*items: ActivityItem | None) -> list[int | None]:
    return [i.message.id if i is not None else None for i in items]


def _finish(env: Env, item: ActivityItem | None) -> None:
    assert item is not None
    env.provider.ack_work_item(item.lock_token, None)


@check(C)
def plain_items_go_to_any_worker(env: Env) -> None:
    """Activities without a session are fetched with or without a session claim."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2))
    p.enqueue_worker(activity("i1", 3))
    assert _ids(fetch_work(p), _take(env, "w1")) == [2, 3]


@check(C)
def no_claim_skips_session_items(env: Env) -> None:
    """Without a SessionClaim only session-free activities are fetched; session items wait."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    p.enqueue_worker(activity("i1", 3))
    assert _ids(fetch_work(p), fetch_work(p)) == [3, None]
    assert _ids(_take(env, "w1")) == [2]


@check(C)
def first_fetch_claims_the_session(env: Env) -> None:
    """Fetching a session item with no owner claims the session: another owner cannot take its next item."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    p.enqueue_worker(activity("i1", 3, session_id="s1"))
    assert _ids(_take(env, "w1")) == [2]
    assert _take(env, "w2") is None
    assert _ids(_take(env, "w1")) == [3]


@check(C)
def owner_keeps_getting_its_session_items(env: Env) -> None:
    """Items added later to an owned session go to the owner, even after its earlier items were acked."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    _finish(env, _take(env, "w1"))
    p.enqueue_worker(activity("i1", 3, session_id="s1"))
    assert _take(env, "w2") is None
    assert _ids(_take(env, "w1")) == [3]


@check(C)
def different_sessions_go_to_different_workers(env: Env) -> None:
    """Two sessions can be owned by two workers at once."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    p.enqueue_worker(activity("i1", 3, session_id="s2"))
    p.enqueue_worker(activity("i1", 4, session_id="s1"))
    assert _ids(_take(env, "w1"), _take(env, "w2"), _take(env, "w2"), _take(env, "w1")) == [
        2,
        3,
        None,
        4,
    ]


@check(C)
def blocked_worker_gets_other_work(env: Env) -> None:
    """A worker shut out of a session is served the next plain activity instead."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    p.enqueue_worker(activity("i1", 3, session_id="s1"))
    p.enqueue_worker(activity("i1", 4))
    assert _ids(_take(env, "w1"), _take(env, "w2")) == [2, 4]


@check(C)
def session_items_come_in_order(env: Env) -> None:
    """One owner receives a session's activities in enqueue order."""
    p = env.provider
    for i in range(2, 7):
        p.enqueue_worker(activity("i1", i, session_id="s1"))
    assert _ids(*(_take(env, "w1") for _ in range(5))) == [2, 3, 4, 5, 6]


@check(C)
def expired_session_is_taken_over(env: Env) -> None:
    """Once the session lock lapses another owner may claim it, and then the first owner is shut out."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    p.enqueue_worker(activity("i1", 3, session_id="s1"))
    _finish(env, _take(env, "w1"))
    env.advance(SESSION_LOCK + 1)
    assert _ids(_take(env, "w2")) == [3]
    p.enqueue_worker(activity("i1", 4, session_id="s1"))
    assert _take(env, "w1") is None


@check(C)
def original_owner_can_reclaim_expired_session(env: Env) -> None:
    """After the session lapses, the former owner may claim it again."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    _finish(env, _take(env, "w1"))
    env.advance(SESSION_LOCK + 1)
    p.enqueue_worker(activity("i1", 3, session_id="s1"))
    assert _ids(_take(env, "w1")) == [3]
    assert _take(env, "w2") is None


@check(C)
def fetching_refreshes_the_session_lock(env: Env) -> None:
    """Each fetch by the owner restarts the session lock, so steady work keeps the session."""
    p = env.provider
    for i in (2, 3, 4):
        p.enqueue_worker(activity("i1", i, session_id="s1"))
    _finish(env, _take(env, "w1"))
    env.advance(SESSION_LOCK - 5)
    _finish(env, _take(env, "w1"))
    env.advance(SESSION_LOCK - 5)  # past the first claim's expiry, within the second's
    assert _take(env, "w2") is None
    assert _ids(_take(env, "w1")) == [4]


@check(C)
def renew_extends_active_sessions(env: Env) -> None:
    """renew_session_locks extends a recently active session past its original expiry and counts it."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    p.enqueue_worker(activity("i1", 3, session_id="s1"))
    _finish(env, _take(env, "w1"))
    env.advance(SESSION_LOCK - 5)
    assert p.renew_session_locks(["w1"], lock_timeout=SESSION_LOCK, idle_timeout=60) == 1
    env.advance(10)  # the original claim has expired
    assert _take(env, "w2") is None
    assert _ids(_take(env, "w1")) == [3]


@check(C)
def renew_skips_idle_sessions(env: Env) -> None:
    """A session with no activity within idle_timeout is not renewed, lapses, and can be taken over."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    _finish(env, _take(env, "w1", session_lock=60))
    env.advance(20)
    assert p.renew_session_locks(["w1"], lock_timeout=60, idle_timeout=10) == 0
    env.advance(41)
    p.enqueue_worker(activity("i1", 3, session_id="s1"))
    assert _ids(_take(env, "w2")) == [3]


@check(C)
def renew_counts_only_the_named_owners(env: Env) -> None:
    """renew_session_locks with no sessions, or other owners' ids, returns 0; it counts each owned session."""
    p = env.provider
    assert p.renew_session_locks(["w1"], lock_timeout=SESSION_LOCK, idle_timeout=60) == 0
    for i, session in ((2, "s1"), (3, "s2"), (4, "s3")):
        p.enqueue_worker(activity("i1", i, session_id=session))
    _take(env, "w1")
    _take(env, "w1")
    _take(env, "w2")
    assert p.renew_session_locks(["nobody"], lock_timeout=SESSION_LOCK, idle_timeout=60) == 0
    assert p.renew_session_locks(["w1"], lock_timeout=SESSION_LOCK, idle_timeout=60) == 2
    assert p.renew_session_locks(["w1", "w2"], lock_timeout=SESSION_LOCK, idle_timeout=60) == 3


@check(C)
def renew_after_expiry_does_not_resurrect(env: Env) -> None:
    """An expired session is not renewed (returns 0), so another owner may claim it."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    _finish(env, _take(env, "w1"))
    env.advance(SESSION_LOCK + 1)
    assert p.renew_session_locks(["w1"], lock_timeout=SESSION_LOCK, idle_timeout=600) == 0
    p.enqueue_worker(activity("i1", 3, session_id="s1"))
    assert _ids(_take(env, "w2")) == [3]


@check(C)
def ack_counts_as_session_activity(env: Env) -> None:
    """An ack refreshes the session's last activity: a later renew with a tight idle timeout still extends it."""
    p = env.provider
    start_instance(p, "i1", worker_items=[activity("i1", 2, session_id="s1")])
    work = _take(env, "w1", lock_timeout=60, session_lock=60)
    assert work is not None
    env.advance(30)
    p.ack_work_item(work.lock_token, result("i1", 2))
    env.advance(5)
    assert p.renew_session_locks(["w1"], lock_timeout=60, idle_timeout=10) == 1


@check(C)
def renewing_an_activity_counts_as_session_activity(env: Env) -> None:
    """renew_work_item_lock refreshes the session's last activity as well."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    work = _take(env, "w1", lock_timeout=60, session_lock=60)
    assert work is not None
    env.advance(30)
    p.renew_work_item_lock(work.lock_token, lock_timeout=30)
    env.advance(5)
    assert p.renew_session_locks(["w1"], lock_timeout=60, idle_timeout=10) == 1


@check(C)
def cleanup_removes_expired_empty_sessions(env: Env) -> None:
    """cleanup_orphaned_sessions deletes a lapsed session with nothing queued, and only then."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    _finish(env, _take(env, "w1"))
    assert p.cleanup_orphaned_sessions() == 0, "a live session is kept"
    env.advance(SESSION_LOCK + 1)
    assert p.cleanup_orphaned_sessions() == 1
    assert p.cleanup_orphaned_sessions() == 0


@check(C)
def cleanup_keeps_sessions_with_queued_items(env: Env) -> None:
    """A lapsed session that still has queued activities is kept."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    p.enqueue_worker(activity("i1", 3, session_id="s1"))
    _finish(env, _take(env, "w1"))
    env.advance(SESSION_LOCK + 1)
    assert p.cleanup_orphaned_sessions() == 0


@check(C)
def session_is_claimable_after_cleanup(env: Env) -> None:
    """After cleanup a new activity of that session is claimed afresh by whoever fetches first."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    _finish(env, _take(env, "w1"))
    env.advance(SESSION_LOCK + 1)
    assert p.cleanup_orphaned_sessions() == 1
    p.enqueue_worker(activity("i1", 3, session_id="s1"))
    p.enqueue_worker(activity("i1", 4, session_id="s1"))
    assert _ids(_take(env, "w2")) == [3]
    assert _take(env, "w1") is None


@check(C)
def activity_lock_expiry_keeps_affinity(env: Env) -> None:
    """If the activity lock lapses but the session lock holds, only the owner gets the redelivery."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    first = _take(env, "w1", lock_timeout=5, session_lock=60)
    assert first is not None
    env.advance(6)
    assert _take(env, "w2") is None
    again = _take(env, "w1")
    assert again is not None and again.message.id == 2 and again.attempt_count == 2


@check(C)
def lapsed_session_lock_does_not_fence_activity_ack(env: Env) -> None:
    """The session routes work; it does not guard acks: an activity lock still held can be acked."""
    p = env.provider
    start_instance(p, "i1")
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    work = _take(env, "w1", lock_timeout=60, session_lock=5)
    assert work is not None
    env.advance(6)
    p.ack_work_item(work.lock_token, result("i1", 2))


@check(C)
def both_locks_lapsed_lets_another_owner_in(env: Env) -> None:
    """When activity and session locks both lapse, a different owner gets the redelivery and the session."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    assert _take(env, "w1", lock_timeout=5, session_lock=5) is not None
    env.advance(6)
    again = _take(env, "w2")
    assert again is not None and again.message.id == 2
    p.enqueue_worker(activity("i1", 3, session_id="s1"))
    assert _take(env, "w1") is None


@check(C)
def abandoned_session_item_returns_to_owner(env: Env) -> None:
    """An abandoned session activity is redelivered to its owner with a higher attempt, or the same with ignore_attempt."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, session_id="s1"))
    first = _take(env, "w1")
    assert first is not None
    p.abandon_work_item(first.lock_token)
    assert _take(env, "w2") is None
    second = _take(env, "w1")
    assert second is not None and second.attempt_count == 2
    p.abandon_work_item(second.lock_token, ignore_attempt=True)
    third = _take(env, "w1")
    assert third is not None and third.attempt_count == 2


@check(C)
def concurrent_claims_have_one_winner(env: Env) -> None:
    """Eight owners racing for one session's items: every item fetched went to a single owner."""
    p = env.provider
    for i in range(2, 6):
        p.enqueue_worker(activity("i1", i, session_id="s1"))
    barrier = threading.Barrier(8)
    got: list[tuple[str, int]] = []
    guard = threading.Lock()

    def worker(owner: str) -> None:
        barrier.wait()
        for _ in range(2):
            item = _take(env, owner)
            if item is not None:
                with guard:
                    got.append((owner, item.message.id))

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got, "nobody fetched the session's items"
    owners = {owner for owner, _ in got}
    assert len(owners) == 1, f"one session, several owners: {got}"
    assert sorted(i for _, i in got) == sorted({i for _, i in got}), "an item was handed out twice"
