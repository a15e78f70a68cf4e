"""The shared input checks of providers/_validation.py, and that every provider applies them alike."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from durox.core import history
from durox.core.commit import ActivityRef, OutgoingMessage
from durox.core.errors import InvalidArgument, PayloadError, ProviderError
from durox.core.limits import MAX_CUSTOM_STATUS_BYTES, MAX_KV_VALUE_BYTES
from durox.core.messages import ActivityResult, ContinueAsNew, TimerDue
from durox.core.tags import TagFilter
from durox.providers import _validation as v
from durox.providers.base import Provider, SessionClaim
from durox.providers.testing import ManualClock, ProviderFactory
from durox.providers.testing.helpers import (
    LOCK,
    activity,
    create,
    fetch,
    make_commit,
    started_event,
)


def _kv_set(key: Any, value: Any) -> history.KeyValueSet:
    return history.KeyValueSet(event_id=2, timestamp_ms=0, key=key, value=value, updated_at_ms=0)


BAD_COMMITS: dict[str, dict[str, Any]] = {
    "execution_id_zero": {"execution_id": 0},
    "empty_orchestration_version": {"orchestration_version": ""},
    "unknown_status": {"status": "Done"},
    "output_not_text": {"status": "Completed", "output": 42},
    "custom_status_too_large": {
        "custom_status_changed": True,
        "custom_status": "x" * (MAX_CUSTOM_STATUS_BYTES + 1),
    },
    "event_id_zero": {"new_events": (started_event(0),)},
    "not_an_event": {"new_events": ("OrchestrationStarted",)},
    "kv_key_with_nul": {"kv_ops": (_kv_set("a\x00b", "1"),)},
    "kv_value_too_large": {"kv_ops": (_kv_set("k", "x" * (MAX_KV_VALUE_BYTES + 1)),)},
    "worker_item_bad_execution_id": {"worker_items": (activity("i1", 2, execution_id=0),)},
    "outgoing_negative_delay": {
        "orchestrator_items": (
            OutgoingMessage(
                message=TimerDue(instance="i1", execution_id=1, id=2, fire_at_ms=5), delay_ms=-1
            ),
        )
    },
    "outgoing_not_wrapped": {
        "orchestrator_items": (TimerDue(instance="i1", execution_id=1, id=2, fire_at_ms=5),)
    },
    "cancelled_ref_not_a_ref": {"cancelled_activities": (("i1", 1, 2),)},
}


@pytest.mark.parametrize("label", sorted(BAD_COMMITS))
def test_check_commit_rejects(label: str) -> None:
    """Each malformed part of a commit is an InvalidArgument or PayloadError naming it."""
    commit = attrs.evolve(make_commit("i1", events=[started_event(1)]), **BAD_COMMITS[label])
    with pytest.raises((InvalidArgument, PayloadError)):
        v.check_commit(commit)


def test_check_commit_accepts_a_full_commit() -> None:
    """A well-formed commit with every kind of content comes back unchanged."""
    commit = make_commit(
        "i1",
        events=[started_event(1)],
        worker_items=[activity("i1", 2)],
        orchestrator_items=[
            OutgoingMessage(
                message=TimerDue(instance="i1", execution_id=1, id=3, fire_at_ms=5), delay_ms=5
            )
        ],
    )
    commit = attrs.evolve(
        commit,
        kv_ops=(_kv_set("k", '"v"'),),
        cancelled_activities=(ActivityRef(instance="i1", execution_id=1, id=2),),
        custom_status_changed=True,
        custom_status="busy",
    )
    assert v.check_commit(commit) is commit


def test_repeated_event_id_in_one_commit_is_a_provider_error() -> None:
    """Two new events with one id: the whole commit is refused before anything is written."""
    commit = make_commit("i1", events=[started_event(1), started_event(1)])
    with pytest.raises(ProviderError, match="repeats event id 1"):
        v.check_commit(commit)


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, True, "5", None])
def test_check_timeout_rejects(value: object) -> None:
    """Timeouts are positive, finite numbers of seconds (not bools)."""
    with pytest.raises(InvalidArgument, match="lock_timeout"):
        v.check_timeout(value)


def test_check_timeout_rounds_to_whole_milliseconds() -> None:
    """Seconds become milliseconds, rounded, never below 1."""
    assert v.check_timeout(0.29) == 290
    assert v.check_timeout(1e-9) == 1
    assert v.check_timeout(2) == 2000


@pytest.mark.parametrize("value", [-1, 1.5, True, "0"])
def test_check_delay_rejects(value: object) -> None:
    """Delays are whole numbers of milliseconds >= 0."""
    with pytest.raises(InvalidArgument, match="delay_ms"):
        v.check_delay(value)


@pytest.mark.parametrize("token", ["", None, 7])
def test_check_lock_token_rejects(token: object) -> None:
    """A lock token is a non-empty string."""
    with pytest.raises(InvalidArgument, match="lock token"):
        v.check_lock_token(token)


def test_new_lock_tokens_are_fresh_hex() -> None:
    """Tokens are 32 hex characters and do not repeat."""
    tokens = {v.new_lock_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(t) == 32 and int(t, 16) >= 0 for t in tokens)


def test_check_work_fetch() -> None:
    """Lock and session timeouts come back in ms; bad filters and sessions are refused."""
    assert v.check_work_fetch(1.0, TagFilter.default_only(), None) == (1000, None)
    claim = SessionClaim(owner_id="w1", lock_timeout=2.0)
    assert v.check_work_fetch(1.0, TagFilter.default_only(), claim) == (1000, 2000)
    with pytest.raises(InvalidArgument, match="TagFilter"):
        v.check_work_fetch(1.0, "default", None)
    with pytest.raises(InvalidArgument, match="SessionClaim"):
        v.check_work_fetch(1.0, TagFilter.default_only(), "w1")
    with pytest.raises(InvalidArgument, match="session owner id"):
        v.check_work_fetch(1.0, TagFilter.default_only(), SessionClaim(owner_id="", lock_timeout=1))


def test_check_owner_ids() -> None:
    """Owner ids come as any iterable of valid ids, never as one string."""
    assert v.check_owner_ids({"a"}) == ["a"]
    with pytest.raises(InvalidArgument, match="not one string"):
        v.check_owner_ids("abc")
    with pytest.raises(InvalidArgument, match="session owner id"):
        v.check_owner_ids(["ok", ""])


@pytest.mark.parametrize(
    ("keep_last", "before"), [(-1, None), (True, None), (None, 1.5), (None, "0")]
)
def test_check_prune_options_rejects(keep_last: object, before: object) -> None:
    """keep_last is a whole number >= 0, completed_before_ms epoch ms; each may be None."""
    with pytest.raises(InvalidArgument):
        v.check_prune_options(keep_last, before)


def test_message_checks_are_strict() -> None:
    """Execution ids >= 1, carry-forward items, custom status size and error records are checked."""
    with pytest.raises(InvalidArgument, match="execution id"):
        v.check_orchestrator_message(TimerDue(instance="i", execution_id=0, id=1, fire_at_ms=0))
    with pytest.raises(InvalidArgument, match="fire_at_ms"):
        v.check_orchestrator_message(TimerDue(instance="i", execution_id=1, id=1, fire_at_ms=-1))
    with pytest.raises(InvalidArgument, match="carry_forward"):
        v.check_orchestrator_message(
            ContinueAsNew(instance="i", execution_id=2, name="O", input="1", carry_forward=("x",))  # type: ignore[arg-type]
        )
    with pytest.raises(InvalidArgument, match="ErrorDetails"):
        v.check_orchestrator_message(
            ActivityResult(instance="i", execution_id=1, id=1, error="boom")  # type: ignore[arg-type]
        )
    with pytest.raises(PayloadError, match="result"):
        v.check_activity_result(
            ActivityResult(instance="i", execution_id=1, id=1, result="x" * 20),
            max_payload_bytes=10,
        )


def test_read_status_and_error() -> None:
    """No row reads as Running; a damaged status is a ProviderError; an unreadable error still reports one."""
    assert v.read_status(None) == "Running"
    with pytest.raises(ProviderError, match="Done"):
        v.read_status("Done")
    error = v.read_error("not json")
    assert error is not None and error.kind == "unreadable_error"
    status = v.instance_status(
        "i",
        stored_status="Completed",
        execution_id=1,
        orchestration_name="O",
        orchestration_version="1",
        output='"r"',
        custom_status=None,
        custom_status_version=0,
    )
    assert (status.status, status.output, status.error) == ("Completed", '"r"', None)


# -- every provider applies the shared checks -----------------------------------------------


@pytest.fixture(params=["memory_factory", "sqlite_memory_factory", "postgres_factory"])
def provider(request: pytest.FixtureRequest) -> Iterator[Provider]:
    factory: ProviderFactory = request.getfixturevalue(request.param)
    p = factory.create(ManualClock())
    try:
        yield p
    finally:
        factory.destroy(p)


@pytest.mark.parametrize("label", sorted(BAD_COMMITS))
def test_every_provider_refuses_a_bad_commit_and_keeps_its_lock(
    provider: Provider, label: str
) -> None:
    """A malformed commit writes nothing: the lock still holds and a good ack then succeeds."""
    create(provider, "i1")
    item = fetch(provider)
    bad = attrs.evolve(make_commit("i1", events=[started_event(1)]), **BAD_COMMITS[label])
    with pytest.raises((InvalidArgument, PayloadError)):
        provider.ack_orchestration_item(item.lock_token, bad)
    assert provider.read_history("i1") == []
    provider.ack_orchestration_item(item.lock_token, make_commit("i1", events=[started_event(1)]))
    assert [type(e) for e in provider.read_history("i1")] == [history.OrchestrationStarted]


_BAD_CALLS: dict[str, Callable[[Provider], Any]] = {
    "renew_session_locks_one_string": lambda p: p.renew_session_locks(
        "w1", lock_timeout=LOCK, idle_timeout=LOCK
    ),
    "ack_work_item_empty_token": lambda p: p.ack_work_item("", None),
    "ack_work_item_bad_result": lambda p: p.ack_work_item(
        "tok", ActivityResult(instance="i1", execution_id=0, id=1, result="1")
    ),
    "fetch_work_item_session_not_a_claim": lambda p: p.fetch_work_item(
        lock_timeout=LOCK,
        tag_filter=TagFilter.default_only(),
        session="w1",  # type: ignore[arg-type]
    ),
    "read_history_execution_zero": lambda p: p.read_history("i1", 0),
    "get_kv_value_nul_key": lambda p: p.get_kv_value("i1", "a\x00b"),
    "get_instance_status_empty_id": lambda p: p.get_instance_status(""),
}


@pytest.mark.parametrize("label", sorted(_BAD_CALLS))
def test_every_provider_refuses_bad_arguments(provider: Provider, label: str) -> None:
    """Calls the memory provider used to accept unchecked are now refused everywhere."""
    with pytest.raises(InvalidArgument):
        _BAD_CALLS[label](provider)
