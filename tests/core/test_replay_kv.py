"""The per-instance KV store: limits, snapshot, replay-stable values and timestamps."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from durox.core import history, outcome
from durox.core.errors import InvalidArgument, PayloadError
from durox.core.items import KvEntry
from tests.core.builders import T0, kinds, timer_due, turn
from tests.core.harness import comparable

Gen = Generator[Any, Any, Any]


def test_key_limit_raises_into_the_code() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        for i in range(100):
            ctx.set_kv_value(f"k{i}", i)
        ctx.set_kv_value("k5", "overwrite is fine at the limit")
        try:
            ctx.set_kv_value("k100", 1)
        except InvalidArgument as exc:
            return [ctx.get_kv_length(), "100 keys" in str(exc)]
        yield  # pragma: no cover

    result = turn(orch)
    assert result.outcome == outcome.Complete(output="[100,true]")
    assert len(result.kv_ops) == 101


def test_snapshot_keys_count_towards_the_limit() -> None:
    snapshot = {f"s{i}": KvEntry(value="0", updated_at_ms=1) for i in range(100)}

    def orch(ctx: Any, _: Any) -> Gen:
        try:
            ctx.set_kv_value("new", 1)
        except InvalidArgument:
            return "full"
        yield  # pragma: no cover

    assert turn(orch, kv=snapshot).outcome == outcome.Complete(output='"full"')


def test_value_size_limit_raises_payload_error() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        ctx.set_kv_value("ok", "x" * (16 * 1024 - 2))  # 16 KiB of JSON with the quotes
        try:
            ctx.set_kv_value("big", "x" * (16 * 1024 - 1))
        except PayloadError as exc:
            return str(exc)
        yield  # pragma: no cover

    result = turn(orch)
    assert isinstance(result.outcome, outcome.Complete)
    assert "16385 bytes" in result.outcome.output and "16384" in result.outcome.output
    assert [op.key for op in result.kv_ops] == ["ok"]


def test_snapshot_seeds_reads() -> None:
    snapshot = {
        "b": KvEntry(value='{"n":2}', updated_at_ms=5),
        "a": KvEntry(value="1", updated_at_ms=5),
    }

    def orch(ctx: Any, _: Any) -> Gen:
        return [
            ctx.get_kv_value("b"),
            ctx.get_kv_value("zz"),
            ctx.get_kv_all_keys(),
            ctx.get_kv_all_values(),
            ctx.get_kv_length(),
        ]
        yield  # pragma: no cover

    result = turn(orch, kv=snapshot)
    assert result.outcome == outcome.Complete(
        output='[{"n":2},null,["a","b"],{"a":1,"b":{"n":2}},2]'
    )
    assert result.kv_ops == ()


def counter(ctx: Any, _: Any) -> Gen:
    for _round in range(3):
        ctx.set_kv_value("count", (ctx.get_kv_value("count") or 0) + 1)
        yield ctx.schedule_timer(1)
    return ctx.get_kv_value("count")


def test_read_modify_write_across_turns_is_replayed_identically() -> None:
    snapshot = {"count": KvEntry(value="10", updated_at_ms=1)}
    h = list(turn(counter, kv=snapshot).new_events)
    for step, timer_id in enumerate((3, 6)):
        h += turn(
            counter, h, [timer_due(timer_id)], kv=snapshot, now_ms=T0 + 1000 * (step + 1)
        ).new_events
    result = turn(counter, h, [timer_due(9)], kv=snapshot, now_ms=T0 + 5000)
    assert result.outcome == outcome.Complete(output="13")
    sets = [e for e in h if isinstance(e, history.KeyValueSet)]
    assert [(e.value, e.updated_at_ms) for e in sets] == [
        ("11", T0),
        ("12", T0 + 1000),
        ("13", T0 + 2000),
    ]
    # replaying everything from scratch (another worker, later) produces nothing new
    again = turn(counter, h, kv=snapshot, now_ms=T0 * 9)
    assert again.new_events == () and again.kv_ops == ()


def test_prune_by_timestamp_is_deterministic_on_replay() -> None:
    snapshot = {"old": KvEntry(value="0", updated_at_ms=T0 - 50_000)}

    def orch(ctx: Any, _: Any) -> Gen:
        ctx.set_kv_value("first", 1)
        yield ctx.schedule_timer(10)
        ctx.set_kv_value("second", 2)
        yield ctx.schedule_timer(10)
        removed = ctx.prune_kv_values_updated_before(T0 + 5_000)
        return [removed, ctx.get_kv_all_keys()]

    h = list(turn(orch, kv=snapshot, now_ms=T0).new_events)
    h += turn(orch, h, [timer_due(3)], kv=snapshot, now_ms=T0 + 10_000).new_events
    last = turn(orch, h, [timer_due(6)], kv=snapshot, now_ms=T0 + 20_000)
    assert last.outcome == outcome.Complete(output='[2,["second"]]')
    assert kinds(last.new_events)[1:3] == ["KeyValueCleared", "KeyValueCleared"]
    assert [op.key for op in last.kv_ops] == ["first", "old"]
    # a full replay at a much later time keeps the recorded timestamps of both sets
    replayed = turn(orch, h, [timer_due(6)], kv=snapshot, now_ms=T0 * 50)
    assert replayed.outcome == outcome.Complete(output='[2,["second"]]')
    assert [comparable(e) for e in replayed.new_events] == [comparable(e) for e in last.new_events]


def test_clear_and_clear_all() -> None:
    snapshot = {"a": KvEntry(value="1", updated_at_ms=0), "b": KvEntry(value="2", updated_at_ms=0)}

    def orch(ctx: Any, _: Any) -> Gen:
        ctx.clear_kv_value("a")
        ctx.clear_kv_value("missing")
        first = ctx.get_kv_all_keys()
        ctx.clear_all_kv_values()
        return [first, ctx.get_kv_length()]
        yield  # pragma: no cover

    result = turn(orch, kv=snapshot)
    assert result.outcome == outcome.Complete(output='[["b"],0]')
    assert kinds(result.kv_ops) == ["KeyValueCleared", "KeyValueCleared", "KeyValuesCleared"]


def test_changed_value_on_replay_is_nondeterminism() -> None:
    def v1(ctx: Any, _: Any) -> Gen:
        ctx.set_kv_value("k", 1)
        yield ctx.schedule_timer(1)

    def v2(ctx: Any, _: Any) -> Gen:
        ctx.set_kv_value("k", 2)
        yield ctx.schedule_timer(1)

    h = list(turn(v1).new_events)
    result = turn(v2, h)
    assert isinstance(result.outcome, outcome.Fail)
    assert "value differs: code produced '2', history has '1'" in result.outcome.details.message


def test_bad_key_raises() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        try:
            ctx.set_kv_value("", 1)
        except InvalidArgument:
            return "bad key"
        yield  # pragma: no cover

    assert turn(orch).outcome == outcome.Complete(output='"bad key"')


def test_read_from_another_instance_is_a_system_activity() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        return (yield ctx.get_kv_value_from_instance("other", "k"))

    result = turn(orch)
    (item,) = result.worker_items
    assert item.name == "__durox:get_kv_value"
    assert item.input == '{"instance_id":"other","key":"k"}'


def test_key_limit_counts_keys_set_in_earlier_turns() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        for i in range(60):
            ctx.set_kv_value(f"a{i}", i)
        yield ctx.schedule_timer(1)
        for i in range(40):
            ctx.set_kv_value(f"b{i}", i)
        try:
            ctx.set_kv_value("one-too-many", 1)
        except InvalidArgument:
            return ctx.get_kv_length()

    h = list(turn(orch).new_events)
    result = turn(orch, h, [timer_due(62)])
    assert result.outcome == outcome.Complete(output="100")


def test_prune_removes_keys_set_in_the_current_turn() -> None:
    def orch(ctx: Any, _: Any) -> Gen:
        ctx.set_kv_value("fresh", 1)
        return ctx.prune_kv_values_updated_before(T0 + 1)
        yield  # pragma: no cover

    result = turn(orch, now_ms=T0)
    assert result.outcome == outcome.Complete(output="1")
    assert kinds(result.kv_ops) == ["KeyValueSet", "KeyValueCleared"]


def test_read_modify_write_across_continue_as_new_replays_cleanly() -> None:
    # Duroxide 0.1.26: replay must read KV as of the execution's start, not the latest value
    from durox.core.registry import Registry
    from tests.core.harness import World

    def orch(ctx: Any, rounds: int) -> Gen:
        ctx.set_kv_value("count", (ctx.get_kv_value("count") or 0) + 1)
        yield ctx.schedule_timer(1)
        ctx.set_kv_value("count", ctx.get_kv_value("count") + 10)
        yield ctx.schedule_timer(1)
        if rounds > 1:
            return (yield ctx.continue_as_new(rounds - 1))
        return ctx.get_kv_value("count")

    registry = Registry()
    registry.add_orchestration("Counter", orch)
    for sticky in (True, False):
        world = World(registry, sticky=sticky)
        world.start("c", "Counter", 3)
        world.run()
        assert world.output("c") == 33
        assert world.kv("c") == {"count": 33}
