"""The same workload yields the same history on all three drivers (and with the cache on or off).

Timestamps, timer fire times, KV update times and recorded GUID/clock values
differ from run to run; everything else — every event, its id, order,
payloads and links — must be identical.
"""

from __future__ import annotations

import itertools
import time

import attrs
import pytest

from durox import ActivityFailed, Registry

from .conftest import CACHES, DRIVERS, make_harness

_VOLATILE = {"timestamp_ms", "fire_at_ms", "updated_at_ms"}


def _registry() -> Registry:
    registry = Registry()

    @registry.activity("Price")
    def price(ctx, item):
        return {"item": item, "price": len(item) * 10}

    @registry.activity("Charge")
    def charge(ctx, total):
        if total > 1000:
            raise ValueError("card declined")
        return f"receipt-{total}"

    @registry.orchestration("Child")
    def child(ctx, text):
        return (yield ctx.schedule_activity("Price", text))

    @registry.orchestration("Workload")
    def workload(ctx, items):
        guid = yield ctx.new_guid()
        prices = yield ctx.join([ctx.schedule_activity("Price", item) for item in items])
        total = sum(p["price"] for p in prices)
        ctx.set_custom_status({"total": total})
        ctx.set_kv_value("total", total)
        yield ctx.schedule_timer(0.02)
        sub = yield ctx.schedule_sub_orchestration("Child", "gift")
        approval = yield ctx.schedule_wait("Approve")
        try:
            receipt = yield ctx.schedule_activity("Charge", total * approval["factor"])
        except ActivityFailed as failure:
            receipt = f"failed: {failure.message}"
        index, _ = yield ctx.select(ctx.schedule_timer(0.02), ctx.schedule_wait("Never"))
        return {"receipt": receipt, "sub": sub, "index": index, "guid_len": len(guid)}

    return registry


def _normalize(event):
    data = attrs.asdict(event)
    for key in _VOLATILE:
        data.pop(key, None)
    if type(event).__name__ == "SystemCallRecorded":
        data.pop("value")
    return (type(event).__name__, data)


def _run(driver: str, cache: str, tmp_path) -> dict[str, list]:
    harness = make_harness(driver, "memory", cache, tmp_path)
    try:
        # One slot each: completions then arrive in schedule order on every driver.
        with harness.runtime(_registry(), orchestration_concurrency=1, worker_concurrency=1):
            client = harness.client
            for instance, factor in (("ok", 1), ("declined", 100)):
                client.start_orchestration(instance, "Workload", ["apple", "kiwi", "fig"])
                deadline = time.monotonic() + 10
                while "ExternalSubscribed" not in [
                    type(e).__name__ for e in client.read_execution_history(instance)
                ]:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                client.raise_event(instance, "Approve", {"factor": factor})
                client.wait_for_orchestration(instance, timeout=10)
            histories = {}
            for instance in client.list_all_instances():
                histories[instance] = [
                    _normalize(e) for e in client.read_execution_history(instance)
                ]
            return histories
    finally:
        harness.close()


def test_same_workload_same_history_on_every_driver(tmp_path):
    runs = {
        (driver, cache): _run(driver, cache, tmp_path / f"{driver}-{cache}")
        for driver, cache in itertools.product(DRIVERS, CACHES)
    }
    reference_key = ("threads", "cache")
    reference = runs[reference_key]
    assert len(reference) == 4  # two workloads and their sub-orchestrations
    for key, histories in runs.items():
        assert histories.keys() == reference.keys(), key
        for instance, events in histories.items():
            if events != reference[instance]:
                for position, (mine, theirs) in enumerate(zip(events, reference[instance])):
                    if mine != theirs:
                        pytest.fail(
                            f"{key} {instance} differs at event {position}: {mine} != {theirs}"
                        )
                pytest.fail(f"{key} {instance}: {len(events)} events vs {len(reference[instance])}")
    ok_kinds = [kind for kind, _ in reference["ok"]]
    assert ok_kinds[0] == "OrchestrationStarted" and ok_kinds[-1] == "OrchestrationCompleted"
    assert "SubOrchestrationCompleted" in ok_kinds and "ActivityFailed" in [
        k for k, _ in reference["declined"]
    ]
