"""Units of work a provider hands out under a lock: the inputs of a turn or an activity run."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from durox.core import history
from durox.core.messages import ExecuteActivity, OrchestratorMessage

__all__ = ["ActivityItem", "KvEntry", "OrchestrationItem"]


@attrs.frozen(kw_only=True)
class KvEntry:
    """One KV value (JSON text) with the time it was last written."""

    value: str
    updated_at_ms: int


@attrs.frozen(kw_only=True)
class OrchestrationItem:
    """One locked instance with everything a turn needs.

    * ``execution_id``: the instance's current execution (1 for a new instance).
    * ``orchestration_name`` / ``orchestration_version``: from the instance row
      (for a brand-new instance: from its start message; the version may be
      ``None`` until the first turn picks one).
    * ``history``: events of the current execution from index ``history_offset``
      on (``history_offset == 0``: the whole history). ``history_len`` is the
      total number of events stored for the execution.
    * ``messages``: every visible message of the instance at fetch time, in
      enqueue order; the ack deletes exactly these.
    * ``kv_snapshot``: KV as of the *start* of the current execution (writes of
      the current execution are rebuilt by replay, never read from here).
    * ``attempt_count``: the highest delivery count among ``messages``
      (1 on first delivery); drives poison detection.
    * ``history_error``: set (and ``history`` empty) when stored history could
      not be read; the lock is held so the caller can fail or abandon it.
    """

    instance: str
    lock_token: str
    execution_id: int
    orchestration_name: str
    orchestration_version: str | None
    history: tuple[history.Event, ...]
    history_offset: int = 0
    history_len: int = 0
    messages: tuple[OrchestratorMessage, ...]
    kv_snapshot: Mapping[str, KvEntry] = attrs.field(factory=dict)
    attempt_count: int = 1
    history_error: str | None = None


@attrs.frozen(kw_only=True)
class ActivityItem:
    """One locked activity from the worker queue."""

    lock_token: str
    message: ExecuteActivity
    attempt_count: int = 1
