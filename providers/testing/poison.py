"""Poison detection support: delivery attempts counted per message, exactly."""

from __future__ import annotations

from durox.providers.testing.helpers import (
    LOCK,
    activity,
    create,
    fetch,
    fetch_work,
    poke,
    start_instance,
)
from durox.providers.testing.registry import Env, check

C = "poison_message"


@check(C)
def orchestration_attempt_starts_at_one(env: Env) -> None:
    """The first fetch of a message reports attempt_count 1."""
    p = env.provider
    create(p, "i1")
    assert fetch(p).attempt_count == 1


@check(C)
def orchestration_attempt_grows_with_each_abandon(env: Env) -> None:
    """Each abandon and refetch adds one: 1, 2, 3, 4."""
    p = env.provider
    create(p, "i1")
    seen = []
    for _ in range(4):
        item = fetch(p)
        seen.append(item.attempt_count)
        p.abandon_orchestration_item(item.lock_token)
    assert seen == [1, 2, 3, 4]


@check(C)
def orchestration_attempt_grows_on_lock_expiry(env: Env) -> None:
    """A batch whose lock expired counts another attempt when fetched again."""
    p = env.provider
    create(p, "i1")
    assert fetch(p, lock_timeout=5).attempt_count == 1
    env.advance(6)
    assert fetch(p, lock_timeout=5).attempt_count == 2
    env.advance(6)
    assert fetch(p).attempt_count == 3


@check(C)
def worker_attempt_starts_at_one_and_grows(env: Env) -> None:
    """An activity is fetched with attempt 1, then 2 after lock expiry, then 3 after abandon."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2))
    first = fetch_work(p, lock_timeout=5)
    assert first is not None and first.attempt_count == 1
    env.advance(6)
    second = fetch_work(p)
    assert second is not None and second.attempt_count == 2
    p.abandon_work_item(second.lock_token)
    third = fetch_work(p)
    assert third is not None and third.attempt_count == 3


@check(C)
def attempts_are_counted_per_message(env: Env) -> None:
    """A message retried three times does not raise the count of another instance's fresh message."""
    p = env.provider
    create(p, "a")
    for _ in range(3):
        p.abandon_orchestration_item(fetch(p).lock_token)
    item = fetch(p)
    assert (item.instance, item.attempt_count) == ("a", 4)
    create(p, "b")
    fresh = fetch(p)
    assert (fresh.instance, fresh.attempt_count) == ("b", 1)


@check(C)
def batch_reports_the_highest_attempt(env: Env) -> None:
    """A batch with an old message (2nd delivery) and a new one reports attempt_count 2."""
    p = env.provider
    start_instance(p, "i1")
    poke(p, "i1", data="1")
    p.abandon_orchestration_item(fetch(p).lock_token)
    poke(p, "i1", data="2")
    item = fetch(p)
    assert len(item.messages) == 2 and item.attempt_count == 2


@check(C)
def orchestration_ignore_attempt_undoes_the_count(env: Env) -> None:
    """abandon(ignore_attempt=True) takes the fetch's increment back: the refetch reports 1 again."""
    p = env.provider
    create(p, "i1")
    for _ in range(3):
        item = fetch(p)
        assert item.attempt_count == 1
        p.abandon_orchestration_item(item.lock_token, ignore_attempt=True)


@check(C)
def worker_ignore_attempt_undoes_the_count(env: Env) -> None:
    """abandon_work_item(ignore_attempt=True) leaves the count where it was before the fetch."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2))
    first = fetch_work(p)
    assert first is not None
    p.abandon_work_item(first.lock_token)
    second = fetch_work(p)
    assert second is not None and second.attempt_count == 2
    p.abandon_work_item(second.lock_token, ignore_attempt=True)
    third = fetch_work(p)
    assert third is not None and third.attempt_count == 2


@check(C)
def ignore_attempt_never_goes_below_zero(env: Env) -> None:
    """Repeated ignore-attempt abandons never make a fetch report less than 1."""
    p = env.provider
    create(p, "i1")
    p.enqueue_worker(activity("i1", 2))
    for _ in range(3):
        item = fetch(p)
        work = fetch_work(p)
        assert item.attempt_count == 1 and work is not None and work.attempt_count == 1
        p.abandon_orchestration_item(item.lock_token, ignore_attempt=True)
        p.abandon_work_item(work.lock_token, ignore_attempt=True)


@check(C)
def ignore_attempt_keeps_the_abandon_delay(env: Env) -> None:
    """An ignore-attempt abandon with a delay hides the messages for that delay too."""
    p = env.provider
    create(p, "i1")
    p.abandon_orchestration_item(fetch(p).lock_token, delay_ms=5_000, ignore_attempt=True)
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
    env.advance(6)
    assert fetch(p).attempt_count == 1
