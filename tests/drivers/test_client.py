"""Every Client method, on every driver × provider × cache."""

from __future__ import annotations

import time

import attrs
import pytest

from durox import (
    Completed,
    Failed,
    InstanceAlreadyExists,
    InstanceNotFound,
    InvalidArgument,
    NotFound,
    PayloadError,
    Registry,
    Running,
    WaitTimeout,
)
from durox.core import history

TIMEOUT = 15


@attrs.frozen
class Order:
    id: str
    qty: int


def _registry():
    registry = Registry()

    @registry.activity("Echo")
    def echo(ctx, value):
        return value

    @registry.orchestration("Echo")
    def echo_orch(ctx, order: Order):
        value = yield ctx.schedule_activity("Echo", order)
        return value

    @registry.orchestration("Waiter")
    def waiter(ctx, _):
        ctx.set_custom_status("waiting")
        return (yield ctx.schedule_wait("go"))

    @registry.orchestration("Looper")
    def looper(ctx, n):
        if n < 3:
            return (yield ctx.continue_as_new(n + 1))
        return n

    return registry


def test_start_status_and_wait(harness):
    client = harness.client
    with harness.runtime(_registry()):
        client.start_orchestration("order", "Echo", Order("o-1", 2))
        status = client.wait_for_orchestration("order", timeout=TIMEOUT)
        assert status == Completed({"id": "o-1", "qty": 2})
        assert client.get_orchestration_status("order") == status
        assert isinstance(client.get_orchestration_status("nobody"), NotFound)
        assert client.get_orchestration_status("nobody").status == "NotFound"
        with pytest.raises(InstanceAlreadyExists):
            client.start_orchestration("order", "Echo", Order("o-2", 1))


def test_bad_input_is_refused_and_writes_nothing(harness):
    client = harness.client
    with pytest.raises(InvalidArgument):
        client.start_orchestration("", "Echo")
    with pytest.raises(InvalidArgument):
        client.start_orchestration("a\nb", "Echo")
    with pytest.raises(InvalidArgument):
        client.start_orchestration("x" * 257, "Echo")
    with pytest.raises(InvalidArgument):
        client.start_orchestration("ok", "Echo", version="1.0")
    with pytest.raises(PayloadError):
        client.start_orchestration("ok", "Echo", {"bad": object()})
    with pytest.raises(PayloadError):
        client.start_orchestration("ok", "Echo", "x" * (1024 * 1024 + 1))
    assert isinstance(client.get_orchestration_status("ok"), NotFound)
    with pytest.raises(InstanceNotFound):
        client.raise_event("nobody", "go", 1)
    with pytest.raises(InstanceNotFound):
        client.enqueue_event("nobody", "q", 1)
    with pytest.raises(InstanceNotFound):
        client.cancel_instance("nobody", "why")
    with pytest.raises(InstanceNotFound):
        client.wait_for_orchestration("nobody", timeout=1)
    with pytest.raises(InvalidArgument):
        client.wait_for_orchestration("nobody", timeout=-1)
    with pytest.raises(InvalidArgument):
        client.list_instances_by_status("Sleeping")


def test_wait_timeout_and_status_change(harness):
    client = harness.client
    with harness.runtime(_registry()):
        client.start_orchestration("w", "Waiter")
        started = time.monotonic()
        with pytest.raises(WaitTimeout):
            client.wait_for_orchestration("w", timeout=0.2)
        assert time.monotonic() - started < 5
        status = client.wait_for_status_change("w", 0, timeout=TIMEOUT)
        assert isinstance(status, Running)
        assert status.custom_status == "waiting" and status.custom_status_version == 1
        with pytest.raises(WaitTimeout):
            client.wait_for_status_change("w", 1, timeout=0.1)
        with pytest.raises(WaitTimeout):
            client.wait_for_kv_value("w", "never", timeout=0.1)
        _wait_for_subscription(client, "w")
        client.raise_event("w", "go", {"x": 1})
        done = client.wait_for_orchestration("w", timeout=TIMEOUT)
    assert done.output == {"x": 1}
    assert done.custom_status == "waiting"


def test_cancel_instance(harness):
    client = harness.client
    with harness.runtime(_registry()):
        client.start_orchestration("c", "Waiter")
        _wait_for_subscription(client, "c")
        client.cancel_instance("c", "user asked")
        status = client.wait_for_orchestration("c", timeout=TIMEOUT)
    assert isinstance(status, Failed)
    assert status.details.kind == "cancelled"
    assert "user asked" in status.details.display_message()


def test_management(harness):
    client = harness.client
    assert client.has_management_capability()
    with harness.runtime(_registry()):
        client.start_orchestration("m1", "Echo", Order("a", 1))
        client.start_orchestration("m2", "Looper", 0)
        client.start_orchestration("m3", "Waiter")
        client.wait_for_orchestration("m1", timeout=TIMEOUT)
        client.wait_for_orchestration("m2", timeout=TIMEOUT)
        _wait_for_subscription(client, "m3")

        assert set(client.list_all_instances()) == {"m1", "m2", "m3"}
        assert set(client.list_instances_by_status("Completed")) == {"m1", "m2"}
        assert client.list_instances_by_status("Running") == ["m3"]
        info = client.get_instance_info("m2")
        assert info.orchestration_name == "Looper" and info.current_execution_id == 4
        assert info.status == "Completed"
        assert client.list_executions("m2") == [1, 2, 3, 4]
        execution = client.get_execution_info("m2", 1)
        assert execution.status == "ContinuedAsNew" and execution.event_count > 0
        first = client.read_execution_history("m2", 1)
        assert isinstance(first[0], history.OrchestrationStarted)
        assert isinstance(first[-1], history.OrchestrationContinuedAsNew)
        current = client.read_execution_history("m2")
        assert isinstance(current[-1], history.OrchestrationCompleted)
        metrics = client.get_system_metrics()
        assert metrics.total_instances == 3 and metrics.running_instances == 1
        assert metrics.completed_instances == 2
        depths = client.get_queue_depths()
        assert depths.orchestrator_queue >= 0 and depths.worker_queue >= 0
        stats = client.get_orchestration_stats("m1")
        assert stats.history_event_count == len(client.read_execution_history("m1"))

        with pytest.raises(InstanceNotFound):
            client.get_instance_info("nobody")
        with pytest.raises(InstanceNotFound):
            client.read_execution_history("nobody")
        with pytest.raises(InstanceNotFound):
            client.get_orchestration_stats("nobody")

        pruned = client.prune_executions("m2", keep_last=1)
        assert pruned.executions_deleted == 3
        assert client.list_executions("m2") == [4]

        with pytest.raises(InvalidArgument):
            client.delete_instance("m3")  # running: needs force
        deleted = client.delete_instance("m1")
        assert deleted.instances_deleted == 1
        assert isinstance(client.get_orchestration_status("m1"), NotFound)
        client.delete_instance("m3", force=True)
        assert set(client.list_all_instances()) == {"m2"}


def test_activity_context_client_starts_orchestrations(harness):
    registry = Registry()

    @registry.activity("Spawn")
    def spawn(ctx, child_id):
        ctx.client.start_orchestration(child_id, "Leaf", ctx.instance_id)
        return ctx.activity_name

    @registry.orchestration("Leaf")
    def leaf(ctx, parent):
        return f"started by {parent}"
        yield

    @registry.orchestration("Spawner")
    def spawner(ctx, child_id):
        return (yield ctx.schedule_activity("Spawn", child_id))

    with harness.runtime(registry):
        harness.client.start_orchestration("spawner", "Spawner", "spawned")
        assert harness.client.wait_for_orchestration("spawner", timeout=TIMEOUT).output == "Spawn"
        child = harness.client.wait_for_orchestration("spawned", timeout=TIMEOUT)
    assert child.output == "started by spawner"


def _wait_for_subscription(client, instance):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        kinds = [type(e).__name__ for e in client.read_execution_history(instance)]
        if "ExternalSubscribed" in kinds:
            return
        time.sleep(0.01)
    pytest.fail(f"{instance} never subscribed")
