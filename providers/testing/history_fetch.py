"""Fetching only missing history (``known_history``) and the next-visible hint for idle dispatchers."""

from __future__ import annotations

from durox.core import history
from durox.providers.testing.helpers import (
    LOCK,
    continue_as_new,
    create,
    fetch,
    make_commit,
    poke,
    start_instance,
    started_event,
    turn,
)
from durox.providers.testing.registry import Env, check

C = "history_fetch"


def _three_events(env: Env) -> list[history.Event]:
    p = env.provider
    start_instance(p, "i1")
    turn(
        p,
        "i1",
        events=[
            history.TimerCreated(event_id=2, timestamp_ms=0, fire_at_ms=1),
            history.TimerCreated(event_id=3, timestamp_ms=0, fire_at_ms=2),
        ],
    )
    return p.read_history("i1")


@check(C)
def known_length_skips_the_history(env: Env) -> None:
    """When the caller knows all stored events, history is empty and offset = history_len = the length."""
    p = env.provider
    events = _three_events(env)
    poke(p, "i1")
    item = fetch(p, known_history=lambda instance, execution: 3)
    assert (item.history, item.history_offset, item.history_len) == ((), 3, 3)
    assert len(events) == 3


@check(C)
def stale_knowledge_gets_the_full_history(env: Env) -> None:
    """A caller that knows fewer (or more) events than stored gets the whole history from offset 0."""
    p = env.provider
    events = _three_events(env)
    for known in (0, 2, 4):
        poke(p, "i1")
        item = fetch(p, known_history=lambda instance, execution, n=known: n)
        assert (item.history, item.history_offset, item.history_len) == (tuple(events), 0, 3)
        p.ack_orchestration_item(item.lock_token, make_commit("i1"))


@check(C)
def no_callback_gets_the_full_history(env: Env) -> None:
    """Without known_history the whole history comes back."""
    p = env.provider
    events = _three_events(env)
    poke(p, "i1")
    item = fetch(p)
    assert (item.history, item.history_offset, item.history_len) == (tuple(events), 0, 3)


@check(C)
def callback_is_asked_about_the_fetched_execution(env: Env) -> None:
    """known_history is called with the fetched instance and its current execution id."""
    p = env.provider
    start_instance(p, "i1")
    continue_as_new(p, "i1")
    asked: list[tuple[str, int]] = []

    def known(instance: str, execution_id: int) -> int:
        asked.append((instance, execution_id))
        return 1

    poke(p, "i1")
    item = fetch(p, known_history=known)
    assert ("i1", 2) in asked and set(asked) == {("i1", 2)}
    assert (item.history, item.history_offset, item.history_len) == ((), 1, 1)


@check(C)
def new_instance_has_zero_length(env: Env) -> None:
    """A brand-new instance reports history_len 0 whatever the caller knows."""
    p = env.provider
    create(p, "i1")
    item = fetch(p, known_history=lambda instance, execution: 0)
    assert (item.history, item.history_len) == ((), 0)


@check(C)
def tail_length_counts_the_new_turns(env: Env) -> None:
    """After another turn the stored length grows, so the old knowledge no longer matches."""
    p = env.provider
    start_instance(p, "i1")
    turn(p, "i1", events=[history.TimerCreated(event_id=2, timestamp_ms=0, fire_at_ms=1)])
    poke(p, "i1")
    item = fetch(p, known_history=lambda instance, execution: 1)
    assert item.history_offset == 0 and item.history == (
        started_event(),
        history.TimerCreated(event_id=2, timestamp_ms=0, fire_at_ms=1),
    )


@check(C)
def next_visible_is_none_when_idle(env: Env) -> None:
    """With no orchestrator messages next_orchestrator_visible_ms is None."""
    p = env.provider
    assert p.next_orchestrator_visible_ms() is None
    start_instance(p, "i1")
    assert p.next_orchestrator_visible_ms() is None


@check(C)
def next_visible_reports_a_ready_message(env: Env) -> None:
    """A message visible now is reported at or before the current time."""
    p = env.provider
    create(p, "i1")
    nxt = p.next_orchestrator_visible_ms()
    assert nxt is not None and nxt <= p.now_ms()


@check(C)
def next_visible_reports_the_earliest_delay(env: Env) -> None:
    """Of several delayed messages the earliest due time is reported, measured from the provider's clock."""
    p = env.provider
    start_instance(p, "i1")
    start_instance(p, "i2")
    before = p.now_ms()
    poke(p, "i1", delay_ms=50_000)
    poke(p, "i2", delay_ms=20_000)
    poke(p, "i1", delay_ms=90_000)
    after = p.now_ms()
    nxt = p.next_orchestrator_visible_ms()
    assert nxt is not None and before + 20_000 <= nxt <= after + 20_000


@check(C)
def next_visible_ignores_locked_batches(env: Env) -> None:
    """A batch held under a live lock is not reported; once acked nothing is left."""
    p = env.provider
    create(p, "i1")
    item = fetch(p)
    assert p.next_orchestrator_visible_ms() is None
    p.ack_orchestration_item(item.lock_token, make_commit("i1", events=[started_event()]))
    assert p.next_orchestrator_visible_ms() is None
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
