"""Checks of what callers hand a provider, shared by every provider.

Each public entry point of a provider validates its arguments here before it
writes anything, so all providers reject the same input with the same typed
error (:class:`~durox.errors.InvalidArgument` for a wrong shape or type,
:class:`~durox.errors.PayloadError` for JSON text that is malformed or too
large). Per-provider limits, such as the payload size, are arguments.

Also here: the small row-to-record conversions and the lock-token generator
that the providers would otherwise each repeat. Nothing in this module knows
about a database.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable

from durox.core import history
from durox.core.codec import DEFAULT_MAX_PAYLOAD_BYTES, loads_error, validate_json_text
from durox.core.commit import ActivityRef, Commit, ExecutionStatus, OutgoingMessage
from durox.core.errors import ErrorDetails, InvalidArgument, PayloadError, ProviderError
from durox.core.limits import MAX_CUSTOM_STATUS_BYTES, MAX_KV_VALUE_BYTES, check_id
from durox.core.messages import (
    ActivityResult,
    CancelInstance,
    ContinueAsNew,
    ExecuteActivity,
    ExternalRaised,
    OrchestratorMessage,
    QueueMessage,
    StartOrchestration,
    SubOrchestrationResult,
    TimerDue,
)
from durox.core.tags import TagFilter
from durox.providers.base import InstanceStatus, SessionClaim

__all__ = [
    "EXECUTION_STATUSES",
    "MAX_KV_KEY_LENGTH",
    "check_activity_result",
    "check_commit",
    "check_delay",
    "check_execution_id",
    "check_kv_key",
    "check_lock_token",
    "check_orchestrator_message",
    "check_owner_ids",
    "check_prune_options",
    "check_start",
    "check_status_filter",
    "check_timeout",
    "check_work_fetch",
    "check_worker_message",
    "instance_status",
    "new_lock_token",
    "read_error",
    "read_status",
]

EXECUTION_STATUSES: tuple[ExecutionStatus, ...] = (
    "Running",
    "Completed",
    "Failed",
    "ContinuedAsNew",
)
"""Every status an execution can have, in the order error messages list them."""

MAX_KV_KEY_LENGTH = 256
"""A KV key: at most this many characters, and no NUL."""


# -- numbers, tokens, timeouts -------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_whole(value: object, what: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidArgument(f"{what} must be a whole number >= {minimum}, got {value!r}")
    return value


def check_execution_id(value: object, what: str = "execution id") -> int:
    """Return ``value`` if it is an execution id (a whole number >= 1), else raise ``InvalidArgument``."""
    return _check_whole(value, what, minimum=1)


def check_delay(delay_ms: object, what: str = "delay_ms") -> int:
    """Return ``delay_ms`` if it is a whole number of milliseconds >= 0, else raise ``InvalidArgument``."""
    if not isinstance(delay_ms, int) or isinstance(delay_ms, bool) or delay_ms < 0:
        raise InvalidArgument(
            f"{what} must be a whole number of milliseconds >= 0, got {delay_ms!r}"
        )
    return delay_ms


def check_timeout(seconds: object, what: str = "lock_timeout") -> int:
    """Convert a timeout of a positive, finite number of seconds to whole milliseconds (at least 1).

    For lock, session and idle timeouts, and a provider's own time options.

    Raises ``InvalidArgument`` for anything else (zero, negative, infinite,
    NaN, a bool or a non-number).
    """
    if not _is_number(seconds) or not seconds > 0:  # type: ignore[operator]
        raise InvalidArgument(
            f"{what} must be a positive, finite number of seconds, got {seconds!r}"
        )
    return max(1, round(seconds * 1000))  # type: ignore[operator]


def check_lock_token(token: object) -> str:
    """Return ``token`` if it is a non-empty string, else raise ``InvalidArgument``.

    Whether the token still holds a lock is for the provider to judge.
    """
    if not isinstance(token, str) or not token:
        raise InvalidArgument(f"lock token must be a non-empty string, got {token!r}")
    return token


def new_lock_token() -> str:
    """A fresh, unguessable lock token: 32 hex characters (128 random bits)."""
    return secrets.token_hex(16)


# -- text -------------------------------------------------------------------------------


def _check_payload(text: object, max_payload_bytes: int, what: str) -> None:
    validate_json_text(text, max_bytes=max_payload_bytes, what=what)  # type: ignore[arg-type]


def _check_text_size(text: object, limit: int, what: str) -> None:
    if not isinstance(text, str):
        raise InvalidArgument(f"{what} must be a string, got {type(text).__name__}")
    size = len(text.encode("utf-8"))
    if size > limit:
        raise PayloadError(f"{what} is {size} bytes, over the limit of {limit} bytes")


def _check_optional_id(value: object, what: str) -> None:
    if value is not None:
        check_id(value, what)


def check_kv_key(key: object) -> str:
    """Return ``key`` if it can name a KV entry, else raise ``InvalidArgument``."""
    if not isinstance(key, str):
        raise InvalidArgument(f"KV key must be a string, got {type(key).__name__}")
    if len(key) > MAX_KV_KEY_LENGTH or "\x00" in key:
        raise InvalidArgument(
            f"KV key {key[:40]!r} must be at most {MAX_KV_KEY_LENGTH} characters with no NUL"
        )
    return key


# -- messages ----------------------------------------------------------------------------


def _check_parent(parent: object, execution_id: object, parent_id: object) -> None:
    if parent is None:
        return
    check_id(parent, "parent instance id")
    if execution_id is not None:
        check_execution_id(execution_id, "parent execution id")
    if parent_id is not None:
        _check_whole(parent_id, "parent_id")


def check_orchestrator_message(
    message: object, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> OrchestratorMessage:
    """Validate a message a caller wants to enqueue for an instance; return it.

    Ids and names go through :func:`~durox.core.limits.check_id`, JSON text
    through :func:`~durox.core.codec.validate_json_text` with
    ``max_payload_bytes``; execution ids must be >= 1, event ids and times
    whole numbers >= 0. Raises ``InvalidArgument`` or ``PayloadError``.
    """
    if isinstance(message, (StartOrchestration, ContinueAsNew)):
        check_id(message.instance)
        if isinstance(message, ContinueAsNew):
            check_execution_id(message.execution_id)
        check_id(message.name, "orchestration name")
        _check_optional_id(message.version, "orchestration version")
        _check_payload(message.input, max_payload_bytes, "orchestration input")
        _check_parent(message.parent_instance, message.parent_execution_id, message.parent_id)
        if isinstance(message, ContinueAsNew):
            for queued in message.carry_forward:
                if not isinstance(queued, history.QueuedEvent):
                    raise InvalidArgument(
                        f"carry_forward holds a {type(queued).__name__}, not a QueuedEvent"
                    )
                check_id(queued.name, "queue name")
                _check_payload(queued.data, max_payload_bytes, "queue message data")
            if message.initial_custom_status is not None:
                _check_text_size(
                    message.initial_custom_status, MAX_CUSTOM_STATUS_BYTES, "custom status"
                )
    elif isinstance(message, (ActivityResult, SubOrchestrationResult)):
        check_id(message.instance)
        check_execution_id(message.execution_id)
        _check_whole(message.id, "id")
        if isinstance(message, SubOrchestrationResult):
            check_id(message.child_instance, "child instance id")
        if message.result is not None:
            _check_payload(message.result, max_payload_bytes, "result")
        if message.error is not None and not isinstance(message.error, ErrorDetails):
            raise InvalidArgument(
                f"error must be ErrorDetails or None, got {type(message.error).__name__}"
            )
    elif isinstance(message, TimerDue):
        check_id(message.instance)
        check_execution_id(message.execution_id)
        _check_whole(message.id, "id")
        _check_whole(message.fire_at_ms, "fire_at_ms")
    elif isinstance(message, ExternalRaised):
        check_id(message.instance)
        check_id(message.name, "event name")
        _check_payload(message.data, max_payload_bytes, "event data")
    elif isinstance(message, QueueMessage):
        check_id(message.instance)
        check_id(message.name, "queue name")
        _check_payload(message.data, max_payload_bytes, "queue message data")
    elif isinstance(message, CancelInstance):
        check_id(message.instance)
        if not isinstance(message.reason, str):
            raise InvalidArgument(
                f"cancel reason must be a string, got {type(message.reason).__name__}"
            )
    else:
        raise InvalidArgument(f"{type(message).__name__} is not an orchestrator queue message")
    return message


def check_start(
    start: object, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> StartOrchestration:
    """Validate the argument of ``create_instance``: a well-formed ``StartOrchestration``."""
    if not isinstance(start, StartOrchestration):
        raise InvalidArgument(
            f"create_instance takes a StartOrchestration, got {type(start).__name__}"
        )
    check_orchestrator_message(start, max_payload_bytes=max_payload_bytes)
    return start


def check_worker_message(
    message: object, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> ExecuteActivity:
    """Validate an activity a caller wants to enqueue (directly or in a commit); return it."""
    if not isinstance(message, ExecuteActivity):
        raise InvalidArgument(f"expected an ExecuteActivity, got {type(message).__name__}")
    check_id(message.instance)
    check_execution_id(message.execution_id)
    _check_whole(message.id, "activity id")
    check_id(message.name, "activity name")
    _check_payload(message.input, max_payload_bytes, "activity input")
    if not isinstance(message.orchestration_name, str) or not isinstance(
        message.orchestration_version, str
    ):
        raise InvalidArgument(
            "orchestration_name and orchestration_version of an activity must be strings"
        )
    _check_optional_id(message.session_id, "session id")
    _check_optional_id(message.tag, "activity tag")
    return message


def check_activity_result(
    result: object, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> ActivityResult | None:
    """Validate the result handed to ``ack_work_item``: ``None`` or a well-formed ``ActivityResult``."""
    if result is None:
        return None
    if not isinstance(result, ActivityResult):
        raise InvalidArgument(
            f"ack_work_item takes an ActivityResult or None, got {type(result).__name__}"
        )
    check_orchestrator_message(result, max_payload_bytes=max_payload_bytes)
    return result


# -- commits ---------------------------------------------------------------------------------


def check_commit(commit: object, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Commit:
    """Validate everything an ``ack_orchestration_item`` would write; return the commit.

    Checks the instance metadata, status and output, custom status size, each
    new event (a history event with an id >= 1, no id twice), KV operations
    (key shape, value size), worker items, outgoing messages and their delays,
    and cancelled activity references. A repeated event id is a
    ``ProviderError`` (the turn is broken, not the caller's argument types);
    everything else is ``InvalidArgument`` or ``PayloadError``. Whether the
    event ids clash with stored history is for the provider to judge.
    """
    if not isinstance(commit, Commit):
        raise InvalidArgument(f"ack_orchestration_item takes a Commit, got {type(commit).__name__}")
    check_id(commit.instance)
    check_execution_id(commit.execution_id)
    check_id(commit.orchestration_name, "orchestration name")
    check_id(commit.orchestration_version, "orchestration version")
    _check_optional_id(commit.parent_instance, "parent instance id")
    if commit.status is not None and commit.status not in EXECUTION_STATUSES:
        raise InvalidArgument(
            f"commit status must be one of {', '.join(EXECUTION_STATUSES)}, got {commit.status!r}"
        )
    if commit.output is not None and not isinstance(commit.output, str):
        raise InvalidArgument(
            f"commit output must be JSON text or None, got {type(commit.output).__name__}"
        )
    if commit.custom_status_changed and commit.custom_status is not None:
        _check_text_size(commit.custom_status, MAX_CUSTOM_STATUS_BYTES, "custom status")
    seen: set[int] = set()
    for event in commit.new_events:
        if not isinstance(event, history.EVENT_TYPES):
            raise InvalidArgument(f"new_events holds a {type(event).__name__}, not a history event")
        if (
            not isinstance(event.event_id, int)
            or isinstance(event.event_id, bool)
            or event.event_id < 1
        ):
            raise InvalidArgument(
                f"event ids start at 1, got {event.event_id!r} on {type(event).__name__}"
            )
        if event.event_id in seen:
            raise ProviderError(
                f"the commit for {commit.instance!r} execution {commit.execution_id} repeats event id "
                f"{event.event_id}; the commit was rejected and nothing was written",
                operation="ack_orchestration_item",
            )
        seen.add(event.event_id)
    for op in commit.kv_ops:
        if isinstance(op, history.KeyValueSet):
            check_kv_key(op.key)
            _check_text_size(op.value, MAX_KV_VALUE_BYTES, f"KV value of {op.key!r}")
        elif isinstance(op, history.KeyValueCleared):
            check_kv_key(op.key)
        elif not isinstance(op, history.KeyValuesCleared):
            raise InvalidArgument(f"kv_ops holds a {type(op).__name__}, not a KV event")
    for activity in commit.worker_items:
        if not isinstance(activity, ExecuteActivity):
            raise InvalidArgument(
                f"worker_items holds a {type(activity).__name__}, not an ExecuteActivity"
            )
        check_worker_message(activity, max_payload_bytes=max_payload_bytes)
    for item in commit.orchestrator_items:
        if not isinstance(item, OutgoingMessage):
            raise InvalidArgument(
                f"orchestrator_items holds a {type(item).__name__}, not an OutgoingMessage"
            )
        check_orchestrator_message(item.message, max_payload_bytes=max_payload_bytes)
        check_delay(item.delay_ms, "OutgoingMessage.delay_ms")
    for ref in commit.cancelled_activities:
        if not isinstance(ref, ActivityRef):
            raise InvalidArgument(
                f"cancelled_activities holds a {type(ref).__name__}, not an ActivityRef"
            )
    return commit


# -- activity claims, sessions, pruning ------------------------------------------------------


def check_work_fetch(
    lock_timeout: object, tag_filter: object, session: object
) -> tuple[int, int | None]:
    """Validate the arguments of ``fetch_work_item``; return the lock and session timeouts in ms.

    The session timeout is ``None`` when no session is claimed.
    """
    timeout_ms = check_timeout(lock_timeout, "lock_timeout")
    if not isinstance(tag_filter, TagFilter):
        raise InvalidArgument(f"tag_filter must be a TagFilter, got {type(tag_filter).__name__}")
    if session is None:
        return timeout_ms, None
    if not isinstance(session, SessionClaim):
        raise InvalidArgument(
            f"session must be a SessionClaim or None, got {type(session).__name__}"
        )
    check_id(session.owner_id, "session owner id")
    return timeout_ms, check_timeout(session.lock_timeout, "session lock_timeout")


def check_owner_ids(owner_ids: object) -> list[str]:
    """Validate the owner ids of ``renew_session_locks``; return them as a list."""
    if isinstance(owner_ids, str):
        raise InvalidArgument("owner_ids must be a list of owner ids, not one string")
    if not isinstance(owner_ids, Iterable):
        raise InvalidArgument(
            f"owner_ids must be a list of owner ids, got {type(owner_ids).__name__}"
        )
    return [check_id(owner, "session owner id") for owner in owner_ids]


def check_prune_options(keep_last: object, completed_before_ms: object) -> None:
    """Validate the options of ``prune_executions``: each ``None`` or a whole number (``keep_last`` >= 0)."""
    if keep_last is not None and (
        not isinstance(keep_last, int) or isinstance(keep_last, bool) or keep_last < 0
    ):
        raise InvalidArgument(f"keep_last must be a whole number >= 0 or None, got {keep_last!r}")
    if completed_before_ms is not None and (
        not isinstance(completed_before_ms, int) or isinstance(completed_before_ms, bool)
    ):
        raise InvalidArgument(
            f"completed_before_ms must be epoch milliseconds (int) or None, got {completed_before_ms!r}"
        )


def check_status_filter(status: object) -> ExecutionStatus | None:
    """Validate the status filter of ``list_instances``: ``None`` or an execution status."""
    if status is not None and status not in EXECUTION_STATUSES:
        raise InvalidArgument(
            f"status must be one of {', '.join(EXECUTION_STATUSES)} or None, got {status!r}"
        )
    return status


# -- stored rows to records ---------------------------------------------------------------


def read_status(stored: str | None) -> ExecutionStatus:
    """The execution status a stored value means; a missing execution row reads as ``Running``.

    A value that is no status is a ``ProviderError``: the store is damaged.
    """
    if stored is None:
        return "Running"
    if stored not in EXECUTION_STATUSES:
        raise ProviderError(
            f"stored execution status {stored!r} is not one of {', '.join(EXECUTION_STATUSES)}"
        )
    return stored


def instance_status(
    instance: str,
    *,
    stored_status: str | None,
    execution_id: int,
    orchestration_name: str,
    orchestration_version: str | None,
    output: str | None,
    custom_status: str | None,
    custom_status_version: int,
) -> InstanceStatus:
    """What a client sees of an instance, from its stored fields.

    The execution's stored output is the result for ``Completed`` and the
    error record for ``Failed`` (see :func:`read_error`); other statuses
    show neither.
    """
    status = read_status(stored_status)
    return InstanceStatus(
        instance=instance,
        status=status,
        execution_id=int(execution_id),
        orchestration_name=orchestration_name,
        orchestration_version=orchestration_version,
        output=output if status == "Completed" else None,
        error=read_error(output) if status == "Failed" else None,
        custom_status=custom_status,
        custom_status_version=int(custom_status_version),
    )


def read_error(output: str | None) -> ErrorDetails | None:
    """The ``ErrorDetails`` stored as a failed execution's output.

    A record that cannot be read still reports *a* failure (category
    ``infrastructure``, kind ``unreadable_error``) rather than hiding it.
    """
    if output is None:
        return None
    try:
        return loads_error(output)
    except PayloadError as exc:
        return ErrorDetails(category="infrastructure", kind="unreadable_error", message=str(exc))
