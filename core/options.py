"""RuntimeOptions: every knob of a runtime, with documented defaults."""

from __future__ import annotations

import math

import attrs

from durox.core.codec import DEFAULT_MAX_PAYLOAD_BYTES
from durox.core.errors import InvalidArgument
from durox.core.tags import TagFilter

__all__ = ["RuntimeOptions", "lock_renewal_interval", "unregistered_backoff"]


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not value > 0
        or math.isinf(value)
    ):
        raise InvalidArgument(
            f"RuntimeOptions.{attribute.name} must be a positive number of seconds, got {value!r}"
        )


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or value < 0
        or math.isinf(value)
    ):
        raise InvalidArgument(
            f"RuntimeOptions.{attribute.name} must be >= 0 seconds, got {value!r}"
        )


def _positive_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgument(
            f"RuntimeOptions.{attribute.name} must be a whole number >= 1, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class RuntimeOptions:
    """How a runtime dispatches work. Durations are seconds (floats).

    ========================================  ==========  ==================================================
    option                                    default     meaning
    ========================================  ==========  ==================================================
    ``orchestration_concurrency``             4           turns run at once
    ``worker_concurrency``                    8           activities run at once
    ``orchestrator_lock_timeout``             5.0         instance lock per turn (renewed while it runs)
    ``worker_lock_timeout``                   30.0        activity lock (renewed while it runs)
    ``worker_tag_filter``                     default     which activity tags this runtime serves
    ``activity_cancellation_grace_period``    10.0        a cancelled activity's time to finish
    ``max_attempts``                          10          deliveries before a message is poison
    ``unregistered_backoff_base``             1.0         first retry delay for an unregistered name
    ``unregistered_backoff_max``              60.0        cap of that exponential backoff
    ``session_lock_timeout``                  30.0        how long a worker owns a session per renewal
    ``max_sessions_per_runtime``              10          distinct sessions held at once
    ``session_idle_timeout``                  300.0       a session with no work this long is released
    ``worker_node_id``                        None        stable owner id, so a restart keeps its sessions
    ``max_payload_bytes``                     1 MiB       largest input/output JSON
    ``poll_interval``                         1.0         backstop poll for work from other processes
    ``sticky_cache_size``                     512         replay states kept in memory (0 disables)
    ========================================  ==========  ==================================================
    """

    orchestration_concurrency: int = attrs.field(default=4, validator=_positive_int)
    worker_concurrency: int = attrs.field(default=8, validator=_positive_int)
    orchestrator_lock_timeout: float = attrs.field(default=5.0, validator=_positive)
    worker_lock_timeout: float = attrs.field(default=30.0, validator=_positive)
    worker_tag_filter: TagFilter = attrs.field(factory=TagFilter.default_only)
    activity_cancellation_grace_period: float = attrs.field(default=10.0, validator=_non_negative)
    max_attempts: int = attrs.field(default=10, validator=_positive_int)
    unregistered_backoff_base: float = attrs.field(default=1.0, validator=_positive)
    unregistered_backoff_max: float = attrs.field(default=60.0, validator=_positive)
    session_lock_timeout: float = attrs.field(default=30.0, validator=_positive)
    max_sessions_per_runtime: int = attrs.field(default=10, validator=_positive_int)
    session_idle_timeout: float = attrs.field(default=300.0, validator=_positive)
    worker_node_id: str | None = None
    max_payload_bytes: int = attrs.field(default=DEFAULT_MAX_PAYLOAD_BYTES, validator=_positive_int)
    poll_interval: float = attrs.field(default=1.0, validator=_positive)
    sticky_cache_size: int = attrs.field(default=512)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.worker_tag_filter, TagFilter):
            raise InvalidArgument("RuntimeOptions.worker_tag_filter must be a TagFilter")
        if self.sticky_cache_size < 0:
            raise InvalidArgument("RuntimeOptions.sticky_cache_size must be >= 0")
        if self.session_idle_timeout <= self.worker_lock_timeout - lock_renewal_interval(
            self.worker_lock_timeout
        ):
            raise InvalidArgument(
                "RuntimeOptions.session_idle_timeout must exceed the time between activity lock renewals"
            )


def lock_renewal_interval(lock_timeout: float) -> float:
    """How often to renew a lock of ``lock_timeout`` seconds (Duroxide's formula).

    Long locks renew 5 s before expiry; short ones at half their length, never
    more often than every 0.1 s.

    >>> lock_renewal_interval(30.0), lock_renewal_interval(5.0)
    (25.0, 2.5)
    """
    if lock_timeout >= 15.0:
        return max(lock_timeout - 5.0, 1.0)
    return max(lock_timeout / 2.0, 0.1)


def unregistered_backoff(attempt: int, *, base: float, maximum: float) -> float:
    """Delay before retrying a message whose handler is not registered (attempt is 1-based).

    >>> [unregistered_backoff(a, base=1.0, maximum=60.0) for a in (1, 2, 3, 7, 9)]
    [1.0, 2.0, 4.0, 60.0, 60.0]
    """
    return float(min(base * 2 ** min(max(attempt - 1, 0), 6), maximum))
