"""Terse builders for history events, messages and turns, so replay tests read like histories.

Every event builder takes its ``event_id`` first (and ``source_id`` second for
completions) and fills ``timestamp_ms`` with a fixed value: timestamps are
informational and never compared on replay.

>>> [type(e).__name__ for e in (started(1, "Hello", input='"x"'), scheduled(2, "Greet", '"x"'))]
['OrchestrationStarted', 'ActivityScheduled']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from durox.core import history, messages
from durox.core.errors import ErrorDetails
from durox.core.items import KvEntry
from durox.core.replay import ReplayState, TurnResult, run_turn

INSTANCE = "inst"
"""The instance id every builder and :func:`turn` uses unless told otherwise."""

T0 = 1_000_000
"""The ``now_ms`` of a first turn; later turns in tests usually pass larger values."""

TS = 0
"""Timestamp written on built events (never compared on replay)."""


def error(message: str = "boom", error_type: str | None = "ValueError") -> ErrorDetails:
    """Error details as an activity that raised ``error_type(message)`` records them."""
    return ErrorDetails(
        category="application", kind="activity_failed", message=message, error_type=error_type
    )


# -- events --------------------------------------------------------------------------


def started(
    event_id: int = 1,
    name: str = "orchestration",
    *,
    input: str = "null",
    version: str = "1.0.0",
    parent_instance: str | None = None,
    parent_execution_id: int | None = None,
    parent_id: int | None = None,
    carry_forward: Sequence[tuple[str, str]] = (),
    initial_custom_status: str | None = None,
) -> history.OrchestrationStarted:
    """``OrchestrationStarted``; ``carry_forward`` as ``(queue, data)`` pairs."""
    return history.OrchestrationStarted(
        event_id=event_id,
        timestamp_ms=TS,
        name=name,
        version=version,
        input=input,
        parent_instance=parent_instance,
        parent_execution_id=parent_execution_id,
        parent_id=parent_id,
        carry_forward=tuple(history.QueuedEvent(name=n, data=d) for n, d in carry_forward),
        initial_custom_status=initial_custom_status,
    )


def scheduled(
    event_id: int,
    name: str,
    input: str = "null",
    *,
    session_id: str | None = None,
    tag: str | None = None,
) -> history.ActivityScheduled:
    """``ActivityScheduled``."""
    return history.ActivityScheduled(
        event_id=event_id, timestamp_ms=TS, name=name, input=input, session_id=session_id, tag=tag
    )


def completed(event_id: int, source_id: int, result: str = "null") -> history.ActivityCompleted:
    """``ActivityCompleted`` for the activity scheduled at ``source_id``."""
    return history.ActivityCompleted(
        event_id=event_id, timestamp_ms=TS, source_id=source_id, result=result
    )


def failed(
    event_id: int,
    source_id: int,
    message: str = "boom",
    error_type: str | None = "ValueError",
    *,
    attempt: int = 1,
) -> history.ActivityFailed:
    """``ActivityFailed`` for the activity scheduled at ``source_id``."""
    return history.ActivityFailed(
        event_id=event_id,
        timestamp_ms=TS,
        source_id=source_id,
        details=error(message, error_type),
        attempt=attempt,
    )


def activity_cancelled(
    event_id: int, source_id: int, reason: str = "select_loser"
) -> history.ActivityCancelRequested:
    """``ActivityCancelRequested`` breadcrumb."""
    return history.ActivityCancelRequested(
        event_id=event_id, timestamp_ms=TS, source_id=source_id, reason=reason
    )


def timer(event_id: int, fire_at_ms: int) -> history.TimerCreated:
    """``TimerCreated``."""
    return history.TimerCreated(event_id=event_id, timestamp_ms=TS, fire_at_ms=fire_at_ms)


def fired(event_id: int, source_id: int, fire_at_ms: int = 0) -> history.TimerFired:
    """``TimerFired`` for the timer created at ``source_id``."""
    return history.TimerFired(
        event_id=event_id, timestamp_ms=TS, source_id=source_id, fire_at_ms=fire_at_ms
    )


def subscribed(event_id: int, name: str) -> history.ExternalSubscribed:
    """``ExternalSubscribed`` (a ``schedule_wait``)."""
    return history.ExternalSubscribed(event_id=event_id, timestamp_ms=TS, name=name)


def raised(event_id: int, name: str, data: str = "null") -> history.ExternalEvent:
    """``ExternalEvent`` (a raise that reached the history)."""
    return history.ExternalEvent(event_id=event_id, timestamp_ms=TS, name=name, data=data)


def wait_cancelled(
    event_id: int, source_id: int, reason: str = "select_loser"
) -> history.ExternalSubscriptionCancelled:
    """``ExternalSubscriptionCancelled`` breadcrumb."""
    return history.ExternalSubscriptionCancelled(
        event_id=event_id, timestamp_ms=TS, source_id=source_id, reason=reason
    )


def dequeued(event_id: int, name: str) -> history.QueueSubscribed:
    """``QueueSubscribed`` (a ``dequeue_event``)."""
    return history.QueueSubscribed(event_id=event_id, timestamp_ms=TS, name=name)


def delivered(event_id: int, name: str, data: str = "null") -> history.QueueEventDelivered:
    """``QueueEventDelivered``."""
    return history.QueueEventDelivered(event_id=event_id, timestamp_ms=TS, name=name, data=data)


def sub_scheduled(
    event_id: int, name: str, instance: str, input: str = "null", *, version: str | None = None
) -> history.SubOrchestrationScheduled:
    """``SubOrchestrationScheduled``."""
    return history.SubOrchestrationScheduled(
        event_id=event_id,
        timestamp_ms=TS,
        name=name,
        instance=instance,
        input=input,
        version=version,
    )


def sub_completed(
    event_id: int, source_id: int, result: str = "null"
) -> history.SubOrchestrationCompleted:
    """``SubOrchestrationCompleted``."""
    return history.SubOrchestrationCompleted(
        event_id=event_id, timestamp_ms=TS, source_id=source_id, result=result
    )


def sub_failed(
    event_id: int, source_id: int, message: str = "child broke", error_type: str | None = None
) -> history.SubOrchestrationFailed:
    """``SubOrchestrationFailed``."""
    return history.SubOrchestrationFailed(
        event_id=event_id,
        timestamp_ms=TS,
        source_id=source_id,
        details=ErrorDetails(
            category="application",
            kind="orchestration_failed",
            message=message,
            error_type=error_type,
        ),
    )


def cancel_requested(event_id: int, reason: str = "stop") -> history.OrchestrationCancelRequested:
    """``OrchestrationCancelRequested``."""
    return history.OrchestrationCancelRequested(event_id=event_id, timestamp_ms=TS, reason=reason)


def status_set(event_id: int, status: str | None) -> history.CustomStatusUpdated:
    """``CustomStatusUpdated``."""
    return history.CustomStatusUpdated(event_id=event_id, timestamp_ms=TS, status=status)


def kv_set(event_id: int, key: str, value: str, updated_at_ms: int = T0) -> history.KeyValueSet:
    """``KeyValueSet``."""
    return history.KeyValueSet(
        event_id=event_id, timestamp_ms=TS, key=key, value=value, updated_at_ms=updated_at_ms
    )


def kv_cleared(event_id: int, key: str) -> history.KeyValueCleared:
    """``KeyValueCleared``."""
    return history.KeyValueCleared(event_id=event_id, timestamp_ms=TS, key=key)


def syscall(event_id: int, op: str, value: str) -> history.SystemCallRecorded:
    """``SystemCallRecorded``."""
    return history.SystemCallRecorded(event_id=event_id, timestamp_ms=TS, op=op, value=value)


def chained(
    event_id: int, name: str, instance: str, input: str = "null"
) -> history.OrchestrationChained:
    """``OrchestrationChained`` (a detached start)."""
    return history.OrchestrationChained(
        event_id=event_id, timestamp_ms=TS, name=name, instance=instance, input=input
    )


def orch_completed(event_id: int, output: str = "null") -> history.OrchestrationCompleted:
    """``OrchestrationCompleted``."""
    return history.OrchestrationCompleted(event_id=event_id, timestamp_ms=TS, output=output)


def orch_failed(event_id: int, message: str = "boom") -> history.OrchestrationFailed:
    """``OrchestrationFailed``."""
    return history.OrchestrationFailed(
        event_id=event_id,
        timestamp_ms=TS,
        details=ErrorDetails(category="application", kind="orchestration_failed", message=message),
    )


def continued(event_id: int, input: str = "null") -> history.OrchestrationContinuedAsNew:
    """``OrchestrationContinuedAsNew``."""
    return history.OrchestrationContinuedAsNew(event_id=event_id, timestamp_ms=TS, input=input)


# -- messages -------------------------------------------------------------------------


def act_done(
    id: int, result: str = "null", *, execution_id: int = 1, instance: str = INSTANCE
) -> messages.ActivityResult:
    """A successful ``ActivityResult`` for the activity scheduled at ``id``."""
    return messages.ActivityResult(
        instance=instance, execution_id=execution_id, id=id, result=result
    )


def act_failed(
    id: int,
    message: str = "boom",
    error_type: str | None = "ValueError",
    *,
    attempt: int = 1,
    execution_id: int = 1,
    instance: str = INSTANCE,
) -> messages.ActivityResult:
    """A failed ``ActivityResult``."""
    return messages.ActivityResult(
        instance=instance,
        execution_id=execution_id,
        id=id,
        error=error(message, error_type),
        attempt=attempt,
    )


def timer_due(
    id: int, fire_at_ms: int = 0, *, execution_id: int = 1, instance: str = INSTANCE
) -> messages.TimerDue:
    """``TimerDue`` for the timer created at ``id``."""
    return messages.TimerDue(
        instance=instance, execution_id=execution_id, id=id, fire_at_ms=fire_at_ms
    )


def event(name: str, data: str = "null", *, instance: str = INSTANCE) -> messages.ExternalRaised:
    """``ExternalRaised``."""
    return messages.ExternalRaised(instance=instance, name=name, data=data)


def enqueue(name: str, data: str = "null", *, instance: str = INSTANCE) -> messages.QueueMessage:
    """``QueueMessage``."""
    return messages.QueueMessage(instance=instance, name=name, data=data)


def child_done(
    id: int,
    result: str = "null",
    *,
    child: str = "child",
    execution_id: int = 1,
    instance: str = INSTANCE,
) -> messages.SubOrchestrationResult:
    """A successful ``SubOrchestrationResult``."""
    return messages.SubOrchestrationResult(
        instance=instance, execution_id=execution_id, id=id, child_instance=child, result=result
    )


def child_failed(
    id: int,
    message: str = "child broke",
    *,
    child: str = "child",
    execution_id: int = 1,
    instance: str = INSTANCE,
) -> messages.SubOrchestrationResult:
    """A failed ``SubOrchestrationResult``."""
    return messages.SubOrchestrationResult(
        instance=instance,
        execution_id=execution_id,
        id=id,
        child_instance=child,
        error=ErrorDetails(category="application", kind="orchestration_failed", message=message),
    )


def cancel(reason: str = "stop", *, instance: str = INSTANCE) -> messages.CancelInstance:
    """``CancelInstance``."""
    return messages.CancelInstance(instance=instance, reason=reason)


# -- turns ------------------------------------------------------------------------------


def turn(
    fn: Callable[..., Any],
    events: Sequence[history.Event] = (),
    msgs: Sequence[messages.OrchestratorMessage] = (),
    *,
    input: Any = None,
    now_ms: int = T0,
    instance: str = INSTANCE,
    execution_id: int = 1,
    state: ReplayState | None = None,
    kv: dict[str, KvEntry] | None = None,
    started_event: history.OrchestrationStarted | None = None,
    entropy: bytes = b"seed",
    max_payload_bytes: int | None = None,
) -> TurnResult:
    """:func:`run_turn` with test defaults (instance ``inst``, ``now_ms`` :data:`T0`)."""
    extra: dict[str, Any] = {}
    if max_payload_bytes is not None:
        extra["max_payload_bytes"] = max_payload_bytes
    return run_turn(
        list(events),
        list(msgs),
        fn,
        instance=instance,
        now_ms=now_ms,
        execution_id=execution_id,
        entropy=entropy,
        started=started_event,
        input=input,
        kv_snapshot=kv,
        state=state,
        **extra,
    )


def kinds(events: Sequence[history.Event]) -> list[str]:
    """Event class names, for compact assertions."""
    return [type(e).__name__ for e in events]


def ids(events: Sequence[history.Event]) -> list[int]:
    """Event ids."""
    return [e.event_id for e in events]
