"""An in-memory provider: the storage contract as plain dicts under one lock.

:class:`MemoryProvider` is meant for tests and examples, and as the readable
executable form of :mod:`durox.providers.base`: every method takes the one
``RLock``, checks everything first, then writes, so each call is atomic and a
rejected call writes nothing. Nothing survives the process.

The model, table by table (what the SQL providers keep in rows):

* ``_instances``: instance metadata, its executions (status, output, history),
  custom status, and KV in two tiers — ``kv_baseline`` (the state at the start
  of the current execution, which a fetch hands out) and ``kv_delta`` (this
  execution's changes, ``None`` = removed), folded together when the execution
  ends;
* ``_orch_queue``: orchestrator messages in enqueue order, each with its own
  ``visible_at``; a fetch tags a batch with the lock token of its instance;
* ``_instance_locks``: one lock (token, expiry) per instance;
* ``_worker_queue``: activities, each locked on its own (token, expiry), kept
  apart from ``visible_at`` so an abandon delay and a lock never mix;
* ``_sessions``: session affinity (owner, expiry, last activity).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import attrs

from durox.core import codec, history
from durox.core.commit import ActivityRef, Commit, ExecutionStatus, KvOp
from durox.core.errors import (
    InstanceAlreadyExists,
    InstanceNotFound,
    InvalidArgument,
    LockLost,
    ProviderClosed,
    ProviderError,
)
from durox.core.items import ActivityItem, KvEntry, OrchestrationItem
from durox.core.limits import check_id
from durox.core.messages import (
    ActivityResult,
    ExecuteActivity,
    OrchestratorMessage,
    StartOrchestration,
)
from durox.core.tags import TagFilter
from durox.providers._validation import (
    check_activity_result,
    check_commit,
    check_delay,
    check_execution_id,
    check_kv_key,
    check_lock_token,
    check_orchestrator_message,
    check_owner_ids,
    check_prune_options,
    check_start,
    check_status_filter,
    check_timeout,
    check_work_fetch,
    check_worker_message,
    instance_status,
    new_lock_token,
)
from durox.providers.base import (
    DeleteResult,
    ExecutionInfo,
    InstanceInfo,
    InstanceStatus,
    KnownHistory,
    OrchestrationStats,
    Provider,
    ProviderAdmin,
    PruneResult,
    QueueDepths,
    SessionClaim,
    SystemMetrics,
)

# The two message checks were first defined here; they are re-exported so
# ``from durox.providers.memory import check_orchestrator_message`` keeps working.
__all__ = ["MemoryProvider", "check_orchestrator_message", "check_worker_message"]


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


# -- rows ---------------------------------------------------------------------------


@attrs.define
class _Execution:
    execution_id: int
    started_at_ms: int
    status: ExecutionStatus = "Running"
    output: str | None = None
    completed_at_ms: int | None = None
    events: list[history.Event] = attrs.field(factory=list)
    event_ids: set[int] = attrs.field(factory=set)


@attrs.define
class _Instance:
    instance_id: str
    orchestration_name: str
    orchestration_version: str | None
    parent_instance: str | None
    created_at_ms: int
    updated_at_ms: int
    current_execution_id: int = 1
    executions: dict[int, _Execution] = attrs.field(factory=dict)
    custom_status: str | None = None
    custom_status_version: int = 0
    kv_baseline: dict[str, KvEntry] = attrs.field(factory=dict)
    kv_delta: dict[str, KvEntry | None] = attrs.field(factory=dict)

    @property
    def current(self) -> _Execution:
        return self.executions[self.current_execution_id]

    def kv_latest(self) -> dict[str, KvEntry]:
        """Baseline overlaid with this execution's changes: what clients read."""
        merged = dict(self.kv_baseline)
        for key, entry in self.kv_delta.items():
            if entry is None:
                merged.pop(key, None)
            else:
                merged[key] = entry
        return merged


@attrs.define
class _OrchRow:
    seq: int
    instance: str
    message: OrchestratorMessage
    visible_at_ms: int
    attempt_count: int = 0
    lock_token: str | None = None


@attrs.define
class _Lock:
    instance: str
    token: str
    locked_until_ms: int


@attrs.define
class _WorkRow:
    seq: int
    message: ExecuteActivity
    visible_at_ms: int
    attempt_count: int = 0
    lock_token: str | None = None
    locked_until_ms: int = 0


@attrs.define
class _Session:
    owner_id: str
    locked_until_ms: int
    last_activity_ms: int


class MemoryProvider(Provider, ProviderAdmin):
    """All durox state in process memory, thread-safe, with an injectable clock.

    ``clock`` returns epoch milliseconds (default: the wall clock); tests pass
    :meth:`durox.providers.testing.ManualClock.now_ms` to move time by hand.

    >>> from durox.core.messages import StartOrchestration
    >>> p = MemoryProvider(clock=lambda: 1_000)
    >>> p.create_instance(StartOrchestration(instance="a", name="Hello", input='"x"'))
    >>> p.get_instance_status("a").status
    'Running'
    """

    name = "memory"

    def __init__(self, *, clock: Callable[[], int] | None = None) -> None:
        self._clock: Callable[[], int] = clock or _wall_clock_ms
        self._mutex = threading.RLock()
        self._closed = False
        self._seq = 0
        self._instances: dict[str, _Instance] = {}
        self._orch_queue: dict[int, _OrchRow] = {}
        self._orch_by_instance: dict[str, dict[int, _OrchRow]] = {}  # index: instance -> its rows
        self._instance_locks: dict[str, _Lock] = {}
        self._orch_token_owner: dict[str, str] = {}  # lock token -> instance
        self._worker_queue: dict[int, _WorkRow] = {}
        self._work_token_row: dict[str, int] = {}  # lock token -> worker row seq
        self._sessions: dict[str, _Session] = {}

    # -- plumbing -------------------------------------------------------------------

    def _open(self) -> int:
        """Fail if closed; return the clock reading the whole call will use."""
        if self._closed:
            raise ProviderClosed()
        return int(self._clock())

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _live_lock(self, instance: str, now: int) -> _Lock | None:
        lock = self._instance_locks.get(instance)
        return lock if lock is not None and lock.locked_until_ms > now else None

    def _drop_instance_lock(self, instance: str) -> None:
        lock = self._instance_locks.pop(instance, None)
        if lock is not None:
            self._orch_token_owner.pop(lock.token, None)

    def _held_lock(self, lock_token: str, now: int, operation: str) -> _Lock:
        """The unexpired instance lock held under ``lock_token``, or ``LockLost``."""
        instance = self._orch_token_owner.get(lock_token) if isinstance(lock_token, str) else None
        lock = self._instance_locks.get(instance) if instance is not None else None
        if lock is None or lock.token != lock_token:
            raise LockLost(
                f"lock token {lock_token!r} is unknown: the lock was released or taken over",
                operation=operation,
            )
        if lock.locked_until_ms <= now:
            raise LockLost(
                f"the lock on instance {lock.instance!r} (token {lock_token!r}) expired; another worker may own it",
                operation=operation,
            )
        return lock

    def _held_work_row(self, lock_token: str, now: int, operation: str) -> _WorkRow:
        """The worker row locked under ``lock_token`` (lock unexpired), or ``LockLost``."""
        seq = self._work_token_row.get(lock_token) if isinstance(lock_token, str) else None
        row = self._worker_queue.get(seq) if seq is not None else None
        if row is None or row.lock_token != lock_token:
            raise LockLost(
                f"activity lock token {lock_token!r} is unknown: the activity was cancelled, completed or taken over",
                operation=operation,
            )
        if row.locked_until_ms <= now:
            raise LockLost(
                f"the activity lock {lock_token!r} expired; the activity will run again",
                operation=operation,
            )
        return row

    def _orch_rows_of(self, instance: str) -> list[_OrchRow]:
        """The instance's queued messages in enqueue order (a copy: callers may delete)."""
        return list(self._orch_by_instance.get(instance, {}).values())

    def _delete_orch_row(self, row: _OrchRow) -> None:
        del self._orch_queue[row.seq]
        rows = self._orch_by_instance[row.instance]
        del rows[row.seq]
        if not rows:
            del self._orch_by_instance[row.instance]

    def _enqueue_orch(self, message: OrchestratorMessage, visible_at_ms: int) -> None:
        seq = self._next_seq()
        row = _OrchRow(
            seq=seq, instance=message.instance, message=message, visible_at_ms=visible_at_ms
        )
        self._orch_queue[seq] = row
        self._orch_by_instance.setdefault(message.instance, {})[seq] = row

    def _enqueue_work(self, message: ExecuteActivity, now: int) -> None:
        seq = self._next_seq()
        self._worker_queue[seq] = _WorkRow(seq=seq, message=message, visible_at_ms=now)

    def _delete_work_row(self, seq: int) -> None:
        row = self._worker_queue.pop(seq)
        if row.lock_token is not None:
            self._work_token_row.pop(row.lock_token, None)

    def _new_instance(
        self, instance: str, name: str, version: str | None, parent: str | None, now: int
    ) -> _Instance:
        row = _Instance(
            instance_id=instance,
            orchestration_name=name,
            orchestration_version=version,
            parent_instance=parent,
            created_at_ms=now,
            updated_at_ms=now,
        )
        row.executions[1] = _Execution(execution_id=1, started_at_ms=now)
        self._instances[instance] = row
        return row

    def _touch_session(self, message: ExecuteActivity, now: int) -> None:
        # Ack and renew prove the session is active: the idle timeout counts from here.
        session = self._sessions.get(message.session_id) if message.session_id is not None else None
        if session is not None and session.locked_until_ms > now:
            session.last_activity_ms = now

    # -- starting and messaging instances -----------------------------------------------

    def create_instance(self, start: StartOrchestration) -> None:
        """Create the instance (``Running``, execution 1) and enqueue ``start``, atomically."""
        check_start(start)
        with self._mutex:
            now = self._open()
            if start.instance in self._instances:
                raise InstanceAlreadyExists(f"instance {start.instance!r} already exists")
            self._new_instance(
                start.instance, start.name, start.version, start.parent_instance, now
            )
            self._enqueue_orch(start, now)

    def enqueue_orchestrator(self, message: OrchestratorMessage, *, delay_ms: int = 0) -> None:
        """Enqueue ``message`` for an existing instance, invisible for ``delay_ms``."""
        check_orchestrator_message(message)
        check_delay(delay_ms)
        with self._mutex:
            now = self._open()
            if message.instance not in self._instances:
                raise InstanceNotFound(f"instance {message.instance!r} does not exist")
            self._enqueue_orch(message, now + delay_ms)

    def enqueue_worker(self, message: ExecuteActivity) -> None:
        """Enqueue an activity directly, visible at once."""
        check_worker_message(message)
        with self._mutex:
            now = self._open()
            self._enqueue_work(message, now)

    # -- orchestration turns ----------------------------------------------------------------

    def fetch_orchestration_item(
        self, *, lock_timeout: float, known_history: KnownHistory | None = None
    ) -> OrchestrationItem | None:
        """Lock the instance with the oldest visible message and hand out all its visible messages."""
        timeout_ms = check_timeout(lock_timeout)
        with self._mutex:
            now = self._open()
            instance = self._pick_instance(now)
            if instance is None:
                return None
            row = self._instances[instance]
            execution = row.current
            history_len = len(execution.events)
            # Ask the caller's cache before writing anything, so a failing callback changes nothing.
            if (
                known_history is not None
                and known_history(instance, execution.execution_id) == history_len
            ):
                events: tuple[history.Event, ...] = ()
                offset = history_len
            else:
                events, offset = tuple(execution.events), 0
            self._drop_instance_lock(instance)  # an expired lock, if any
            token = new_lock_token()
            self._instance_locks[instance] = _Lock(
                instance=instance, token=token, locked_until_ms=now + timeout_ms
            )
            self._orch_token_owner[token] = instance
            batch = [r for r in self._orch_rows_of(instance) if r.visible_at_ms <= now]
            for message_row in batch:
                message_row.lock_token = token
                message_row.attempt_count += 1
            return OrchestrationItem(
                instance=instance,
                lock_token=token,
                execution_id=execution.execution_id,
                orchestration_name=row.orchestration_name,
                orchestration_version=row.orchestration_version,
                history=events,
                history_offset=offset,
                history_len=history_len,
                messages=tuple(r.message for r in batch),
                kv_snapshot=dict(row.kv_baseline),
                attempt_count=max(r.attempt_count for r in batch),
            )

    def _pick_instance(self, now: int) -> str | None:
        """The unlocked instance whose oldest visible message is oldest; discards orphans on the way."""
        orphans: set[str] = set()
        chosen: str | None = None
        for row in self._orch_queue.values():
            if row.visible_at_ms > now or row.instance in orphans:
                continue
            if self._live_lock(row.instance, now) is not None:
                continue
            if row.instance not in self._instances:
                orphans.add(row.instance)
                continue
            chosen = row.instance
            break
        # Messages whose instance was deleted: nobody can ever take them.
        for instance in orphans:
            for orphan in self._orch_rows_of(instance):
                self._delete_orch_row(orphan)
        return chosen

    def ack_orchestration_item(self, lock_token: str, commit: Commit) -> None:
        """Apply ``commit`` and release the lock, all or nothing."""
        check_lock_token(lock_token)
        check_commit(commit)
        with self._mutex:
            now = self._open()
            lock = self._held_lock(lock_token, now, "ack_orchestration_item")
            if commit.instance != lock.instance:
                raise InvalidArgument(
                    f"commit is for instance {commit.instance!r} but lock token {lock_token!r} locks {lock.instance!r}"
                )
            row = self._instances[lock.instance]
            execution = row.executions.get(commit.execution_id)
            self._check_event_ids(commit, execution)
            # Everything below only writes: no check may fail past this point.
            for message_row in self._orch_rows_of(lock.instance):
                if message_row.lock_token == lock_token:
                    self._delete_orch_row(message_row)
            if execution is None:
                execution = _Execution(execution_id=commit.execution_id, started_at_ms=now)
                row.executions[commit.execution_id] = execution
            row.current_execution_id = max(row.current_execution_id, commit.execution_id)
            row.orchestration_name = commit.orchestration_name
            row.orchestration_version = commit.orchestration_version
            if commit.parent_instance is not None and row.parent_instance is None:
                row.parent_instance = commit.parent_instance
            for event in commit.new_events:
                execution.events.append(event)
                execution.event_ids.add(event.event_id)
            if commit.status is not None:
                execution.status = commit.status
                execution.output = commit.output
                if commit.is_terminal:
                    execution.completed_at_ms = now
            if commit.custom_status_changed:
                row.custom_status = commit.custom_status
                row.custom_status_version += 1
            self._apply_kv(row, commit.kv_ops, fold=commit.is_terminal)
            for activity in commit.worker_items:
                self._enqueue_work(activity, now)
            self._cancel_activities(commit.cancelled_activities)
            for outgoing in commit.orchestrator_items:
                message = outgoing.message
                if (
                    isinstance(message, StartOrchestration)
                    and message.instance not in self._instances
                ):
                    self._new_instance(
                        message.instance,
                        message.name,
                        message.version,
                        message.parent_instance,
                        now,
                    )
                self._enqueue_orch(message, now + outgoing.delay_ms)
            row.updated_at_ms = now
            self._drop_instance_lock(lock.instance)

    @staticmethod
    def _check_event_ids(commit: Commit, execution: _Execution | None) -> None:
        # check_commit already refused ids repeated within the commit.
        existing = execution.event_ids if execution is not None else set()
        for event in commit.new_events:
            if event.event_id in existing:
                raise ProviderError(
                    f"event id {event.event_id} already exists in execution {commit.execution_id} of instance "
                    f"{commit.instance!r}; the commit was rejected and nothing was written",
                    operation="ack_orchestration_item",
                )

    @staticmethod
    def _apply_kv(row: _Instance, ops: Sequence[KvOp], *, fold: bool) -> None:
        for op in ops:
            if isinstance(op, history.KeyValueSet):
                row.kv_delta[op.key] = KvEntry(value=op.value, updated_at_ms=op.updated_at_ms)
            elif isinstance(op, history.KeyValueCleared):
                row.kv_delta[op.key] = None
            else:  # KeyValuesCleared removes every key, the baseline's included.
                for key in [*row.kv_baseline, *row.kv_delta]:
                    row.kv_delta[key] = None
        if fold:
            # The execution ends: its changes become the next execution's starting state.
            row.kv_baseline = row.kv_latest()
            row.kv_delta.clear()

    def _cancel_activities(self, refs: Sequence[ActivityRef]) -> None:
        wanted = {(ref.instance, ref.execution_id, ref.id) for ref in refs}
        if not wanted:
            return
        for work_row in list(self._worker_queue.values()):
            message = work_row.message
            if (message.instance, message.execution_id, message.id) in wanted:
                self._delete_work_row(work_row.seq)

    def abandon_orchestration_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None:
        """Release the lock; the fetched messages stay, invisible for ``delay_ms``."""
        check_lock_token(lock_token)
        check_delay(delay_ms)
        with self._mutex:
            now = self._open()
            lock = self._held_lock(lock_token, now, "abandon_orchestration_item")
            for message_row in self._orch_rows_of(lock.instance):
                if message_row.lock_token == lock_token:
                    message_row.lock_token = None
                    message_row.visible_at_ms = now + delay_ms
                    if ignore_attempt:
                        message_row.attempt_count = max(0, message_row.attempt_count - 1)
            self._drop_instance_lock(lock.instance)

    def renew_orchestration_lock(self, lock_token: str, *, lock_timeout: float) -> None:
        """Extend a held instance lock to ``now + lock_timeout``."""
        check_lock_token(lock_token)
        timeout_ms = check_timeout(lock_timeout)
        with self._mutex:
            now = self._open()
            lock = self._held_lock(lock_token, now, "renew_orchestration_lock")
            lock.locked_until_ms = now + timeout_ms

    # -- activities -------------------------------------------------------------------------------

    def fetch_work_item(
        self, *, lock_timeout: float, tag_filter: TagFilter, session: SessionClaim | None = None
    ) -> ActivityItem | None:
        """Lock the oldest visible activity the tag filter and session rules allow."""
        timeout_ms, session_ms = check_work_fetch(lock_timeout, tag_filter, session)
        with self._mutex:
            now = self._open()
            if tag_filter.mode == "none":
                return None
            for row in self._worker_queue.values():
                if row.visible_at_ms > now or (
                    row.lock_token is not None and row.locked_until_ms > now
                ):
                    continue
                if not tag_filter.matches(row.message.tag):
                    continue
                session_id = row.message.session_id
                if session_id is not None:
                    if session is None:
                        continue
                    owner = self._sessions.get(session_id)
                    if (
                        owner is not None
                        and owner.locked_until_ms > now
                        and owner.owner_id != session.owner_id
                    ):
                        continue
                    assert session_ms is not None  # set whenever a session is claimed
                    self._sessions[session_id] = _Session(
                        owner_id=session.owner_id,
                        locked_until_ms=now + session_ms,
                        last_activity_ms=now,
                    )
                if row.lock_token is not None:
                    self._work_token_row.pop(row.lock_token, None)  # the expired lock's token
                token = new_lock_token()
                row.lock_token = token
                row.locked_until_ms = now + timeout_ms
                row.attempt_count += 1
                self._work_token_row[token] = row.seq
                return ActivityItem(
                    lock_token=token, message=row.message, attempt_count=row.attempt_count
                )
            return None

    def ack_work_item(self, lock_token: str, result: ActivityResult | None) -> None:
        """Delete the locked activity and enqueue its result, atomically."""
        check_lock_token(lock_token)
        check_activity_result(result)
        with self._mutex:
            now = self._open()
            row = self._held_work_row(lock_token, now, "ack_work_item")
            self._touch_session(row.message, now)
            self._delete_work_row(row.seq)
            if result is not None:
                # Enqueued even if the instance is gone: the fetch discards orphans.
                self._enqueue_orch(result, now)

    def renew_work_item_lock(self, lock_token: str, *, lock_timeout: float) -> None:
        """Extend an activity lock; ``LockLost`` means the activity was cancelled or lost."""
        check_lock_token(lock_token)
        timeout_ms = check_timeout(lock_timeout)
        with self._mutex:
            now = self._open()
            row = self._held_work_row(lock_token, now, "renew_work_item_lock")
            row.locked_until_ms = now + timeout_ms
            self._touch_session(row.message, now)

    def abandon_work_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None:
        """Unlock the activity; it is visible again after ``delay_ms``."""
        check_lock_token(lock_token)
        check_delay(delay_ms)
        with self._mutex:
            now = self._open()
            row = self._held_work_row(lock_token, now, "abandon_work_item")
            self._work_token_row.pop(lock_token, None)
            row.lock_token = None
            row.locked_until_ms = 0
            row.visible_at_ms = now + delay_ms
            if ignore_attempt:
                row.attempt_count = max(0, row.attempt_count - 1)

    def renew_session_locks(
        self, owner_ids: Sequence[str], *, lock_timeout: float, idle_timeout: float
    ) -> int:
        """Extend the live, recently active sessions of these owners; return how many."""
        owners = set(check_owner_ids(owner_ids))
        timeout_ms = check_timeout(lock_timeout)
        idle_ms = check_timeout(idle_timeout, "idle_timeout")
        with self._mutex:
            now = self._open()
            renewed = 0
            for session in self._sessions.values():
                if session.owner_id not in owners or session.locked_until_ms <= now:
                    continue
                if session.last_activity_ms <= now - idle_ms:
                    continue  # idle: let it lapse so another worker may claim it
                session.locked_until_ms = now + timeout_ms
                renewed += 1
            return renewed

    def cleanup_orphaned_sessions(self) -> int:
        """Delete expired sessions that no queued activity refers to."""
        with self._mutex:
            now = self._open()
            referenced = {row.message.session_id for row in self._worker_queue.values()}
            stale = [
                sid
                for sid, s in self._sessions.items()
                if s.locked_until_ms <= now and sid not in referenced
            ]
            for session_id in stale:
                del self._sessions[session_id]
            return len(stale)

    # -- reads ------------------------------------------------------------------------------------

    def read_history(self, instance: str, execution_id: int | None = None) -> list[history.Event]:
        """Events of one execution (default: the current one); ``[]`` if unknown."""
        check_id(instance)
        if execution_id is not None:
            check_execution_id(execution_id)
        with self._mutex:
            self._open()
            row = self._instances.get(instance)
            if row is None:
                return []
            execution = row.executions.get(
                row.current_execution_id if execution_id is None else execution_id
            )
            return list(execution.events) if execution is not None else []

    def get_instance_status(self, instance: str) -> InstanceStatus | None:
        """What a client sees of ``instance``, or ``None``."""
        check_id(instance)
        with self._mutex:
            self._open()
            row = self._instances.get(instance)
            if row is None:
                return None
            execution = row.current
            return instance_status(
                instance,
                stored_status=execution.status,
                execution_id=execution.execution_id,
                orchestration_name=row.orchestration_name,
                orchestration_version=row.orchestration_version,
                output=execution.output,
                custom_status=row.custom_status,
                custom_status_version=row.custom_status_version,
            )

    def get_kv_value(self, instance: str, key: str) -> str | None:
        """The latest value of ``key``, the running execution's writes included."""
        check_id(instance)
        check_kv_key(key)
        with self._mutex:
            self._open()
            row = self._instances.get(instance)
            entry = row.kv_latest().get(key) if row is not None else None
            return entry.value if entry is not None else None

    def get_kv_all_values(self, instance: str) -> dict[str, str]:
        """Every latest KV value of ``instance``."""
        check_id(instance)
        with self._mutex:
            self._open()
            row = self._instances.get(instance)
            if row is None:
                return {}
            return {key: entry.value for key, entry in row.kv_latest().items()}

    def next_orchestrator_visible_ms(self) -> int | None:
        """When the earliest message not held by a live lock becomes fetchable."""
        with self._mutex:
            now = self._open()
            earliest: int | None = None
            for row in self._orch_queue.values():
                lock = self._live_lock(row.instance, now)
                if lock is not None and row.lock_token == lock.token:
                    continue  # fetched; comes back only through its lock
                # A message of a locked instance waits for the lock to end as well.
                due = (
                    row.visible_at_ms
                    if lock is None
                    else max(row.visible_at_ms, lock.locked_until_ms)
                )
                earliest = due if earliest is None else min(earliest, due)
            return earliest

    def now_ms(self) -> int:
        """The provider's clock, in epoch milliseconds."""
        return int(self._clock())

    def close(self) -> None:
        """Drop all state; later calls raise :class:`~durox.errors.ProviderClosed`. Idempotent."""
        with self._mutex:
            self._closed = True
            for table in (
                self._instances,
                self._orch_queue,
                self._orch_by_instance,
                self._instance_locks,
                self._orch_token_owner,
                self._worker_queue,
                self._work_token_row,
                self._sessions,
            ):
                table.clear()

    # -- management ------------------------------------------------------------------------------

    def _instance(self, instance: str) -> _Instance:
        row = self._instances.get(instance)
        if row is None:
            raise InstanceNotFound(f"instance {instance!r} does not exist")
        return row

    def list_instances(self, status: ExecutionStatus | None = None) -> list[str]:
        """Instance ids, newest first, optionally only those whose current execution has ``status``."""
        check_status_filter(status)
        with self._mutex:
            self._open()
            # dicts keep insertion order, so reversed() is newest first.
            return [
                iid
                for iid, row in reversed(self._instances.items())
                if status is None or row.current.status == status
            ]

    def get_instance_info(self, instance: str) -> InstanceInfo:
        """Metadata of one instance."""
        check_id(instance)
        with self._mutex:
            self._open()
            row = self._instance(instance)
            return InstanceInfo(
                instance_id=instance,
                orchestration_name=row.orchestration_name,
                orchestration_version=row.orchestration_version,
                current_execution_id=row.current_execution_id,
                status=row.current.status,
                output=row.current.output,
                created_at_ms=row.created_at_ms,
                updated_at_ms=row.updated_at_ms,
                parent_instance_id=row.parent_instance,
            )

    def list_executions(self, instance: str) -> list[int]:
        """Execution ids, ascending."""
        check_id(instance)
        with self._mutex:
            self._open()
            return sorted(self._instance(instance).executions)

    def get_execution_info(self, instance: str, execution_id: int) -> ExecutionInfo:
        """Metadata of one execution."""
        check_id(instance)
        check_execution_id(execution_id)
        with self._mutex:
            self._open()
            execution = self._instance(instance).executions.get(execution_id)
            if execution is None:
                raise InstanceNotFound(f"instance {instance!r} has no execution {execution_id}")
            return ExecutionInfo(
                execution_id=execution_id,
                status=execution.status,
                output=execution.output,
                started_at_ms=execution.started_at_ms,
                completed_at_ms=execution.completed_at_ms,
                event_count=len(execution.events),
            )

    def get_system_metrics(self) -> SystemMetrics:
        """Counts over all instances, by the status of their current execution."""
        with self._mutex:
            self._open()
            rows = list(self._instances.values())
            statuses = [row.current.status for row in rows]
            return SystemMetrics(
                total_instances=len(rows),
                total_executions=sum(len(row.executions) for row in rows),
                running_instances=statuses.count("Running"),
                completed_instances=statuses.count("Completed"),
                failed_instances=statuses.count("Failed"),
                total_events=sum(len(e.events) for row in rows for e in row.executions.values()),
            )

    def get_queue_depths(self) -> QueueDepths:
        """Messages not held by a live lock, visible now or later."""
        with self._mutex:
            now = self._open()
            orchestrator = 0
            for row in self._orch_queue.values():
                lock = self._live_lock(row.instance, now)
                if lock is None or row.lock_token != lock.token:
                    orchestrator += 1
            worker = sum(
                1
                for r in self._worker_queue.values()
                if r.lock_token is None or r.locked_until_ms <= now
            )
            return QueueDepths(orchestrator_queue=orchestrator, worker_queue=worker)

    def get_orchestration_stats(self, instance: str) -> OrchestrationStats | None:
        """Size figures of the current execution and the instance's KV, or ``None``."""
        check_id(instance)
        with self._mutex:
            self._open()
            row = self._instances.get(instance)
            if row is None:
                return None
            kv = row.kv_latest()
            return OrchestrationStats(
                history_event_count=len(row.current.events),
                history_size_bytes=sum(
                    len(codec.dumps_record(e).encode()) for e in row.current.events
                ),
                queue_pending_count=len(self._orch_by_instance.get(instance, {})),
                kv_user_key_count=len(kv),
                kv_total_value_bytes=sum(len(entry.value.encode()) for entry in kv.values()),
            )

    def list_children(self, instance: str) -> list[str]:
        """Direct sub-orchestrations of ``instance``, oldest first."""
        check_id(instance)
        with self._mutex:
            self._open()
            return [iid for iid, row in self._instances.items() if row.parent_instance == instance]

    def delete_instance(self, instance: str, *, force: bool = False) -> DeleteResult:
        """Delete a root instance and its whole sub-orchestration tree, atomically."""
        check_id(instance)
        with self._mutex:
            self._open()
            root = self._instance(instance)
            if root.parent_instance is not None:
                raise InvalidArgument(
                    f"instance {instance!r} is a sub-orchestration of {root.parent_instance!r}; delete the root instead"
                )
            tree = self._tree(instance)
            running = [iid for iid in tree if self._instances[iid].current.status == "Running"]
            if running and not force:
                raise InvalidArgument(
                    f"instance {running[0]!r} is still running; cancel it first or delete with force=True"
                )
            doomed = set(tree)
            executions = events = messages = 0
            for iid in tree:
                row = self._instances.pop(iid)
                executions += len(row.executions)
                events += sum(len(e.events) for e in row.executions.values())
                self._drop_instance_lock(iid)  # a held lock dies: its ack raises LockLost
            for iid in tree:
                for message_row in self._orch_rows_of(iid):
                    self._delete_orch_row(message_row)
                    messages += 1
            for work_row in list(self._worker_queue.values()):
                if work_row.message.instance in doomed:
                    self._delete_work_row(work_row.seq)
                    messages += 1
            return DeleteResult(
                instances_deleted=len(tree),
                executions_deleted=executions,
                events_deleted=events,
                queue_messages_deleted=messages,
            )

    def _tree(self, instance: str) -> list[str]:
        """``instance`` and all its descendants, parents before children."""
        tree = [instance]
        for iid in tree:  # grows while iterating: a breadth-first walk
            tree.extend(
                child for child, row in self._instances.items() if row.parent_instance == iid
            )
        return tree

    def prune_executions(
        self, instance: str, *, keep_last: int | None = None, completed_before_ms: int | None = None
    ) -> PruneResult:
        """Delete finished executions other than the current one, filtered by both options."""
        check_id(instance)
        check_prune_options(keep_last, completed_before_ms)
        with self._mutex:
            self._open()
            row = self._instance(instance)
            kept = (
                set(sorted(row.executions, reverse=True)[:keep_last])
                if keep_last is not None
                else set()
            )
            doomed = [
                e
                for eid, e in row.executions.items()
                if eid != row.current_execution_id
                and eid not in kept
                and e.status != "Running"
                and (
                    completed_before_ms is None
                    or (e.completed_at_ms is not None and e.completed_at_ms < completed_before_ms)
                )
            ]
            for execution in doomed:
                del row.executions[execution.execution_id]
            return PruneResult(
                instances_processed=1,
                executions_deleted=len(doomed),
                events_deleted=sum(len(e.events) for e in doomed),
            )
