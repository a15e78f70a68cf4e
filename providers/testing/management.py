"""Management: listing, inspection and counters agree with what was written."""

from __future__ import annotations

from durox.core import codec, history
from durox.core.errors import InstanceNotFound
from durox.providers.testing.helpers import (
    FAILURE,
    LOCK,
    activity,
    complete_instance,
    create,
    fail_instance,
    fetch,
    fetch_work,
    poke,
    raises,
    start_instance,
    turn,
)
from durox.providers.testing.registry import Env, check

C = "management"


@check(C, admin=True)
def list_instances_is_newest_first(env: Env) -> None:
    """list_instances returns every instance, the most recently created first."""
    for name in ("a", "b", "c"):
        create(env.provider, name)
        env.advance(1)
    assert env.admin.list_instances() == ["c", "b", "a"]


@check(C, admin=True)
def list_instances_filters_by_current_status(env: Env) -> None:
    """list_instances(status) returns exactly the instances whose current execution has it."""
    p, admin = env.provider, env.admin
    for name in ("run", "done", "bad"):
        start_instance(p, name)
    complete_instance(p, "done")
    fail_instance(p, "bad")
    assert admin.list_instances("Running") == ["run"]
    assert admin.list_instances("Completed") == ["done"]
    assert admin.list_instances("Failed") == ["bad"]
    assert admin.list_instances("ContinuedAsNew") == []


@check(C, admin=True)
def instance_info_describes_the_instance(env: Env) -> None:
    """get_instance_info reports name, version, execution, status, output and timestamps."""
    p, admin = env.provider, env.admin
    before = p.now_ms()
    start_instance(p, "i1")
    env.advance(5)
    complete_instance(p, "i1", output='"out"')
    info = admin.get_instance_info("i1")
    assert (info.instance_id, info.orchestration_name, info.orchestration_version) == (
        "i1",
        "TestOrch",
        "1.0.0",
    )
    assert (info.current_execution_id, info.status, info.output) == (1, "Completed", '"out"')
    assert before <= info.created_at_ms and info.updated_at_ms >= info.created_at_ms + 5_000
    assert info.parent_instance_id is None


@check(C, admin=True)
def unknown_instance_management_raises(env: Env) -> None:
    """get_instance_info, list_executions and get_execution_info raise InstanceNotFound for unknown ids."""
    admin = env.admin
    raises(InstanceNotFound, admin.get_instance_info, "nobody")
    raises(InstanceNotFound, admin.list_executions, "nobody")
    raises(InstanceNotFound, admin.get_execution_info, "nobody", 1)
    start_instance(env.provider, "i1")
    raises(InstanceNotFound, admin.get_execution_info, "i1", 2)
    assert admin.get_orchestration_stats("nobody") is None


@check(C, admin=True)
def new_instance_has_execution_one(env: Env) -> None:
    """A just-created instance lists execution 1, Running, with no events yet."""
    create(env.provider, "i1")
    assert env.admin.list_executions("i1") == [1]
    info = env.admin.get_execution_info("i1", 1)
    assert (info.status, info.output, info.completed_at_ms, info.event_count) == (
        "Running",
        None,
        None,
        0,
    )


@check(C, admin=True)
def execution_info_tracks_completion(env: Env) -> None:
    """A completed execution reports status, output, event count and a completion time after its start."""
    p = env.provider
    start_instance(p, "i1")
    env.advance(3)
    complete_instance(p, "i1", output='"r"')
    info = env.admin.get_execution_info("i1", 1)
    assert (info.status, info.output, info.event_count) == ("Completed", '"r"', 2)
    assert info.completed_at_ms is not None and info.completed_at_ms >= info.started_at_ms + 3_000


@check(C, admin=True)
def system_metrics_count_instances_executions_events(env: Env) -> None:
    """Metrics count instances by current status, executions and events."""
    p = env.provider
    start_instance(p, "run")
    start_instance(p, "done")
    complete_instance(p, "done")
    start_instance(p, "bad")
    fail_instance(p, "bad")
    m = env.admin.get_system_metrics()
    assert (m.total_instances, m.total_executions) == (3, 3)
    assert (m.running_instances, m.completed_instances, m.failed_instances) == (1, 1, 1)
    assert m.total_events == 5


@check(C, admin=True)
def queue_depths_count_unlocked_messages(env: Env) -> None:
    """Depths count waiting messages (delayed ones too) and leave out those held by a lock."""
    p, admin = env.provider, env.admin
    assert (admin.get_queue_depths().orchestrator_queue, admin.get_queue_depths().worker_queue) == (
        0,
        0,
    )
    start_instance(p, "i1", worker_items=[activity("i1", 2), activity("i1", 3)])
    poke(p, "i1")
    poke(p, "i1", delay_ms=60_000)
    depths = admin.get_queue_depths()
    assert (depths.orchestrator_queue, depths.worker_queue) == (2, 2)
    fetch(p)
    assert fetch_work(p) is not None
    depths = admin.get_queue_depths()
    assert (depths.orchestrator_queue, depths.worker_queue) == (1, 1)


@check(C, admin=True)
def orchestration_stats_measure_the_instance(env: Env) -> None:
    """Stats count history events and bytes, pending messages and KV keys and bytes."""
    p = env.provider
    kv = [history.KeyValueSet(event_id=2, timestamp_ms=0, key="k", value='"vvvv"', updated_at_ms=0)]
    start_instance(p, "i1", kv_ops=kv)
    small = env.admin.get_orchestration_stats("i1")
    assert small is not None
    assert (small.history_event_count, small.queue_pending_count) == (1, 0)
    assert (small.kv_user_key_count, small.kv_total_value_bytes) == (1, len('"vvvv"'))
    assert small.history_size_bytes > 0
    turn(p, "i1", events=[history.TimerCreated(event_id=2, timestamp_ms=0, fire_at_ms=1)])
    poke(p, "i1")
    poke(p, "i1")
    big = env.admin.get_orchestration_stats("i1")
    assert big is not None
    assert (big.history_event_count, big.queue_pending_count) == (2, 2)
    assert big.history_size_bytes > small.history_size_bytes


@check(C)
def failed_status_carries_the_error_details(env: Env) -> None:
    """A Failed instance reports the ErrorDetails it failed with, and no output."""
    p = env.provider
    start_instance(p, "i1")
    fail_instance(p, "i1")
    status = p.get_instance_status("i1")
    assert status is not None and status.status == "Failed"
    assert status.error == FAILURE and status.output is None
    assert codec.loads_error(codec.dumps_record(FAILURE)) == FAILURE


@check(C)
def completed_status_carries_the_output(env: Env) -> None:
    """A Completed instance reports its output JSON and no error."""
    p = env.provider
    start_instance(p, "i1")
    complete_instance(p, "i1", output='{"total": 3}')
    status = p.get_instance_status("i1")
    assert status is not None and (status.status, status.output, status.error) == (
        "Completed",
        '{"total": 3}',
        None,
    )


@check(C)
def provider_clock_moves_with_the_test_clock(env: Env) -> None:
    """now_ms() is epoch milliseconds and follows the injected clock."""
    p = env.provider
    first = p.now_ms()
    assert first > 1_600_000_000_000
    env.advance(LOCK)
    assert p.now_ms() - first >= LOCK * 1000
