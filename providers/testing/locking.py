"""Instance locking: one holder per instance, batches of what was visible, nothing else touched."""

from __future__ import annotations

from durox.core.messages import ActivityResult, ExternalRaised
from durox.providers.testing.helpers import (
    LOCK,
    create,
    fetch,
    make_commit,
    poke,
    result,
    start_instance,
    started_event,
)
from durox.providers.testing.registry import Env, check

C = "instance_locking"


def _data(item: object) -> list[str]:
    return [m.data for m in item.messages if isinstance(m, ExternalRaised)]  # type: ignore[attr-defined]


@check(C)
def empty_queue_fetches_nothing(env: Env) -> None:
    """A fetch on an empty store returns None."""
    assert env.provider.fetch_orchestration_item(lock_timeout=LOCK) is None


@check(C)
def locked_instance_is_not_fetched_again(env: Env) -> None:
    """While an instance is locked a second fetch returns None, even with new messages for it."""
    p = env.provider
    create(p, "i1")
    fetch(p)
    poke(p, "i1")
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None


@check(C)
def lock_tokens_are_unique(env: Env) -> None:
    """Five fetches of five instances hand out five distinct tokens."""
    p = env.provider
    for i in range(5):
        create(p, f"i{i}")
    items = [fetch(p) for _ in range(5)]
    assert sorted(i.instance for i in items) == [f"i{i}" for i in range(5)]
    assert len({i.lock_token for i in items}) == 5


@check(C)
def refetch_after_abandon_gets_a_new_token(env: Env) -> None:
    """The same instance fetched again after abandon carries a different token; the old one is dead."""
    p = env.provider
    create(p, "i1")
    first = fetch(p)
    p.abandon_orchestration_item(first.lock_token)
    second = fetch(p)
    assert second.lock_token != first.lock_token


@check(C)
def batch_takes_every_visible_message_in_order(env: Env) -> None:
    """All visible messages of the instance come in one batch, in enqueue order."""
    p = env.provider
    start_instance(p, "i1")
    for n in range(4):
        poke(p, "i1", data=str(n))
    item = fetch(p)
    assert _data(item) == ["0", "1", "2", "3"]
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None


@check(C)
def messages_arriving_during_lock_wait_for_next_fetch(env: Env) -> None:
    """Completions enqueued while the instance is locked survive the ack and form the next batch, in order."""
    p = env.provider
    start_instance(p, "i1")
    poke(p, "i1", data='"first"')
    item = fetch(p)
    for i in (1, 2, 3):
        p.enqueue_orchestrator(result("i1", i))
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
    p.ack_orchestration_item(item.lock_token, make_commit("i1"))
    nxt = fetch(p)
    assert [m.id for m in nxt.messages if isinstance(m, ActivityResult)] == [1, 2, 3]
    assert len(nxt.messages) == 3


@check(C)
def ack_deletes_only_the_fetched_messages(env: Env) -> None:
    """The ack removes exactly its batch: a message from during the lock is fetched next, alone."""
    p = env.provider
    start_instance(p, "i1")
    poke(p, "i1", data="1")
    item = fetch(p)
    poke(p, "i1", data="2")
    p.ack_orchestration_item(item.lock_token, make_commit("i1"))
    nxt = fetch(p)
    assert _data(nxt) == ["2"]
    p.ack_orchestration_item(nxt.lock_token, make_commit("i1"))
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None


@check(C)
def locking_one_instance_does_not_block_another(env: Env) -> None:
    """With A locked, B is fetched; acking B and refetching it works while A stays locked."""
    p = env.provider
    create(p, "a")
    create(p, "b")
    a = fetch(p)
    b = fetch(p)
    assert (a.instance, b.instance) == ("a", "b")
    p.ack_orchestration_item(b.lock_token, make_commit("b", events=[started_event()]))
    poke(p, "b")
    assert fetch(p).instance == "b"
    poke(p, "a")
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None


@check(C)
def oldest_visible_message_decides_the_instance(env: Env) -> None:
    """Among idle instances, the one whose oldest visible message is oldest is fetched first."""
    p = env.provider
    for name in ("a", "b", "c"):
        start_instance(p, name)
    poke(p, "c")
    poke(p, "a")
    poke(p, "b")
    assert [fetch(p).instance for _ in range(3)] == ["c", "a", "b"]


@check(C)
def locked_instance_does_not_hold_up_the_queue(env: Env) -> None:
    """A locked instance's waiting message, though oldest, does not stop another instance being fetched."""
    p = env.provider
    start_instance(p, "a")
    start_instance(p, "b")
    poke(p, "a")
    fetch(p)  # a is locked
    poke(p, "a")  # older than b's message and not fetchable
    poke(p, "b")
    assert fetch(p).instance == "b"


@check(C)
def abandon_releases_the_same_batch(env: Env) -> None:
    """After abandon the instance is fetchable at once with its messages, plus any that arrived meanwhile."""
    p = env.provider
    start_instance(p, "i1")
    poke(p, "i1", data="1")
    item = fetch(p)
    poke(p, "i1", data="2")
    p.abandon_orchestration_item(item.lock_token)
    again = fetch(p)
    assert _data(again) == ["1", "2"]


@check(C)
def delayed_message_is_left_out_of_the_batch(env: Env) -> None:
    """A message not yet visible stays out of the batch and the ack keeps it for later."""
    p = env.provider
    start_instance(p, "i1")
    poke(p, "i1", data='"later"', delay_ms=10_000)
    poke(p, "i1", data='"now"')
    item = fetch(p)
    assert _data(item) == ['"now"']
    p.ack_orchestration_item(item.lock_token, make_commit("i1"))
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
    env.advance(11)
    assert _data(fetch(p)) == ['"later"']
