"""new_guid and utc_now: recorded the first time, read back on every replay."""

from __future__ import annotations

import uuid
from collections.abc import Generator
from datetime import datetime, timezone
from typing import Any

from durox.core import history, outcome
from tests.core.builders import T0, kinds, started, syscall, timer, timer_due, turn

Gen = Generator[Any, Any, Any]


def orch(ctx: Any, _: Any) -> Gen:
    guid = yield ctx.new_guid()
    now = yield ctx.utc_now()
    yield ctx.schedule_timer(1)
    return [guid, now.isoformat()]


def test_values_are_recorded_in_call_order() -> None:
    result = turn(orch, now_ms=T0)
    assert kinds(result.new_events) == [
        "OrchestrationStarted",
        "SystemCallRecorded",
        "SystemCallRecorded",
        "TimerCreated",
    ]
    guid_event, now_event = result.new_events[1], result.new_events[2]
    assert isinstance(guid_event, history.SystemCallRecorded)
    assert isinstance(now_event, history.SystemCallRecorded)
    assert guid_event.op == "new_guid" and uuid.UUID(guid_event.value).version == 4
    assert (now_event.op, now_event.value) == ("utc_now", str(T0))


def test_replay_reads_recorded_values_back() -> None:
    h = [
        started(1),
        syscall(2, "new_guid", "00000000-0000-4000-8000-000000000001"),
        syscall(3, "utc_now", "86400000"),
        timer(4, 9),
    ]
    result = turn(orch, h, [timer_due(4)], now_ms=T0 * 7, entropy=b"other")
    assert result.outcome == outcome.Complete(
        output='["00000000-0000-4000-8000-000000000001","1970-01-02T00:00:00+00:00"]'
    )


def test_guids_depend_on_entropy_and_differ_per_call() -> None:
    def two(ctx: Any, _: Any) -> Gen:
        return [(yield ctx.new_guid()), (yield ctx.new_guid())]

    a = turn(two, entropy=b"one")
    b = turn(two, entropy=b"two")
    assert isinstance(a.outcome, outcome.Complete) and isinstance(b.outcome, outcome.Complete)
    first, second = a.outcome.output, b.outcome.output
    assert first != second
    import json

    guids = json.loads(first)
    assert len(set(guids)) == 2
    # same entropy, same values: the only randomness is what the driver passes in
    assert turn(two, entropy=b"one").outcome == a.outcome


def test_utc_now_is_a_timezone_aware_datetime() -> None:
    seen: list[datetime] = []

    def grab(ctx: Any, _: Any) -> Gen:
        seen.append((yield ctx.utc_now()))

    turn(grab, now_ms=1_700_000_000_123)
    assert seen == [datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc)]


def test_swapping_the_calls_is_nondeterminism() -> None:
    def swapped(ctx: Any, _: Any) -> Gen:
        yield ctx.utc_now()
        yield ctx.new_guid()

    h = [started(1), syscall(2, "new_guid", "g"), syscall(3, "utc_now", "5")]
    result = turn(swapped, h)
    assert isinstance(result.outcome, outcome.Fail)
    assert (
        "op differs: code produced 'utc_now', history has 'new_guid'"
        in result.outcome.details.message
    )
