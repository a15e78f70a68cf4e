"""Actions: the commands orchestration code emits, and how each matches its history event.

An action is emitted the moment code calls a ``ctx.schedule_*`` method. On the
first run it becomes a new history event; on replay it must match the event
history recorded at the same position. :data:`MATCHING` is the whole
determinism contract, as data: which event each action becomes and which
fields must be equal on replay.
"""

from __future__ import annotations

from typing import Union

import attrs

from durox.core import history

__all__ = [
    "MATCHING",
    "Action",
    "ClearKeyValue",
    "ClearKeyValues",
    "CreateTimer",
    "DequeueEvent",
    "RecordSystemCall",
    "ScheduleActivity",
    "SetCustomStatus",
    "SetKeyValue",
    "StartDetached",
    "StartSubOrchestration",
    "WaitExternal",
    "describe",
    "mismatch",
    "to_event",
]


@attrs.frozen(kw_only=True)
class ScheduleActivity:
    """Run activity ``name`` with ``input`` (JSON text), optionally on a session or tag."""

    name: str
    input: str
    session_id: str | None = None
    tag: str | None = None


@attrs.frozen(kw_only=True)
class CreateTimer:
    """Fire a timer at ``fire_at_ms``."""

    fire_at_ms: int


@attrs.frozen(kw_only=True)
class WaitExternal:
    """Wait for the next external event called ``name``."""

    name: str


@attrs.frozen(kw_only=True)
class DequeueEvent:
    """Take the next message of event queue ``name``."""

    name: str


@attrs.frozen(kw_only=True)
class StartSubOrchestration:
    """Start child orchestration ``name``; ``instance=None`` derives the id from the event id."""

    name: str
    input: str
    instance: str | None = None
    version: str | None = None


@attrs.frozen(kw_only=True)
class StartDetached:
    """Start orchestration ``name`` as ``instance``, fire-and-forget."""

    name: str
    instance: str
    input: str
    version: str | None = None


@attrs.frozen(kw_only=True)
class SetCustomStatus:
    """Set (or reset, with ``None``) the custom status."""

    status: str | None


@attrs.frozen(kw_only=True)
class SetKeyValue:
    """Set KV ``key`` to ``value`` (JSON text)."""

    key: str
    value: str
    updated_at_ms: int


@attrs.frozen(kw_only=True)
class ClearKeyValue:
    """Remove KV ``key``."""

    key: str


@attrs.frozen(kw_only=True)
class ClearKeyValues:
    """Remove every KV key."""


@attrs.frozen(kw_only=True)
class RecordSystemCall:
    """Record a value that must not change on replay (``new_guid``, ``utc_now``)."""

    op: str
    value: str


Action = Union[
    ScheduleActivity,
    CreateTimer,
    WaitExternal,
    DequeueEvent,
    StartSubOrchestration,
    StartDetached,
    SetCustomStatus,
    SetKeyValue,
    ClearKeyValue,
    ClearKeyValues,
    RecordSystemCall,
]
"""Any action that becomes a history event."""

MATCHING: dict[type, tuple[type, tuple[str, ...]]] = {
    # action type: (event type it becomes, fields that must be equal on replay)
    ScheduleActivity: (history.ActivityScheduled, ("name", "input", "session_id", "tag")),
    # Timer durations are positional: fire times come from the clock, which moves.
    CreateTimer: (history.TimerCreated, ()),
    WaitExternal: (history.ExternalSubscribed, ("name",)),
    DequeueEvent: (history.QueueSubscribed, ("name",)),
    # An explicit child id must match too; a derived one is compared in mismatch().
    StartSubOrchestration: (history.SubOrchestrationScheduled, ("name", "input")),
    StartDetached: (history.OrchestrationChained, ("name", "instance", "input")),
    # Status text may embed clock values; the call itself is what must recur.
    SetCustomStatus: (history.CustomStatusUpdated, ()),
    SetKeyValue: (history.KeyValueSet, ("key", "value")),
    ClearKeyValue: (history.KeyValueCleared, ("key",)),
    ClearKeyValues: (history.KeyValuesCleared, ()),
    RecordSystemCall: (history.SystemCallRecorded, ("op",)),
}

SCHEDULE_EVENTS: tuple[type, ...] = tuple(event_type for event_type, _ in MATCHING.values())
"""History events that record an action (and so are matched against emitted actions)."""


def mismatch(action: Action, event: history.Event) -> str | None:
    """Why ``action`` does not match the recorded ``event``, or ``None`` if it does."""
    event_type, fields = MATCHING[type(action)]
    if not isinstance(event, event_type):
        return f"kind differs: code produced {type(action).__name__}, history has {type(event).__name__}"
    for field in fields:
        produced, recorded = getattr(action, field), getattr(event, field)
        if produced != recorded:
            return (
                f"{field} differs: code produced {_short(produced)}, history has {_short(recorded)}"
            )
    if isinstance(action, StartSubOrchestration) and action.instance is not None:
        recorded_instance = getattr(event, "instance", None)
        if action.instance != recorded_instance:
            return f"instance differs: code produced {_short(action.instance)}, history has {_short(recorded_instance)}"
    return None


def to_event(
    action: Action, *, event_id: int, timestamp_ms: int, instance: str, execution_id: int
) -> history.Event:
    """The history event a new action becomes at position ``event_id``."""
    common = {"event_id": event_id, "timestamp_ms": timestamp_ms}
    if isinstance(action, ScheduleActivity):
        return history.ActivityScheduled(
            **common,
            name=action.name,
            input=action.input,
            session_id=action.session_id,
            tag=action.tag,
        )
    if isinstance(action, CreateTimer):
        return history.TimerCreated(**common, fire_at_ms=action.fire_at_ms)
    if isinstance(action, WaitExternal):
        return history.ExternalSubscribed(**common, name=action.name)
    if isinstance(action, DequeueEvent):
        return history.QueueSubscribed(**common, name=action.name)
    if isinstance(action, StartSubOrchestration):
        child = (
            action.instance
            if action.instance is not None
            else derived_child_id(instance, execution_id, event_id)
        )
        return history.SubOrchestrationScheduled(
            **common, name=action.name, instance=child, input=action.input, version=action.version
        )
    if isinstance(action, StartDetached):
        return history.OrchestrationChained(
            **common,
            name=action.name,
            instance=action.instance,
            input=action.input,
            version=action.version,
        )
    if isinstance(action, SetCustomStatus):
        return history.CustomStatusUpdated(**common, status=action.status)
    if isinstance(action, SetKeyValue):
        return history.KeyValueSet(
            **common, key=action.key, value=action.value, updated_at_ms=action.updated_at_ms
        )
    if isinstance(action, ClearKeyValue):
        return history.KeyValueCleared(**common, key=action.key)
    if isinstance(action, ClearKeyValues):
        return history.KeyValuesCleared(**common)
    return history.SystemCallRecorded(**common, op=action.op, value=action.value)


def derived_child_id(parent_instance: str, execution_id: int, event_id: int) -> str:
    """The id of a sub-orchestration started without an explicit id.

    Unique per parent execution and event, so a parent that continues as new
    never collides with the children of its earlier executions.

    >>> derived_child_id("order-7", 1, 5)
    'order-7::sub::1.5'
    """
    return f"{parent_instance}::sub::{execution_id}.{event_id}"


def describe(item: Action | history.Event) -> str:
    """A compact one-line rendering for nondeterminism listings."""
    fields = [
        f"{name}={_short(getattr(item, name))}"
        for name in attrs.fields_dict(type(item))
        if name not in ("event_id", "timestamp_ms", "updated_at_ms", "fire_at_ms")
        and getattr(item, name) is not None
    ]
    return f"{type(item).__name__}({', '.join(fields)})"


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
