"""The pure decisions around running one activity (the worker side of a turn).

A driver fetches an :class:`~durox.core.items.ActivityItem`, asks
:func:`prepare_activity` what to do with it, carries that out (calls the
function, reads a KV value, abandons, or acks a failure) and turns what the
function returned or raised into an :class:`ActivityResult` with
:func:`activity_returned` / :func:`activity_raised`.
"""

from __future__ import annotations

from typing import Any, Union

import attrs

from durox.core import codec
from durox.core.errors import ErrorDetails, PayloadError
from durox.core.items import ActivityItem
from durox.core.messages import ActivityResult, ExecuteActivity
from durox.core.options import RuntimeOptions, unregistered_backoff
from durox.core.registry import SYSTEM_PREFIX, ActivityDefinition, Registry

__all__ = [
    "SYSTEM_GET_KV_VALUE",
    "AbandonActivity",
    "ActivityPlan",
    "FinishActivity",
    "ReadKvValue",
    "RunActivity",
    "activity_raised",
    "activity_returned",
    "prepare_activity",
]

SYSTEM_GET_KV_VALUE = SYSTEM_PREFIX + "get_kv_value"
"""System activity behind ``ctx.get_kv_value_from_instance``: input ``{"instance_id", "key"}``."""


@attrs.frozen(kw_only=True)
class RunActivity:
    """Call ``definition.fn(ctx, input)``."""

    definition: ActivityDefinition
    input: Any


@attrs.frozen(kw_only=True)
class ReadKvValue:
    """Read KV ``key`` of ``instance`` from the provider; the value (JSON text or None) is the result."""

    instance: str
    key: str


@attrs.frozen(kw_only=True)
class AbandonActivity:
    """Put the item back, visible again after ``delay_ms`` (its handler is not registered here)."""

    delay_ms: int
    reason: str


@attrs.frozen(kw_only=True)
class FinishActivity:
    """Ack the item at once with ``result`` (poison, or an input the function cannot take)."""

    result: ActivityResult
    poisoned: bool = False


ActivityPlan = Union[RunActivity, ReadKvValue, AbandonActivity, FinishActivity]


def prepare_activity(
    item: ActivityItem, registry: Registry, options: RuntimeOptions
) -> ActivityPlan:
    """Decide what to do with a fetched activity."""
    message = item.message
    if item.attempt_count > options.max_attempts:
        details = ErrorDetails(
            category="infrastructure",
            kind="poison",
            message=(
                f"activity {message.name}#{message.id} exceeded {item.attempt_count - 1} attempts "
                f"(max {options.max_attempts})"
            ),
        )
        return FinishActivity(result=_failed(message, details, item.attempt_count), poisoned=True)
    if message.name == SYSTEM_GET_KV_VALUE:
        request = codec.decode_payload(message.input)
        return ReadKvValue(instance=str(request["instance_id"]), key=str(request["key"]))
    definition = registry.get_activity(message.name)
    if definition is None:
        delay = unregistered_backoff(
            item.attempt_count,
            base=options.unregistered_backoff_base,
            maximum=options.unregistered_backoff_max,
        )
        return AbandonActivity(
            delay_ms=round(delay * 1000),
            reason=f"activity {message.name!r} is not registered in this runtime",
        )
    try:
        value = codec.decode_payload(message.input, definition.input_type)
    except PayloadError as exc:
        details = ErrorDetails(
            category="application",
            kind="activity_failed",
            message=f"bad input: {exc}",
            error_type="PayloadError",
        )
        return FinishActivity(result=_failed(message, details, item.attempt_count))
    return RunActivity(definition=definition, input=value)


def activity_returned(
    message: ExecuteActivity,
    value: object,
    *,
    attempt: int = 1,
    max_payload_bytes: int = codec.DEFAULT_MAX_PAYLOAD_BYTES,
) -> ActivityResult:
    """The result to ack for a function that returned ``value`` (a failure if it cannot be stored)."""
    try:
        text = codec.encode_payload(
            value, max_bytes=max_payload_bytes, what=f"result of activity {message.name!r}"
        )
    except PayloadError as exc:
        return activity_raised(message, exc, attempt=attempt)
    return ActivityResult(
        instance=message.instance,
        execution_id=message.execution_id,
        id=message.id,
        result=text,
        attempt=attempt,
    )


def activity_raised(
    message: ExecuteActivity, exc: BaseException, *, attempt: int = 1
) -> ActivityResult:
    """The result to ack for a function that raised ``exc``."""
    details = ErrorDetails(
        category="application",
        kind="activity_failed",
        message=str(exc) or type(exc).__name__,
        error_type=type(exc).__name__,
    )
    return _failed(message, details, attempt)


def _failed(message: ExecuteActivity, details: ErrorDetails, attempt: int) -> ActivityResult:
    return ActivityResult(
        instance=message.instance,
        execution_id=message.execution_id,
        id=message.id,
        error=details,
        attempt=attempt,
    )
