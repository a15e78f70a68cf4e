"""Error handling: bad input and bad tokens raise typed errors and write nothing; closed means closed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from durox.core.errors import InvalidArgument, LockLost, PayloadError, ProviderClosed, ProviderError
from durox.core.messages import ExternalRaised, QueueMessage, StartOrchestration
from durox.core.tags import TagFilter
from durox.providers.testing.helpers import (
    LOCK,
    ORCH,
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

C = "error_handling"

BAD_IDS: dict[str, Any] = {
    "empty": "",
    "too_long_257_chars": "x" * 257,
    "nul_character": "a\x00b",
    "newline": "a\nb",
    "not_a_string": 42,
}


def _register_bad_id_checks(label: str, bad: Any) -> None:
    def create_rejects(env: Env) -> None:
        p = env.provider
        raises(
            InvalidArgument,
            p.create_instance,
            StartOrchestration(instance=bad, name=ORCH, input="1"),
        )
        assert p.fetch_orchestration_item(lock_timeout=LOCK) is None, (
            "a rejected create must enqueue nothing"
        )

    create_rejects.__name__ = f"create_rejects_instance_id_{label}"
    create_rejects.__doc__ = f"create_instance with an instance id that is {label.replace('_', ' ')} raises InvalidArgument and writes nothing."
    check(C)(create_rejects)

    def enqueue_rejects(env: Env) -> None:
        p = env.provider
        raises(
            InvalidArgument,
            p.enqueue_orchestrator,
            ExternalRaised(instance=bad, name="e", data="1"),
        )
        raises(InvalidArgument, p.enqueue_worker, activity(bad, 1))
        assert p.fetch_orchestration_item(lock_timeout=LOCK) is None
        assert drain_work(p, TagFilter.any()) == []

    enqueue_rejects.__name__ = f"enqueue_rejects_instance_id_{label}"
    enqueue_rejects.__doc__ = f"Both enqueues reject an instance id that is {label.replace('_', ' ')} with InvalidArgument."
    check(C)(enqueue_rejects)


for _label, _bad in BAD_IDS.items():
    _register_bad_id_checks(_label, _bad)


@check(C)
def id_of_256_characters_is_accepted(env: Env) -> None:
    """The limit is inclusive: a 256-character id (unicode included) works end to end."""
    p = env.provider
    long_id = "é" * 256
    start_instance(p, long_id)
    assert p.get_instance_status(long_id) is not None
    assert p.read_history(long_id) == [started_event()]


@check(C)
def bad_names_are_rejected(env: Env) -> None:
    """An empty orchestration, event or queue name, or activity name, raises InvalidArgument."""
    p = env.provider
    raises(
        InvalidArgument, p.create_instance, StartOrchestration(instance="i1", name="", input="1")
    )
    assert p.get_instance_status("i1") is None
    create(p, "i1")
    raises(
        InvalidArgument, p.enqueue_orchestrator, ExternalRaised(instance="i1", name="", data="1")
    )
    raises(
        InvalidArgument, p.enqueue_orchestrator, QueueMessage(instance="i1", name="\x00", data="1")
    )
    raises(InvalidArgument, p.enqueue_worker, activity("i1", 1, name=""))
    assert len(fetch(p).messages) == 1
    assert drain_work(p, TagFilter.any()) == []


@check(C)
def create_rejects_payload_that_is_not_json(env: Env) -> None:
    """A start input that is not JSON text raises PayloadError and creates nothing."""
    p = env.provider
    raises(
        PayloadError,
        p.create_instance,
        StartOrchestration(instance="i1", name=ORCH, input="{not json"),
    )
    assert p.get_instance_status("i1") is None
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None


@check(C)
def create_rejects_payload_over_one_mib(env: Env) -> None:
    """A start input over 1 MiB of JSON raises PayloadError and creates nothing; exactly 1 MiB is fine."""
    p = env.provider
    limit = 1024 * 1024
    too_big = '"' + "a" * (limit - 1) + '"'  # limit + 1 bytes
    raises(
        PayloadError,
        p.create_instance,
        StartOrchestration(instance="big", name=ORCH, input=too_big),
    )
    assert p.get_instance_status("big") is None
    just_fits = '"' + "a" * (limit - 2) + '"'
    p.create_instance(StartOrchestration(instance="fits", name=ORCH, input=just_fits))
    assert fetch(p).messages[0].input == just_fits  # type: ignore[union-attr]


@check(C)
def enqueue_rejects_bad_payloads(env: Env) -> None:
    """Event data, queue data and activity input that are not JSON raise PayloadError; nothing is enqueued."""
    p = env.provider
    create(p, "i1")
    raises(
        PayloadError, p.enqueue_orchestrator, ExternalRaised(instance="i1", name="e", data="nope")
    )
    raises(PayloadError, p.enqueue_orchestrator, QueueMessage(instance="i1", name="q", data="{"))
    raises(PayloadError, p.enqueue_worker, activity("i1", 1, input="'single'"))
    assert len(fetch(p).messages) == 1
    assert drain_work(p) == []


@check(C)
def wrong_message_types_are_rejected(env: Env) -> None:
    """create_instance takes only a StartOrchestration; enqueue_worker only an ExecuteActivity."""
    p = env.provider
    raises(InvalidArgument, p.create_instance, ExternalRaised(instance="i1", name="e", data="1"))
    raises(InvalidArgument, p.enqueue_worker, ExternalRaised(instance="i1", name="e", data="1"))
    assert p.get_instance_status("i1") is None


@check(C)
def negative_delay_is_rejected(env: Env) -> None:
    """enqueue_orchestrator with a negative delay raises InvalidArgument and enqueues nothing."""
    p = env.provider
    create(p, "i1")
    item = fetch(p)
    p.ack_orchestration_item(item.lock_token, make_commit("i1", events=[started_event()]))
    raises(InvalidArgument, poke, p, "i1", delay_ms=-1)
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None


@check(C)
def unknown_token_errors_name_the_token(env: Env) -> None:
    """Every lock operation with an unknown token raises LockLost, not retryable, naming the token."""
    p = env.provider
    token = "no-such-token-7f3a"
    calls: list[Callable[[], Any]] = [
        lambda: p.ack_orchestration_item(token, make_commit("i1")),
        lambda: p.abandon_orchestration_item(token),
        lambda: p.renew_orchestration_lock(token, lock_timeout=LOCK),
        lambda: p.ack_work_item(token, None),
        lambda: p.renew_work_item_lock(token, lock_timeout=LOCK),
        lambda: p.abandon_work_item(token),
    ]
    for call in calls:
        exc = raises(LockLost, call)
        assert exc.retryable is False
        assert token in str(exc), f"the error should name the token: {exc}"


@check(C)
def duplicate_event_id_error_says_why(env: Env) -> None:
    """A duplicate event id raises a non-retryable ProviderError (not LockLost) and history is unchanged."""
    p = env.provider
    start_instance(p, "i1")
    poke(p, "i1")
    item = fetch(p)
    exc = raises(
        ProviderError,
        p.ack_orchestration_item,
        item.lock_token,
        make_commit("i1", events=[started_event(1)]),
    )
    assert not isinstance(exc, LockLost) and exc.retryable is False
    assert p.read_history("i1") == [started_event()]


@check(C)
def commit_for_another_instance_is_rejected(env: Env) -> None:
    """An ack whose commit names another instance than the lock is refused (InvalidArgument or ProviderError); nothing is written."""
    p = env.provider
    start_instance(p, "other")
    create(p, "i1")
    item = fetch(p)
    assert item.instance == "i1"
    raises(
        (InvalidArgument, ProviderError),
        p.ack_orchestration_item,
        item.lock_token,
        make_commit("other", events=[started_event(2)]),
    )
    assert p.read_history("other") == [started_event()]
    assert p.read_history("i1") == []


@check(C)
def unknown_instance_reads_are_empty(env: Env) -> None:
    """Reads of an unknown instance return empty values, never raise."""
    p = env.provider
    assert p.read_history("nobody") == []
    assert p.read_history("nobody", 3) == []
    assert p.get_instance_status("nobody") is None
    assert p.get_kv_value("nobody", "k") is None
    assert p.get_kv_all_values("nobody") == {}


@check(C)
def unknown_execution_reads_empty_history(env: Env) -> None:
    """read_history of an execution that does not exist returns []."""
    p = env.provider
    start_instance(p, "i1")
    assert p.read_history("i1", 2) == []
    assert p.read_history("i1", 1) == [started_event()]


def _closed_calls(p: Any) -> list[Callable[[], Any]]:
    return [
        lambda: p.create_instance(StartOrchestration(instance="x", name=ORCH, input="1")),
        lambda: p.enqueue_orchestrator(ExternalRaised(instance="i1", name="e", data="1")),
        lambda: p.enqueue_worker(activity("i1", 9)),
        lambda: p.fetch_orchestration_item(lock_timeout=LOCK),
        lambda: p.fetch_work_item(lock_timeout=LOCK, tag_filter=TagFilter.any()),
        lambda: p.renew_session_locks(["w"], lock_timeout=LOCK, idle_timeout=LOCK),
        lambda: p.cleanup_orphaned_sessions(),
        lambda: p.read_history("i1"),
        lambda: p.get_instance_status("i1"),
        lambda: p.get_kv_value("i1", "k"),
        lambda: p.get_kv_all_values("i1"),
        lambda: p.next_orchestrator_visible_ms(),
    ]


@check(C)
def closed_provider_raises_provider_closed(env: Env) -> None:
    """After close() every operation raises ProviderClosed (a ProviderError)."""
    p = env.provider
    start_instance(p, "i1")
    p.close()
    for call in _closed_calls(p):
        exc = raises(ProviderClosed, call)
        assert isinstance(exc, ProviderError)


@check(C)
def closed_provider_rejects_held_tokens(env: Env) -> None:
    """A lock held when the provider closes cannot be acked, renewed or abandoned through it."""
    p = env.provider
    create(p, "i1")
    p.enqueue_worker(activity("i1", 2))
    item = fetch(p)
    work = p.fetch_work_item(lock_timeout=LOCK, tag_filter=TagFilter.default_only())
    assert work is not None
    p.close()
    raises(
        ProviderClosed,
        p.ack_orchestration_item,
        item.lock_token,
        make_commit("i1", events=[started_event()]),
    )
    raises(ProviderClosed, p.renew_orchestration_lock, item.lock_token, lock_timeout=LOCK)
    raises(ProviderClosed, p.abandon_orchestration_item, item.lock_token)
    raises(ProviderClosed, p.ack_work_item, work.lock_token, None)
    raises(ProviderClosed, p.renew_work_item_lock, work.lock_token, lock_timeout=LOCK)
    raises(ProviderClosed, p.abandon_work_item, work.lock_token)


@check(C)
def close_twice_is_harmless(env: Env) -> None:
    """close() may be called again (and through the context manager) without error."""
    p = env.provider
    with p:
        create(p, "i1")
    p.close()
    raises(ProviderClosed, p.get_instance_status, "i1")


@check(C, admin=True)
def closed_provider_rejects_management(env: Env) -> None:
    """After close() the management calls raise ProviderClosed too."""
    admin = env.admin
    start_instance(env.provider, "i1")
    env.provider.close()
    for call in (
        lambda: admin.list_instances(),
        lambda: admin.get_instance_info("i1"),
        lambda: admin.get_system_metrics(),
        lambda: admin.get_queue_depths(),
        lambda: admin.delete_instance("i1", force=True),
        lambda: admin.prune_executions("i1", keep_last=1),
    ):
        raises(ProviderClosed, call)
