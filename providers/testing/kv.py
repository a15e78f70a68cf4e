"""Per-instance KV in two tiers: the fetch sees the state at execution start, clients see the latest."""

from __future__ import annotations

from durox.core import history
from durox.core.commit import OutgoingMessage
from durox.core.errors import ProviderError
from durox.core.items import KvEntry
from durox.core.messages import StartOrchestration
from durox.providers.testing.helpers import (
    ORCH,
    complete_instance,
    continue_as_new,
    fail_instance,
    fetch,
    make_commit,
    next_event_id,
    poke,
    raises,
    start_instance,
    started_event,
    turn,
)
from durox.providers.testing.registry import Env, check

C = "kv_store"


def kv_set(key: str, value: str, *, at: int = 1, eid: int = 0) -> history.KeyValueSet:
    """A KeyValueSet op (event id irrelevant to the provider's KV handling)."""
    return history.KeyValueSet(event_id=eid, timestamp_ms=0, key=key, value=value, updated_at_ms=at)


def kv_clear(key: str) -> history.KeyValueCleared:
    """A KeyValueCleared op."""
    return history.KeyValueCleared(event_id=0, timestamp_ms=0, key=key)


def kv_clear_all() -> history.KeyValuesCleared:
    """A KeyValuesCleared op."""
    return history.KeyValuesCleared(event_id=0, timestamp_ms=0)


def _snapshot(env: Env, instance: str = "i1") -> dict[str, str]:
    """The kv_snapshot of the instance's next fetch (the turn is then acked empty)."""
    poke(env.provider, instance)
    item = fetch(env.provider)
    assert item.instance == instance
    env.provider.ack_orchestration_item(
        item.lock_token, make_commit(instance, execution_id=item.execution_id)
    )
    return {k: v.value for k, v in item.kv_snapshot.items()}


@check(C)
def set_value_is_read_by_clients(env: Env) -> None:
    """A value set by a commit is returned by get_kv_value and get_kv_all_values."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("a", '"1"'), kv_set("b", "[2]")])
    assert p.get_kv_value("i1", "a") == '"1"'
    assert p.get_kv_all_values("i1") == {"a": '"1"', "b": "[2]"}


@check(C)
def later_set_overwrites(env: Env) -> None:
    """Setting a key again replaces its value, within one commit and across commits."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("a", "1"), kv_set("a", "2")])
    assert p.get_kv_value("i1", "a") == "2"
    turn(p, "i1", kv_ops=[kv_set("a", "3")])
    assert p.get_kv_value("i1", "a") == "3"


@check(C)
def clear_removes_one_key(env: Env) -> None:
    """KeyValueCleared removes that key only; clearing a missing key is harmless."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("a", "1"), kv_set("b", "2")])
    turn(p, "i1", kv_ops=[kv_clear("a"), kv_clear("never-set")])
    assert p.get_kv_value("i1", "a") is None
    assert p.get_kv_all_values("i1") == {"b": "2"}


@check(C)
def clear_all_removes_every_key(env: Env) -> None:
    """KeyValuesCleared removes every key of the instance."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("a", "1"), kv_set("b", "2")])
    turn(p, "i1", kv_ops=[kv_clear_all()])
    assert p.get_kv_all_values("i1") == {}
    assert p.get_kv_value("i1", "b") is None


@check(C)
def set_after_clear_all_in_one_commit(env: Env) -> None:
    """Ops apply in order: clear-all then set leaves only the new key."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("old", "1")])
    turn(p, "i1", kv_ops=[kv_clear_all(), kv_set("new", "2")])
    assert p.get_kv_all_values("i1") == {"new": "2"}


@check(C)
def missing_keys_and_instances_read_as_none(env: Env) -> None:
    """An unknown key or instance reads as None / {}."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("a", "1")])
    assert p.get_kv_value("i1", "zzz") is None
    assert p.get_kv_value("nobody", "a") is None and p.get_kv_all_values("nobody") == {}


@check(C)
def values_and_keys_round_trip_exactly(env: Env) -> None:
    """Empty strings, a value of exactly 16 KiB and keys with spaces, unicode, dots and slashes round-trip."""
    p = env.provider
    big = '"' + "é" * 8_191 + '"'  # 16384 bytes: MAX_KV_VALUE_BYTES
    keys = {"with space": '""', "ünï.cödé/path": "null", "a.b/c": big, "'quote\"": '{"x": [1, 2]}'}
    start_instance(p, "i1", kv_ops=[kv_set(k, v) for k, v in keys.items()])
    assert p.get_kv_all_values("i1") == keys
    assert p.get_kv_value("i1", "a.b/c") == big


@check(C)
def kv_is_per_instance(env: Env) -> None:
    """Writes and clears in one instance never show in another."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("k", "1")])
    start_instance(p, "i2", kv_ops=[kv_set("k", "2")])
    turn(p, "i2", kv_ops=[kv_clear_all()])
    assert p.get_kv_all_values("i1") == {"k": "1"}
    assert p.get_kv_all_values("i2") == {}


@check(C)
def snapshot_excludes_current_execution_writes(env: Env) -> None:
    """The fetch snapshot leaves out what the running execution wrote (replay rebuilds it); clients see it."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("a", "1")])
    assert _snapshot(env) == {}
    assert p.get_kv_value("i1", "a") == "1"


@check(C)
def first_fetch_has_empty_snapshot(env: Env) -> None:
    """A brand-new instance is fetched with an empty KV snapshot."""
    start_instance(env.provider, "i1")
    assert _snapshot(env) == {}


@check(C)
def continue_as_new_folds_writes_into_snapshot(env: Env) -> None:
    """After continue-as-new the next execution's fetch sees the previous execution's writes with timestamps."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("a", "1", at=111)])
    turn(p, "i1", kv_ops=[kv_set("b", "2", at=222)])
    continue_as_new(p, "i1")
    poke(p, "i1")
    item = fetch(p)
    assert item.execution_id == 2
    assert dict(item.kv_snapshot) == {
        "a": KvEntry(value="1", updated_at_ms=111),
        "b": KvEntry(value="2", updated_at_ms=222),
    }


@check(C)
def terminal_commit_itself_folds_its_own_ops(env: Env) -> None:
    """KV ops in the very commit that ends the execution are part of the next snapshot."""
    p = env.provider
    start_instance(p, "i1")
    continue_as_new(p, "i1", kv_ops=[kv_set("last", "9")])
    assert _snapshot(env) == {"last": "9"}


@check(C)
def completion_folds_writes(env: Env) -> None:
    """Completing the execution folds its writes: a later fetch's snapshot and clients agree."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("a", "1")])
    complete_instance(p, "i1", kv_ops=[kv_set("b", "2")])
    assert _snapshot(env) == {"a": "1", "b": "2"} == p.get_kv_all_values("i1")


@check(C)
def failure_folds_writes(env: Env) -> None:
    """A failed execution's writes are folded too."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("a", "1")])
    fail_instance(p, "i1")
    assert _snapshot(env) == {"a": "1"}


@check(C)
def current_clear_hides_baseline_from_clients_only(env: Env) -> None:
    """Clearing a baseline key: clients see it gone at once; the snapshot keeps it until the execution ends."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("a", "1"), kv_set("b", "2")])
    continue_as_new(p, "i1")
    turn(p, "i1", kv_ops=[kv_clear("a")])
    assert p.get_kv_all_values("i1") == {"b": "2"}
    assert _snapshot(env) == {"a": "1", "b": "2"}
    continue_as_new(p, "i1")
    assert _snapshot(env) == {"b": "2"}


@check(C)
def current_clear_all_hides_baseline_from_clients(env: Env) -> None:
    """Clear-all in the running execution hides baseline keys from clients; the fold removes them for good."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("a", "1")])
    continue_as_new(p, "i1")
    turn(p, "i1", kv_ops=[kv_clear_all(), kv_set("c", "3")])
    assert p.get_kv_all_values("i1") == {"c": "3"}
    assert _snapshot(env) == {"a": "1"}
    complete_instance(p, "i1")
    assert _snapshot(env) == {"c": "3"}


@check(C)
def current_overwrite_shadows_baseline(env: Env) -> None:
    """A key rewritten in the running execution: clients read the new value, the snapshot the old one."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("a", "old")])
    continue_as_new(p, "i1")
    turn(p, "i1", kv_ops=[kv_set("a", "new")])
    assert p.get_kv_value("i1", "a") == "new"
    assert _snapshot(env) == {"a": "old"}


@check(C)
def untouched_baseline_keys_survive_executions(env: Env) -> None:
    """A key written once stays through later executions that change other keys."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("keep", "1")])
    continue_as_new(p, "i1", kv_ops=[kv_set("x", "1")])
    continue_as_new(p, "i1", kv_ops=[kv_clear("x")])
    assert _snapshot(env) == {"keep": "1"} == p.get_kv_all_values("i1")


@check(C)
def re_added_key_after_clear_across_executions(env: Env) -> None:
    """A key cleared in one execution and set again in the next ends with the new value."""
    p = env.provider
    start_instance(p, "i1", kv_ops=[kv_set("k", "1")])
    continue_as_new(p, "i1", kv_ops=[kv_clear("k")])
    continue_as_new(p, "i1", kv_ops=[kv_set("k", "2")])
    assert _snapshot(env) == {"k": "2"}


@check(C)
def rejected_commit_writes_no_kv(env: Env) -> None:
    """KV ops of a commit rejected for a duplicate event id are not applied."""
    p = env.provider
    start_instance(p, "i1")
    poke(p, "i1")
    item = fetch(p)
    commit = make_commit("i1", events=[started_event(1)], kv_ops=[kv_set("a", "1")])
    raises(ProviderError, p.ack_orchestration_item, item.lock_token, commit)
    assert p.get_kv_all_values("i1") == {}


@check(C, admin=True)
def delete_removes_kv_of_the_whole_tree(env: Env) -> None:
    """Deleting a root removes its KV and its children's, in both tiers."""
    p = env.provider
    child = StartOrchestration(instance="kid", name=ORCH, input="1", parent_instance="root")
    start_instance(
        p, "root", kv_ops=[kv_set("r", "1")], orchestrator_items=[OutgoingMessage(message=child)]
    )
    item = fetch(p)
    p.ack_orchestration_item(
        item.lock_token, make_commit("kid", events=[started_event()], kv_ops=[kv_set("k", "1")])
    )
    continue_as_new(p, "root")
    eid = next_event_id(p, "root")
    turn(p, "root", kv_ops=[kv_set("r2", "2", eid=eid)])
    env.admin.delete_instance("root", force=True)
    assert p.get_kv_all_values("root") == {} and p.get_kv_all_values("kid") == {}
