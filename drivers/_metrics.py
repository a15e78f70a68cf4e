"""Runtime counters, readable as a frozen snapshot from ``Runtime.metrics()``."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping

import attrs

__all__ = ["Metrics", "RuntimeMetrics"]


@attrs.frozen(kw_only=True)
class RuntimeMetrics:
    """What one runtime has done since it started.

    * ``orchestration_turns``: turns acked (including discarded ones);
    * ``orchestrations_completed`` / ``_failed`` / ``_continued_as_new``:
      executions this runtime ended;
    * ``orchestration_abandons``: turns put back unprocessed (an unregistered
      name waiting for a deployment, unreadable history, shutdown);
    * ``activities_completed`` / ``_failed`` / ``_cancelled``: activity runs by
      outcome (``_cancelled``: the result was dropped because the orchestration
      gave up on it, its lock was lost, or the runtime shut down);
    * ``activity_abandons``: activities put back unrun (unregistered, session capacity);
    * ``orchestrations_poisoned`` / ``activities_poisoned``: messages failed
      after too many delivery attempts;
    * ``failures_by_category``: orchestration and activity failures by
      :attr:`~durox.errors.ErrorDetails.category`;
    * ``lock_lost``: acks refused because the lock had expired or the work was cancelled;
    * ``ack_retries``: acks retried after a retryable storage error;
    * ``cache_hits`` / ``cache_misses``: turns that resumed a cached replay
      state vs. replayed from history.
    """

    orchestration_turns: int = 0
    orchestrations_completed: int = 0
    orchestrations_failed: int = 0
    orchestrations_continued_as_new: int = 0
    orchestration_abandons: int = 0
    orchestrations_poisoned: int = 0
    activities_completed: int = 0
    activities_failed: int = 0
    activities_cancelled: int = 0
    activity_abandons: int = 0
    activities_poisoned: int = 0
    failures_by_category: Mapping[str, int] = attrs.field(factory=dict)
    lock_lost: int = 0
    ack_retries: int = 0
    cache_hits: int = 0
    cache_misses: int = 0


_COUNTERS = tuple(
    field.name for field in attrs.fields(RuntimeMetrics) if field.name != "failures_by_category"
)


class Metrics:
    """Thread-safe counters behind :class:`RuntimeMetrics`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        """Increase counter ``name`` (a :class:`RuntimeMetrics` field)."""
        if name not in _COUNTERS:
            raise KeyError(f"unknown runtime metric {name!r}")
        with self._lock:
            self._counts[name] += amount

    def failure(self, category: str) -> None:
        """Count one failure of ``category``."""
        with self._lock:
            self._failures[category] += 1

    def snapshot(self) -> RuntimeMetrics:
        """The counters as they are now."""
        with self._lock:
            return RuntimeMetrics(
                failures_by_category=dict(self._failures),
                **{name: self._counts[name] for name in _COUNTERS},
            )
