"""Replay invariants, checked on generated orchestrations and interleavings.

Each example draws a small *program* (a list of steps covering activities,
failures, joins, selects against timers, blocks, timers, waits, queues,
child orchestrations, GUIDs, KV and custom status), runs it to the end in
the pure harness under a drawn interleaving, then checks:

* split invariance: replaying any prefix of the recorded history plus the
  messages that followed it reproduces exactly the events that followed;
* a history at a turn boundary, replayed with nothing new, decides nothing new,
  and a finished history decides nothing at all;
* the sticky cache (resumed turns) and full replays give identical histories;
* ``run_turn`` never raises, whatever histories and messages it is fed.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durox import ActivityFailed, Registry
from durox.core import history, outcome
from durox.core.items import KvEntry
from durox.core.replay import run_turn

from .harness import MESSAGE_EVENTS, World, comparable, replay_messages

# -- generated programs --------------------------------------------------------------

NAMES = ["A", "B", "C", "Fail"]
EVENT_NAMES = ["go", "stop"]

activity_call = st.tuples(st.sampled_from(NAMES), st.integers(0, 3))
step = st.one_of(
    st.tuples(st.just("act"), activity_call),
    st.tuples(st.just("join"), st.lists(activity_call, min_size=1, max_size=4)),
    st.tuples(st.just("race"), activity_call, st.integers(0, 5)),
    st.tuples(st.just("block"), st.lists(activity_call, min_size=1, max_size=3), st.integers(0, 5)),
    st.tuples(st.just("timer"), st.integers(0, 3)),
    st.tuples(st.just("wait"), st.sampled_from(EVENT_NAMES), st.integers(1, 5)),
    st.tuples(st.just("dequeue"), st.integers(1, 5)),
    st.tuples(st.just("child"), st.integers(0, 3)),
    st.tuples(st.just("child_race"), st.integers(0, 3), st.integers(0, 2)),
    st.tuples(st.just("guid")),
    st.tuples(st.just("kv"), st.sampled_from(["k1", "k2"]), st.integers(0, 9)),
    st.tuples(st.just("status"), st.integers(0, 9)),
)
programs = st.lists(step, min_size=1, max_size=7)


def _activity(ctx: Any, value: int) -> str:
    return f"{ctx.activity_name}:{value}"


def _failing(ctx: Any, value: int) -> str:
    raise ValueError(f"failed on {value}")


def program_registry() -> Registry:
    """The orchestrations and activities generated programs use."""
    registry = Registry()
    for name in NAMES[:-1]:
        registry.add_activity(name, _activity)
    registry.add_activity("Fail", _failing)

    @registry.orchestration("Child")
    def child(ctx: Any, value: int) -> Any:
        return (yield ctx.schedule_activity("A", value))

    @registry.orchestration("Program")
    def program(ctx: Any, spec: dict[str, Any]) -> Any:
        results: list[Any] = []
        for raw in spec["steps"]:
            results.append((yield from _run_step(ctx, raw)))
        if spec["again"] and ctx.execution_id == 1:
            return (yield ctx.continue_as_new({"steps": spec["steps"][:2], "again": False}))
        return results

    return registry


def _attempt(ctx: Any, name: str, value: int) -> Any:
    try:
        return (yield ctx.schedule_activity(name, value))
    except ActivityFailed as failure:
        return f"error:{failure.message}"


def _sequence(ctx: Any, calls: list[list[Any]]) -> Any:
    out = []
    for name, value in calls:
        out.append((yield from _attempt(ctx, name, value)))
    return out


def _run_step(ctx: Any, raw: list[Any]) -> Any:
    kind = raw[0]
    if kind == "act":
        return (yield from _attempt(ctx, *raw[1]))
    if kind == "join":
        tasks = [ctx.schedule_activity(name, value) for name, value in raw[1]]
        done = yield ctx.join(tasks, return_exceptions=True)
        return [r.message if isinstance(r, ActivityFailed) else r for r in done]
    if kind == "race":
        (name, value), delay = raw[1], raw[2]
        try:
            return (yield ctx.select(ctx.schedule_activity(name, value), ctx.schedule_timer(delay)))
        except ActivityFailed as failure:
            return f"error:{failure.message}"
    if kind == "block":
        index, value = yield ctx.select(
            ctx.block(_sequence(ctx, raw[1])), ctx.schedule_timer(raw[2])
        )
        return [index, value]
    if kind == "timer":
        return (yield ctx.schedule_timer(raw[1]))
    if kind == "wait":
        return (yield ctx.select(ctx.schedule_wait(raw[1]), ctx.schedule_timer(raw[2])))
    if kind == "dequeue":
        return (yield ctx.select(ctx.dequeue_event("inbox"), ctx.schedule_timer(raw[1])))
    if kind == "child":
        return (yield ctx.schedule_sub_orchestration("Child", raw[1]))
    if kind == "child_race":
        child = ctx.schedule_sub_orchestration("Child", raw[1])
        return (yield ctx.select(child, ctx.schedule_timer(raw[2])))
    if kind == "guid":
        return len((yield ctx.new_guid()))
    if kind == "kv":
        ctx.set_kv_value(raw[1], raw[2])
        return ctx.get_kv_all_values()
    assert kind == "status"
    ctx.set_custom_status(f"step {raw[1]}")
    return ctx.get_custom_status()


REGISTRY = program_registry()


def run_program(steps: list[Any], again: bool, seed: int, *, sticky: bool) -> World:
    """Run a program to the end under the interleaving ``seed`` picks (sometimes cancelling it)."""
    rng = random.Random(seed)
    world = World(REGISTRY, chooser=lambda n: rng.randrange(n), sticky=sticky)
    world.start("p", "Program", {"steps": [list(s) for s in steps], "again": again})
    cancel_at = rng.randrange(40) if rng.random() < 0.15 else -1
    for index in range(5_000):
        roll = rng.random()
        if index == cancel_at:
            world.cancel("p", "stop requested")
        elif roll < 0.08:
            world.raise_event("p", rng.choice(EVENT_NAMES), rng.randrange(100))
        elif roll < 0.12:
            world.enqueue_event("p", "inbox", rng.randrange(100))
        elif not world.step() and not world._advance_to_next_timer():
            break
    world.run()
    return world


def executions(world: World, instance: str = "p") -> list[list[history.Event]]:
    return [events for _, events in sorted(world.instances[instance].executions.items())]


def kv_at_start(runs: list[list[history.Event]], execution_id: int) -> dict[str, KvEntry]:
    """The KV snapshot an execution starts with: every earlier execution's writes, folded."""
    kv: dict[str, KvEntry] = {}
    for events in runs[: execution_id - 1]:
        for event in events:
            if isinstance(event, history.KeyValueSet):
                kv[event.key] = KvEntry(value=event.value, updated_at_ms=event.updated_at_ms)
            elif isinstance(event, history.KeyValueCleared):
                kv.pop(event.key, None)
            elif isinstance(event, history.KeyValuesCleared):
                kv.clear()
    return kv


def segments_after(events: list[history.Event], k: int) -> tuple[int, int]:
    """For a split at ``k``: the end of the messages that follow, and the end of that turn.

    ``OrchestrationStarted`` opens the first turn like a message: the other
    messages of that first batch follow it.
    """
    b = k + 1 if k == 0 else k
    while b < len(events) and isinstance(events[b], MESSAGE_EVENTS):
        b += 1
    j = b
    while j < len(events) and not isinstance(events[j], MESSAGE_EVENTS):
        j += 1
    return b, j


PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY_SETTINGS
@given(steps=programs, again=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_split_invariance(steps: list[Any], again: bool, seed: int) -> None:
    world = run_program(steps, again, seed, sticky=True)
    fn = REGISTRY.resolve_orchestration("Program")
    assert fn is not None
    runs = executions(world)
    for execution_id, events in enumerate(runs, start=1):
        assert history.is_terminal(events[-1]), "the program must finish"
        snapshot = kv_at_start(runs, execution_id)
        for k in range(len(events)):
            b, j = segments_after(events, k)
            turn = run_turn(
                events[:k],
                replay_messages(events[max(k, 1) : b], "p", execution_id),
                fn.fn,
                instance="p",
                execution_id=execution_id,
                now_ms=world.now_ms,
                entropy=b"harness",
                started=events[0] if k == 0 else None,
                input_type=fn.input_type,
                kv_snapshot=snapshot,
            )
            produced = [comparable(e) for e in turn.new_events]
            expected = [comparable(e) for e in events[k:j]]
            assert produced == expected, f"split at {k} of execution {execution_id}"
            assert [e.event_id for e in turn.new_events] == list(range(k + 1, j + 1))
            if j == len(events):
                assert not isinstance(turn.outcome, outcome.Continue)


@PROPERTY_SETTINGS
@given(steps=programs, again=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_rerun_decides_nothing_new(steps: list[Any], again: bool, seed: int) -> None:
    world = run_program(steps, again, seed, sticky=False)
    fn = REGISTRY.resolve_orchestration("Program")
    assert fn is not None
    runs = executions(world)
    for execution_id, events in enumerate(runs, start=1):
        snapshot = kv_at_start(runs, execution_id)
        finished = run_turn(
            events,
            [],
            fn.fn,
            instance="p",
            execution_id=execution_id,
            now_ms=0,
            input_type=fn.input_type,
        )
        assert (
            finished.new_events == ()
            and finished.worker_items == ()
            and finished.orchestrator_items == ()
        )
        # A turn ends where its last produced event is followed by the next turn's messages.
        boundaries = [
            j
            for j in range(2, len(events))
            if isinstance(events[j], MESSAGE_EVENTS)
            and not isinstance(events[j - 1], MESSAGE_EVENTS)
        ]
        for j in boundaries:
            turn = run_turn(
                events[:j],
                [],
                fn.fn,
                instance="p",
                execution_id=execution_id,
                now_ms=0,
                input_type=fn.input_type,
                kv_snapshot=snapshot,
            )
            assert turn.new_events == (), f"replay to turn boundary {j} decided something new"
            assert turn.worker_items == () and turn.orchestrator_items == ()
            assert isinstance(turn.outcome, outcome.Continue)


@PROPERTY_SETTINGS
@given(steps=programs, again=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_sticky_and_full_replay_agree(steps: list[Any], again: bool, seed: int) -> None:
    sticky = run_program(steps, again, seed, sticky=True)
    scratch = run_program(steps, again, seed, sticky=False)
    assert sticky.turns == scratch.turns
    for left, right in zip(executions(sticky), executions(scratch)):
        assert left == right
    assert sticky.status("p") == scratch.status("p")
    assert [a.id for a in sticky.activity_runs] == [a.id for a in scratch.activity_runs]


@st.composite
def chaos(draw: st.DrawFn) -> tuple[list[history.Event], list[Any]]:
    """A recorded history, cut, shuffled or corrupted, and messages shuffled and duplicated."""
    steps = draw(programs)
    world = run_program(steps, draw(st.booleans()), draw(st.integers(0, 2**32 - 1)), sticky=False)
    events = draw(st.sampled_from(executions(world)))
    cut = draw(st.integers(0, len(events)))
    prefix = list(events[:cut])
    messages = replay_messages(events[cut:], "p")
    messages += draw(st.lists(st.sampled_from(messages), max_size=4)) if messages else []
    messages = draw(st.permutations(messages))
    if prefix and draw(st.booleans()):
        victim = draw(st.integers(0, len(prefix) - 1))
        action = draw(st.sampled_from(["drop", "duplicate", "swap"]))
        if action == "drop":
            del prefix[victim]
        elif action == "duplicate":
            prefix.insert(victim, prefix[victim])
        elif victim + 1 < len(prefix):
            prefix[victim], prefix[victim + 1] = prefix[victim + 1], prefix[victim]
    return prefix, messages


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=chaos())
def test_run_turn_never_raises(case: tuple[list[history.Event], list[Any]]) -> None:
    events, messages = case
    fn = REGISTRY.resolve_orchestration("Program")
    assert fn is not None
    turn = run_turn(
        events,
        messages,
        fn.fn,
        instance="p",
        now_ms=1,
        input={"steps": [], "again": False},
        input_type=fn.input_type,
    )
    # Whatever came in, what goes out is a well-formed continuation of the history.
    assert [e.event_id for e in turn.new_events] == list(
        range(len(events) + 1, len(events) + 1 + len(turn.new_events))
    )
    terminal = [e for e in turn.new_events if history.is_terminal(e)]
    assert len(terminal) <= 1
    if terminal:
        assert turn.new_events[-1] is terminal[0]
