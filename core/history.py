"""History events: the facts an execution records, in the order they happened.

Every event is a frozen value with an ``event_id`` (its 1-based position in
its execution's history) and a ``timestamp_ms`` (wall clock when the runtime
wrote it; informational only, never compared on replay). Completions and
cancel breadcrumbs carry ``source_id``: the ``event_id`` of the event that
scheduled the work they finish or cancel.

Payloads (inputs, results, event data) are stored as JSON text.

Import this module as a module (``from durox.core import history``): two event
names, ``ActivityFailed`` and ``SubOrchestrationFailed``, are also the names of
exceptions in :mod:`durox.errors`.
"""

from __future__ import annotations

from typing import Union

import attrs

from durox.core.errors import ErrorDetails

__all__ = [
    "TERMINAL_EVENTS",
    "ActivityCancelRequested",
    "ActivityCompleted",
    "ActivityFailed",
    "ActivityScheduled",
    "CustomStatusUpdated",
    "Event",
    "ExternalEvent",
    "ExternalSubscribed",
    "ExternalSubscriptionCancelled",
    "KeyValueCleared",
    "KeyValueSet",
    "KeyValuesCleared",
    "OrchestrationCancelRequested",
    "OrchestrationChained",
    "OrchestrationCompleted",
    "OrchestrationContinuedAsNew",
    "OrchestrationFailed",
    "OrchestrationStarted",
    "QueueEventDelivered",
    "QueueSubscribed",
    "QueueSubscriptionCancelled",
    "SubOrchestrationCancelRequested",
    "SubOrchestrationCompleted",
    "SubOrchestrationFailed",
    "SubOrchestrationScheduled",
    "SystemCallRecorded",
    "TimerCreated",
    "TimerFired",
    "is_terminal",
]


@attrs.frozen(kw_only=True)
class QueuedEvent:
    """A queue message carried from one execution to the next by continue_as_new."""

    name: str
    data: str


# -- orchestration lifecycle -------------------------------------------------


@attrs.frozen(kw_only=True)
class OrchestrationStarted:
    """First event of every execution: what runs, with which input, for whom.

    ``parent_*`` link a sub-orchestration to the execution that started it.
    ``carry_forward`` are queue messages left unconsumed by the previous
    execution (continue_as_new); ``initial_custom_status`` is the custom status
    the previous execution ended with.
    """

    event_id: int
    timestamp_ms: int
    name: str
    version: str
    input: str
    parent_instance: str | None = None
    parent_execution_id: int | None = None
    parent_id: int | None = None
    carry_forward: tuple[QueuedEvent, ...] = ()
    initial_custom_status: str | None = None


@attrs.frozen(kw_only=True)
class OrchestrationCompleted:
    """Terminal: the orchestration returned ``output`` (JSON text)."""

    event_id: int
    timestamp_ms: int
    output: str


@attrs.frozen(kw_only=True)
class OrchestrationFailed:
    """Terminal: the orchestration failed (exception, cancel, nondeterminism, poison)."""

    event_id: int
    timestamp_ms: int
    details: ErrorDetails


@attrs.frozen(kw_only=True)
class OrchestrationContinuedAsNew:
    """Terminal for this execution: a new execution starts with ``input``."""

    event_id: int
    timestamp_ms: int
    input: str
    version: str | None = None


@attrs.frozen(kw_only=True)
class OrchestrationCancelRequested:
    """A client (or a parent) asked to cancel the instance."""

    event_id: int
    timestamp_ms: int
    reason: str


@attrs.frozen(kw_only=True)
class OrchestrationChained:
    """A detached orchestration was started (fire-and-forget)."""

    event_id: int
    timestamp_ms: int
    name: str
    instance: str
    input: str
    version: str | None = None


# -- activities ---------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ActivityScheduled:
    """An activity was scheduled; ``session_id`` and ``tag`` route it to workers."""

    event_id: int
    timestamp_ms: int
    name: str
    input: str
    session_id: str | None = None
    tag: str | None = None


@attrs.frozen(kw_only=True)
class ActivityCompleted:
    """The activity scheduled at ``source_id`` returned ``result`` (JSON text)."""

    event_id: int
    timestamp_ms: int
    source_id: int
    result: str


@attrs.frozen(kw_only=True)
class ActivityFailed:
    """The activity scheduled at ``source_id`` failed."""

    event_id: int
    timestamp_ms: int
    source_id: int
    details: ErrorDetails
    attempt: int = 1


@attrs.frozen(kw_only=True)
class ActivityCancelRequested:
    """The orchestration gave up on the activity at ``source_id`` (select loser, terminal)."""

    event_id: int
    timestamp_ms: int
    source_id: int
    reason: str


# -- timers -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class TimerCreated:
    """A durable timer that fires at ``fire_at_ms`` (epoch milliseconds)."""

    event_id: int
    timestamp_ms: int
    fire_at_ms: int


@attrs.frozen(kw_only=True)
class TimerFired:
    """The timer created at ``source_id`` fired."""

    event_id: int
    timestamp_ms: int
    source_id: int
    fire_at_ms: int


# -- external events (positional) and event queues (FIFO) ----------------------


@attrs.frozen(kw_only=True)
class ExternalSubscribed:
    """The code started waiting for an external event called ``name``."""

    event_id: int
    timestamp_ms: int
    name: str


@attrs.frozen(kw_only=True)
class ExternalEvent:
    """An external event arrived (delivered only if a wait for it was pending)."""

    event_id: int
    timestamp_ms: int
    name: str
    data: str


@attrs.frozen(kw_only=True)
class ExternalSubscriptionCancelled:
    """The wait subscribed at ``source_id`` was abandoned."""

    event_id: int
    timestamp_ms: int
    source_id: int
    reason: str


@attrs.frozen(kw_only=True)
class QueueSubscribed:
    """The code started dequeuing from the event queue ``name``."""

    event_id: int
    timestamp_ms: int
    name: str


@attrs.frozen(kw_only=True)
class QueueEventDelivered:
    """A message arrived on the event queue ``name``; it waits until dequeued."""

    event_id: int
    timestamp_ms: int
    name: str
    data: str


@attrs.frozen(kw_only=True)
class QueueSubscriptionCancelled:
    """The dequeue subscribed at ``source_id`` was abandoned."""

    event_id: int
    timestamp_ms: int
    source_id: int
    reason: str


# -- sub-orchestrations ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class SubOrchestrationScheduled:
    """A child orchestration was started as ``instance``."""

    event_id: int
    timestamp_ms: int
    name: str
    instance: str
    input: str
    version: str | None = None


@attrs.frozen(kw_only=True)
class SubOrchestrationCompleted:
    """The child scheduled at ``source_id`` completed with ``result``."""

    event_id: int
    timestamp_ms: int
    source_id: int
    result: str


@attrs.frozen(kw_only=True)
class SubOrchestrationFailed:
    """The child scheduled at ``source_id`` failed."""

    event_id: int
    timestamp_ms: int
    source_id: int
    details: ErrorDetails


@attrs.frozen(kw_only=True)
class SubOrchestrationCancelRequested:
    """The parent gave up on the child scheduled at ``source_id``."""

    event_id: int
    timestamp_ms: int
    source_id: int
    reason: str


# -- status, KV and system calls -------------------------------------------------


@attrs.frozen(kw_only=True)
class CustomStatusUpdated:
    """The code set (or, with ``None``, reset) its custom status."""

    event_id: int
    timestamp_ms: int
    status: str | None


@attrs.frozen(kw_only=True)
class KeyValueSet:
    """The code set KV ``key`` to ``value`` (JSON text) at ``updated_at_ms``."""

    event_id: int
    timestamp_ms: int
    key: str
    value: str
    updated_at_ms: int


@attrs.frozen(kw_only=True)
class KeyValueCleared:
    """The code removed KV ``key``."""

    event_id: int
    timestamp_ms: int
    key: str


@attrs.frozen(kw_only=True)
class KeyValuesCleared:
    """The code removed every KV key of the instance."""

    event_id: int
    timestamp_ms: int


@attrs.frozen(kw_only=True)
class SystemCallRecorded:
    """A value that must not change on replay: ``new_guid`` or ``utc_now``.

    ``value`` is the GUID string, or the time in epoch milliseconds as text.
    """

    event_id: int
    timestamp_ms: int
    op: str
    value: str


Event = Union[
    OrchestrationStarted,
    OrchestrationCompleted,
    OrchestrationFailed,
    OrchestrationContinuedAsNew,
    OrchestrationCancelRequested,
    OrchestrationChained,
    ActivityScheduled,
    ActivityCompleted,
    ActivityFailed,
    ActivityCancelRequested,
    TimerCreated,
    TimerFired,
    ExternalSubscribed,
    ExternalEvent,
    ExternalSubscriptionCancelled,
    QueueSubscribed,
    QueueEventDelivered,
    QueueSubscriptionCancelled,
    SubOrchestrationScheduled,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    SubOrchestrationCancelRequested,
    CustomStatusUpdated,
    KeyValueSet,
    KeyValueCleared,
    KeyValuesCleared,
    SystemCallRecorded,
]
"""Any history event."""

EVENT_TYPES: tuple[type[Event], ...] = Event.__args__  # type: ignore[attr-defined]

TERMINAL_EVENTS = (OrchestrationCompleted, OrchestrationFailed, OrchestrationContinuedAsNew)


def is_terminal(event: Event) -> bool:
    """True for the events that end an execution."""
    return isinstance(event, TERMINAL_EVENTS)
