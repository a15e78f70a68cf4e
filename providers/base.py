"""The storage contract every durox provider implements.

A provider keeps all durable state: per-execution **history**, an
**orchestrator queue** (messages that make an instance take a turn) and a
**worker queue** (activities to run), instance and execution **metadata**,
**custom status** and per-instance **KV**. Both queues use *peek-lock*
semantics: a fetch locks work under a token with an expiry, and only an ack
or abandon with that token (before the expiry) ends the lock. A lock that
expires makes the work fetchable again — that is how a crashed worker's work
is recovered, and why activities run *at least once*.

The interface is synchronous and thread-safe: every method may be called from
any thread, concurrently. Async drivers call it through a thread. Every
method is one short transaction; none keeps a transaction open across calls.

Time: providers judge visibility and lock expiry by their own clock (the
injected ``clock`` for memory/SQLite, the database clock for PostgreSQL), in
epoch milliseconds. Delays and lock timeouts are given relative to it.

Errors: an unknown or expired lock token raises
:class:`~durox.errors.LockLost` and writes nothing; storage failures raise
:class:`~durox.errors.ProviderError` (``retryable`` says if a retry may
help); use after :meth:`Provider.close` raises
:class:`~durox.errors.ProviderClosed`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Literal

import attrs

from durox.core import history
from durox.core.commit import Commit, ExecutionStatus
from durox.core.errors import ErrorDetails
from durox.core.items import ActivityItem, KvEntry, OrchestrationItem
from durox.core.messages import (
    ActivityResult,
    ExecuteActivity,
    OrchestratorMessage,
    StartOrchestration,
)
from durox.core.tags import TagFilter

__all__ = [
    "ActivityItem",
    "DeleteResult",
    "ExecutionInfo",
    "InstanceInfo",
    "InstanceStatus",
    "KnownHistory",
    "KvEntry",
    "OrchestrationItem",
    "OrchestrationStats",
    "Provider",
    "ProviderAdmin",
    "PruneResult",
    "QueueDepths",
    "SessionClaim",
    "SystemMetrics",
]

KnownHistory = Callable[[str, int], int]
"""``known(instance, execution_id) -> n``: how many history events of that
execution the caller already holds in memory (0 if none). See
:meth:`Provider.fetch_orchestration_item`."""


@attrs.frozen(kw_only=True)
class SessionClaim:
    """Who is fetching session-bound activities, and for how long it may own a session."""

    owner_id: str
    lock_timeout: float


@attrs.frozen(kw_only=True)
class InstanceStatus:
    """The externally visible state of an instance, as a client reads it.

    ``status`` is that of the current execution (``ContinuedAsNew`` only in
    the instant between two executions). ``output`` is the result JSON when
    Completed; ``error`` the failure when Failed.
    """

    instance: str
    status: ExecutionStatus
    execution_id: int
    orchestration_name: str
    orchestration_version: str | None
    output: str | None = None
    error: ErrorDetails | None = None
    custom_status: str | None = None
    custom_status_version: int = 0


@attrs.frozen(kw_only=True)
class InstanceInfo:
    """Management view of one instance."""

    instance_id: str
    orchestration_name: str
    orchestration_version: str | None
    current_execution_id: int
    status: ExecutionStatus
    output: str | None
    created_at_ms: int
    updated_at_ms: int
    parent_instance_id: str | None = None


@attrs.frozen(kw_only=True)
class ExecutionInfo:
    """Management view of one execution."""

    execution_id: int
    status: ExecutionStatus
    output: str | None
    started_at_ms: int
    completed_at_ms: int | None
    event_count: int


@attrs.frozen(kw_only=True)
class SystemMetrics:
    """Counts over all instances, by the status of their current execution."""

    total_instances: int
    total_executions: int
    running_instances: int
    completed_instances: int
    failed_instances: int
    total_events: int


@attrs.frozen(kw_only=True)
class QueueDepths:
    """Messages waiting (unlocked) in each queue, visible now or later."""

    orchestrator_queue: int
    worker_queue: int


@attrs.frozen(kw_only=True)
class OrchestrationStats:
    """Per-instance introspection figures."""

    history_event_count: int
    history_size_bytes: int
    queue_pending_count: int
    kv_user_key_count: int
    kv_total_value_bytes: int


@attrs.frozen(kw_only=True)
class DeleteResult:
    """What a delete removed."""

    instances_deleted: int
    executions_deleted: int
    events_deleted: int
    queue_messages_deleted: int


@attrs.frozen(kw_only=True)
class PruneResult:
    """What a prune removed."""

    instances_processed: int
    executions_deleted: int
    events_deleted: int


class Provider(abc.ABC):
    """Durable storage with peek-lock queues. See the module docstring for the rules.

    Implementations must be safe to call from many threads at once, and (for
    SQLite and PostgreSQL) from many processes sharing one database.
    """

    name: str = "unknown"

    # -- starting and messaging instances --------------------------------------

    @abc.abstractmethod
    def create_instance(self, start: StartOrchestration) -> None:
        """Create instance ``start.instance`` and enqueue ``start`` for it, atomically.

        The instance exists (status ``Running``) from this moment, before any
        turn ran. Raises :class:`~durox.errors.InstanceAlreadyExists` (and writes
        nothing) if the id exists already.
        """

    @abc.abstractmethod
    def enqueue_orchestrator(self, message: OrchestratorMessage, *, delay_ms: int = 0) -> None:
        """Enqueue ``message`` for its instance, invisible for ``delay_ms``.

        Raises :class:`~durox.errors.InstanceNotFound` (writing nothing) when the
        target instance does not exist. Never creates an instance.
        """

    @abc.abstractmethod
    def enqueue_worker(self, message: ExecuteActivity) -> None:
        """Enqueue an activity directly (tests and tools; turns enqueue through acks)."""

    # -- orchestration turns -----------------------------------------------------

    @abc.abstractmethod
    def fetch_orchestration_item(
        self, *, lock_timeout: float, known_history: KnownHistory | None = None
    ) -> OrchestrationItem | None:
        """Lock the instance whose oldest visible message is oldest, or return ``None``.

        Skips instances locked by someone else (unexpired lock). Takes *all*
        visible messages of the chosen instance as one batch, increments each
        one's attempt count, and locks the instance for ``lock_timeout`` seconds
        under a fresh token. Messages that arrive during the lock stay queued
        for the next fetch.

        ``known_history`` lets a caller with a cached replay state skip reading
        history it holds: if ``known_history(instance, execution_id)`` equals
        the stored history length, ``history`` is empty and ``history_offset``
        is that length; otherwise the whole history is returned with offset 0.

        Messages addressed to an instance that no longer exists (deleted) are
        discarded, never returned, and never block other instances.
        """

    @abc.abstractmethod
    def ack_orchestration_item(self, lock_token: str, commit: Commit) -> None:
        """Apply ``commit`` and release the instance lock, in one transaction.

        Deletes exactly the messages fetched under ``lock_token``. Raises
        :class:`~durox.errors.LockLost` (writing nothing) if the token is
        unknown or its lock expired; raises :class:`~durox.errors.ProviderError`
        (writing nothing) if an event id already exists in that execution.
        """

    @abc.abstractmethod
    def abandon_orchestration_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None:
        """Release the instance lock without writing a turn.

        The fetched messages stay queued, invisible for ``delay_ms``; with
        ``ignore_attempt`` their attempt counts go back down by one (never
        below 0). Raises :class:`~durox.errors.LockLost` for an unknown token.
        """

    @abc.abstractmethod
    def renew_orchestration_lock(self, lock_token: str, *, lock_timeout: float) -> None:
        """Extend a held instance lock to ``now + lock_timeout``; ``LockLost`` if not held."""

    # -- activities --------------------------------------------------------------

    @abc.abstractmethod
    def fetch_work_item(
        self, *, lock_timeout: float, tag_filter: TagFilter, session: SessionClaim | None = None
    ) -> ActivityItem | None:
        """Lock the oldest visible activity the filter and sessions allow, or ``None``.

        Session rules: an activity without a session is always eligible. With
        ``session=None`` only those are fetched. Otherwise a session-bound
        activity is eligible when its session is unowned, expired, or owned by
        ``session.owner_id``; fetching it claims (or refreshes) the session for
        ``session.lock_timeout`` seconds atomically, so two owners never hold one
        session. ``TagFilter.none()`` returns ``None`` at once.
        """

    @abc.abstractmethod
    def ack_work_item(self, lock_token: str, result: ActivityResult | None) -> None:
        """Delete the locked activity and enqueue ``result`` for its instance, atomically.

        ``result=None`` only deletes it. Raises :class:`~durox.errors.LockLost`
        when the row is gone (cancelled by its orchestration) or its lock
        expired; nothing is enqueued then.
        """

    @abc.abstractmethod
    def renew_work_item_lock(self, lock_token: str, *, lock_timeout: float) -> None:
        """Extend an activity lock; ``LockLost`` if it is gone — the activity's cancel signal."""

    @abc.abstractmethod
    def abandon_work_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None:
        """Unlock the activity so it runs again after ``delay_ms``; ``LockLost`` for an unknown token."""

    @abc.abstractmethod
    def renew_session_locks(
        self, owner_ids: Sequence[str], *, lock_timeout: float, idle_timeout: float
    ) -> int:
        """Extend the sessions these owners hold that saw work within ``idle_timeout``.

        Idle sessions are left to expire so another worker may claim them.
        Returns how many sessions were extended.
        """

    @abc.abstractmethod
    def cleanup_orphaned_sessions(self) -> int:
        """Delete expired sessions with no queued activity; return how many."""

    # -- reads --------------------------------------------------------------------

    @abc.abstractmethod
    def read_history(self, instance: str, execution_id: int | None = None) -> list[history.Event]:
        """Events of one execution (the current one by default); ``[]`` if unknown."""

    @abc.abstractmethod
    def get_instance_status(self, instance: str) -> InstanceStatus | None:
        """The client-visible state of an instance, or ``None`` if it does not exist."""

    @abc.abstractmethod
    def get_kv_value(self, instance: str, key: str) -> str | None:
        """Latest value (including the running execution's writes) or ``None``."""

    @abc.abstractmethod
    def get_kv_all_values(self, instance: str) -> dict[str, str]:
        """Every latest KV value of the instance; ``{}`` if none or unknown."""

    @abc.abstractmethod
    def next_orchestrator_visible_ms(self) -> int | None:
        """When the earliest unlocked orchestrator message becomes visible (epoch ms), or ``None``.

        Lets an idle dispatcher sleep exactly until the next timer is due.
        """

    def now_ms(self) -> int:
        """The provider's clock, in epoch milliseconds."""
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; later calls raise :class:`~durox.errors.ProviderClosed`."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ProviderAdmin(abc.ABC):
    """Management capability: listing, inspection, metrics, deletion, pruning.

    Built-in providers implement it alongside :class:`Provider`;
    ``Client.has_management_capability()`` tells whether a provider does.
    """

    @abc.abstractmethod
    def list_instances(self, status: ExecutionStatus | None = None) -> list[str]:
        """Instance ids, newest first; only those whose current execution has ``status`` if given."""

    @abc.abstractmethod
    def get_instance_info(self, instance: str) -> InstanceInfo:
        """Metadata of one instance; :class:`~durox.errors.InstanceNotFound` if unknown."""

    @abc.abstractmethod
    def list_executions(self, instance: str) -> list[int]:
        """Execution ids of the instance, ascending; ``InstanceNotFound`` if unknown."""

    @abc.abstractmethod
    def get_execution_info(self, instance: str, execution_id: int) -> ExecutionInfo:
        """Metadata of one execution; ``InstanceNotFound`` if instance or execution is unknown."""

    @abc.abstractmethod
    def get_system_metrics(self) -> SystemMetrics:
        """Counts over all instances."""

    @abc.abstractmethod
    def get_queue_depths(self) -> QueueDepths:
        """Unlocked messages per queue."""

    @abc.abstractmethod
    def get_orchestration_stats(self, instance: str) -> OrchestrationStats | None:
        """Size figures of one instance, ``None`` if unknown."""

    @abc.abstractmethod
    def list_children(self, instance: str) -> list[str]:
        """Sub-orchestrations whose parent is ``instance``."""

    @abc.abstractmethod
    def delete_instance(self, instance: str, *, force: bool = False) -> DeleteResult:
        """Delete an instance and, recursively, its sub-orchestrations, in one transaction.

        Removes history, executions, queued messages, locks, KV and sessions
        rows tied to them. A ``Running`` instance is refused with
        :class:`~durox.errors.InvalidArgument` unless ``force``; an unknown id
        raises ``InstanceNotFound``; a sub-orchestration (it has a parent) is
        refused with ``InvalidArgument`` — delete its root. After a forced
        delete, an ack holding the old lock fails with ``LockLost``.
        """

    @abc.abstractmethod
    def prune_executions(
        self, instance: str, *, keep_last: int | None = None, completed_before_ms: int | None = None
    ) -> PruneResult:
        """Delete old, finished executions of one instance (never the current one).

        ``keep_last`` keeps the newest N executions; ``completed_before_ms``
        only prunes executions completed before that time. KV is never pruned.
        """


ProviderStatus = Literal["Running", "Completed", "Failed", "ContinuedAsNew"]
