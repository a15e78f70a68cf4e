"""Atomicity: an ack writes everything or nothing, and a token acks once."""

from __future__ import annotations

import threading

from durox.core import history
from durox.core.commit import OutgoingMessage
from durox.core.errors import LockLost, ProviderError
from durox.core.messages import ExternalRaised, TimerDue
from durox.providers.testing.helpers import (
    LOCK,
    activity,
    create,
    drain_work,
    fetch,
    make_commit,
    poke,
    raises,
    start_instance,
    started_event,
)
from durox.providers.testing.registry import Env, check

C = "atomicity"


def _kv_set(eid: int, key: str, value: str) -> history.KeyValueSet:
    return history.KeyValueSet(event_id=eid, timestamp_ms=0, key=key, value=value, updated_at_ms=1)


@check(C)
def duplicate_event_id_rejects_the_whole_commit(env: Env) -> None:
    """An ack reusing a stored event id raises ProviderError (not LockLost) and writes none of its effects."""
    p = env.provider
    start_instance(p, "i1")
    poke(p, "i1")
    item = fetch(p)
    bad = make_commit(
        "i1",
        events=[history.TimerCreated(event_id=2, timestamp_ms=0, fire_at_ms=5), started_event(1)],
        worker_items=[activity("i1", 2)],
        orchestrator_items=[
            OutgoingMessage(message=ExternalRaised(instance="i1", name="x", data="1"))
        ],
        status="Completed",
        output='"x"',
        custom_status="cs",
        custom_status_changed=True,
        kv_ops=[_kv_set(3, "k", '"v"')],
    )
    exc = raises(ProviderError, p.ack_orchestration_item, item.lock_token, bad)
    assert not isinstance(exc, LockLost), "a duplicate event id is not a lost lock"
    assert p.read_history("i1") == [started_event(1)]
    status = p.get_instance_status("i1")
    assert status is not None and status.status == "Running" and status.custom_status_version == 0
    assert p.get_kv_value("i1", "k") is None
    assert drain_work(p) == []


@check(C)
def rejected_ack_keeps_lock_and_messages(env: Env) -> None:
    """After a rejected ack the lock is still held and, once it expires, the same messages come back."""
    p = env.provider
    start_instance(p, "i1")
    poke(p, "i1", data='"again"')
    item = fetch(p)
    raises(
        ProviderError,
        p.ack_orchestration_item,
        item.lock_token,
        make_commit("i1", events=[started_event(1)]),
    )
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None, (
        "the lock must survive a rejected ack"
    )
    env.advance(LOCK + 1)
    again = fetch(p)
    assert again.instance == "i1" and again.messages == item.messages


@check(C)
def duplicate_ids_inside_one_commit_are_rejected(env: Env) -> None:
    """Two new events with the same id in one commit reject the commit; history is unchanged."""
    p = env.provider
    start_instance(p, "i1")
    poke(p, "i1")
    item = fetch(p)
    twins = [
        history.TimerCreated(event_id=2, timestamp_ms=0, fire_at_ms=1),
        history.TimerCreated(event_id=2, timestamp_ms=0, fire_at_ms=2),
    ]
    raises(
        ProviderError, p.ack_orchestration_item, item.lock_token, make_commit("i1", events=twins)
    )
    assert p.read_history("i1") == [started_event(1)]


@check(C)
def multi_operation_ack_writes_everything(env: Env) -> None:
    """One ack with 5 events, 3 activities and 2 messages commits all of them, in order."""
    p = env.provider
    create(p, "i1")
    item = fetch(p)
    events: list[history.Event] = [started_event(1)]
    events += [
        history.ActivityScheduled(event_id=i, timestamp_ms=0, name="Act", input='"x"')
        for i in (2, 3, 4)
    ]
    events.append(history.TimerCreated(event_id=5, timestamp_ms=0, fire_at_ms=0))
    commit = make_commit(
        "i1",
        events=events,
        worker_items=[activity("i1", i) for i in (2, 3, 4)],
        orchestrator_items=[
            OutgoingMessage(message=TimerDue(instance="i1", execution_id=1, id=5, fire_at_ms=0)),
            OutgoingMessage(message=ExternalRaised(instance="i1", name="e", data='"d"')),
        ],
    )
    p.ack_orchestration_item(item.lock_token, commit)
    assert p.read_history("i1") == events
    assert [a.id for a in drain_work(p)] == [2, 3, 4]
    nxt = fetch(p)
    assert nxt.messages == tuple(m.message for m in commit.orchestrator_items)


@check(C)
def invalid_token_ack_leaves_the_real_lock_held(env: Env) -> None:
    """An ack with a bogus token raises LockLost; the holder's lock and its ack are unaffected."""
    p = env.provider
    create(p, "i1")
    item = fetch(p)
    raises(
        LockLost,
        p.ack_orchestration_item,
        "not-a-token",
        make_commit("i1", events=[started_event()]),
    )
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
    assert p.read_history("i1") == []
    p.ack_orchestration_item(item.lock_token, make_commit("i1", events=[started_event()]))
    assert p.read_history("i1") == [started_event()]


@check(C)
def second_ack_with_the_same_token_fails(env: Env) -> None:
    """A token acks once: the second ack raises LockLost and appends nothing."""
    p = env.provider
    create(p, "i1")
    item = fetch(p)
    p.ack_orchestration_item(item.lock_token, make_commit("i1", events=[started_event()]))
    again = make_commit(
        "i1",
        events=[history.TimerCreated(event_id=2, timestamp_ms=0, fire_at_ms=1)],
        worker_items=[activity("i1", 2)],
    )
    raises(LockLost, p.ack_orchestration_item, item.lock_token, again)
    assert p.read_history("i1") == [started_event()]
    assert drain_work(p) == []


@check(C)
def concurrent_acks_with_one_token_commit_once(env: Env) -> None:
    """Eight threads ack one token at once: exactly one succeeds, the rest get LockLost, history has one copy."""
    p = env.provider
    create(p, "i1")
    item = fetch(p)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    guard = threading.Lock()

    def ack() -> None:
        barrier.wait()
        try:
            p.ack_orchestration_item(
                item.lock_token,
                make_commit("i1", events=[started_event()], worker_items=[activity("i1", 2)]),
            )
            outcome = "ok"
        except LockLost:
            outcome = "lost"
        except ProviderError as exc:  # a duplicate-id rejection is also a refusal
            outcome = f"refused: {exc}"
        with guard:
            outcomes.append(outcome)

    threads = [threading.Thread(target=ack) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 1, outcomes
    assert p.read_history("i1") == [started_event()]
    assert len(drain_work(p)) == 1


@check(C)
def ack_after_expiry_writes_nothing(env: Env) -> None:
    """An ack whose lock expired raises LockLost; none of its events, activities or status are written."""
    p = env.provider
    create(p, "i1")
    item = fetch(p, lock_timeout=5)
    env.advance(6)
    raises(
        LockLost,
        p.ack_orchestration_item,
        item.lock_token,
        make_commit(
            "i1",
            events=[started_event()],
            worker_items=[activity("i1", 2)],
            status="Completed",
            output="1",
        ),
    )
    assert p.read_history("i1") == []
    assert p.get_instance_status("i1").status == "Running"  # type: ignore[union-attr]
    assert drain_work(p) == []
