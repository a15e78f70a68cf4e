"""Every orchestration of the user guide runs to its documented result through the pure world."""

from __future__ import annotations

import itertools

import pytest

from durox.core import history
from tests.core.guide import SCENARIOS, Scenario, check_scenario, make_registry, run_scenario
from tests.core.harness import Chooser, World, comparable


def _last(n: int) -> int:
    return n - 1


def _alternating() -> Chooser:
    counter = itertools.count()
    return lambda n: next(counter) % n


CHOOSERS = {"first": lambda n: 0, "last": _last}


@pytest.mark.parametrize("sticky", [True, False], ids=["sticky", "replay"])
@pytest.mark.parametrize("chooser", sorted(CHOOSERS))
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.instance for s in SCENARIOS])
def test_guide_scenario(scenario: Scenario, chooser: str, sticky: bool) -> None:
    world = World(make_registry(), chooser=CHOOSERS[chooser], sticky=sticky)
    run_scenario(world, scenario)
    check_scenario(world, scenario)


def test_all_scenarios_together_in_one_world() -> None:
    # Interleaved instances share queues and virtual time; each must still reach its end.
    world = World(make_registry(), chooser=_alternating(), sticky=False)
    for scenario in SCENARIOS:
        run_scenario(world, scenario)
    for scenario in SCENARIOS:
        check_scenario(world, scenario)


def _activity_names(world: World, instance: str) -> list[str]:
    return [e.name for e in world.history(instance, 1) if isinstance(e, history.ActivityScheduled)]


def test_saga_compensates_after_the_failed_charge() -> None:
    world = World(make_registry())
    run_scenario(world, next(s for s in SCENARIOS if s.instance == "saga-compensated"))
    assert _activity_names(world, "saga-compensated") == [
        "ReserveInventory",
        "ChargePayment",
        "ReleaseInventory",
    ]
    failure = world.failure("saga-compensated")
    assert failure.error_type == "RuntimeError"


def test_retry_waits_one_second_between_attempts() -> None:
    world = World(make_registry())
    run_scenario(world, next(s for s in SCENARIOS if s.instance == "retry"))
    events = world.history("retry")
    timers = [e for e in events if isinstance(e, history.TimerCreated)]
    assert len(timers) == 2
    assert all(t.fire_at_ms - t.timestamp_ms == 1000 for t in timers)
    assert (
        world.traces.count(
            "warning: activity 'UnreliableTask' attempt 1/3 failed: UnreliableTask attempt 1 failed"
        )
        == 1
    )


def test_manual_retry_doubles_its_delay() -> None:
    world = World(make_registry())
    run_scenario(world, next(s for s in SCENARIOS if s.instance == "manual-retry"))
    timers = [e for e in world.history("manual-retry") if isinstance(e, history.TimerCreated)]
    assert [t.fire_at_ms - t.timestamp_ms for t in timers] == [1000, 2000]


def test_monitor_runs_one_execution_per_round() -> None:
    world = World(make_registry())
    run_scenario(world, next(s for s in SCENARIOS if s.instance == "monitor"))
    state = world.instances["monitor"]
    assert sorted(state.executions) == [1, 2, 3, 4]
    for execution in (1, 2, 3):
        assert isinstance(state.executions[execution][-1], history.OrchestrationContinuedAsNew)
    first = state.executions[2][0]
    assert isinstance(first, history.OrchestrationStarted)
    assert first.input == '{"iteration":1,"rounds":4,"healthy":1}'


def test_tagged_activity_carries_its_tag_and_loses_the_select() -> None:
    world = World(make_registry())
    run_scenario(world, next(s for s in SCENARIOS if s.instance == "tag-fallback"))
    events = world.history("tag-fallback")
    render = next(e for e in events if isinstance(e, history.ActivityScheduled))
    assert (render.name, render.tag) == ("RenderFrame", "gpu")
    crumbs = [e for e in events if isinstance(e, history.ActivityCancelRequested)]
    assert [(c.source_id, c.reason) for c in crumbs] == [(render.event_id, "select_loser")]


def test_children_of_the_parent_have_derived_ids() -> None:
    world = World(make_registry())
    run_scenario(world, next(s for s in SCENARIOS if s.instance == "sub-orchestrations"))
    children = [
        e
        for e in world.history("sub-orchestrations")
        if isinstance(e, history.SubOrchestrationScheduled)
    ]
    assert [c.instance for c in children] == [
        f"sub-orchestrations::sub::1.{c.event_id}" for c in children
    ]
    assert all(world.instances[c.instance].parent == "sub-orchestrations" for c in children)


def test_actor_carries_custom_status_and_unread_commands_across_executions() -> None:
    world = World(make_registry())
    run_scenario(world, next(s for s in SCENARIOS if s.instance == "actor"))
    state = world.instances["actor"]
    second = state.executions[2][0]
    assert isinstance(second, history.OrchestrationStarted)
    assert second.initial_custom_status == "total=3"
    assert second.input == '{"total":3}'


@pytest.mark.parametrize("chooser", sorted(CHOOSERS))
def test_sticky_and_replayed_runs_write_the_same_histories(chooser: str) -> None:
    # Rule 7: resuming the cached state is the same as replaying the whole history
    worlds = []
    for sticky in (True, False):
        world = World(make_registry(), chooser=CHOOSERS[chooser], sticky=sticky)
        for scenario in SCENARIOS:
            run_scenario(world, scenario)
        worlds.append(world)
    sticky_world, replay_world = worlds
    assert sticky_world.instances.keys() == replay_world.instances.keys()
    for instance, state in sticky_world.instances.items():
        other = replay_world.instances[instance]
        assert state.executions.keys() == other.executions.keys(), instance
        for execution, events in state.executions.items():
            assert [comparable(e) for e in events] == [
                comparable(e) for e in other.executions[execution]
            ], (instance, execution)
    assert sticky_world.turns == replay_world.turns
