"""SqliteProvider: the embedded default store, one SQLite file shared by threads and processes.

How it keeps the :class:`~durox.providers.base.Provider` promises:

* **One short transaction per call.** Every write is ``BEGIN IMMEDIATE`` … ``COMMIT``:
  the write lock is taken up front, so a transaction that reads and then
  writes can never fail to upgrade (a deferred transaction would get
  ``SQLITE_BUSY`` at once, without waiting). Reads use a deferred ``BEGIN``,
  which WAL mode serves without blocking the writer.
* **Several processes on one file.** WAL journal, ``synchronous=FULL`` (a
  committed turn survives power loss), a busy timeout, and on top of it a
  bounded, jittered retry of the whole transaction for the rare lock errors
  SQLite reports without waiting. Past the bound the caller gets a retryable
  :class:`~durox.errors.ProviderError`, never a raw "database is locked".
* **Peek-lock.** The instance lock is a row in ``instance_locks`` with a fresh
  random token and an expiry on the injected clock; fetch tags exactly the
  messages it hands out, and the ack deletes exactly those, appends history
  under the ``(instance, execution, event_id)`` primary key (the turn-once
  fence) and drops the lock, all in one transaction.
* **Connections.** A file store opens one connection per thread (WAL lets
  readers run beside the writer); threads of one process queue for the write
  lock on a mutex, so only other processes meet SQLite's polling busy handler.
  ``in_memory()`` shares one connection under a lock (see ``_init``).
* **Schema.** ``providers/sql/sqlite_NNN_*.sql`` are applied in order inside
  one ``BEGIN IMMEDIATE`` transaction that also bumps ``PRAGMA user_version``,
  so processes racing to open a new file apply each migration exactly once.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import math
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import attrs

from durox.core import history
from durox.core.codec import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    dumps_record,
    loads_event,
    loads_work_item,
)
from durox.core.commit import Commit, ExecutionStatus, KvOp, OutgoingMessage
from durox.core.errors import (
    InstanceAlreadyExists,
    InstanceNotFound,
    InvalidArgument,
    LockLost,
    PayloadError,
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
    read_status,
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

__all__ = ["SqliteProvider"]

T = TypeVar("T")

_TERMINAL_STATUSES = ("Completed", "Failed", "ContinuedAsNew")
_SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

# Lock errors SQLite can report without running the busy handler (WAL recovery,
# a schema change, a snapshot that went stale). The whole transaction is retried
# with full-jitter exponential backoff, a few times; an attempt in which the busy
# handler already waited busy_timeout is not retried, so a call gives up after
# about busy_timeout.
_BUSY_RETRIES = 8
_SQLITE_BUSY = 5  # primary result codes; extended codes keep them in the low byte
_SQLITE_LOCKED = 6
_BUSY_BACKOFF_BASE = 0.005
_BUSY_BACKOFF_CAP = 0.5

# A fetch discards orphaned messages (their instance was deleted) and looks at
# the next candidate; after this many orphans in one transaction it commits the
# cleanup and starts a new one, so the write lock is never held for long.
_ORPHANS_PER_TRANSACTION = 32


def _default_clock() -> int:
    return time.time_ns() // 1_000_000


class SqliteProvider(Provider, ProviderAdmin):
    """Durable storage in one SQLite file (or a private in-memory database).

    ``path`` is the database file; it is created with the current schema if
    missing. ``clock`` returns epoch milliseconds and judges lock expiry and
    visibility (tests pass a manual clock). ``synchronous`` is ``"FULL"`` by
    default so a committed turn survives power loss; ``"NORMAL"`` is faster and
    only loses the last transactions on power loss, not on a process crash.
    ``busy_timeout`` (seconds) is how long a call waits for another
    connection's write lock before it fails with a retryable
    :class:`~durox.errors.ProviderError` that wrote nothing.

    >>> with SqliteProvider.in_memory() as provider:
    ...     provider.get_instance_status("nobody") is None
    True
    """

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], int] | None = None,
        synchronous: str = "FULL",
        busy_timeout: float = 10.0,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self._init(
            os.fspath(path),
            clock=clock,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            max_payload_bytes=max_payload_bytes,
            memory=False,
        )

    @classmethod
    def in_memory(
        cls,
        *,
        clock: Callable[[], int] | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> SqliteProvider:
        """A private in-memory database that lives as long as the provider (tests, examples).

        It is safe to use from many threads; all calls share one connection
        and run one at a time.
        """
        provider = cls.__new__(cls)
        provider._init(
            ":memory:",
            clock=clock,
            synchronous="OFF",
            busy_timeout=0.0,
            max_payload_bytes=max_payload_bytes,
            memory=True,
        )
        return provider

    def _init(
        self,
        path: str,
        *,
        clock: Callable[[], int] | None,
        synchronous: str,
        busy_timeout: float,
        max_payload_bytes: int,
        memory: bool,
    ) -> None:
        if not memory and (not path or path == ":memory:" or path.startswith("file:")):
            raise InvalidArgument(
                f"SqliteProvider needs a file path, got {path!r}; use SqliteProvider.in_memory() for a memory database"
            )
        synchronous_mode = str(synchronous).upper()
        if synchronous_mode not in _SYNCHRONOUS_MODES:
            raise InvalidArgument(
                f"synchronous must be one of {', '.join(_SYNCHRONOUS_MODES)}, got {synchronous!r}"
            )
        if not _is_number(busy_timeout) or busy_timeout < 0:
            raise InvalidArgument(
                f"busy_timeout must be a number of seconds >= 0, got {busy_timeout!r}"
            )
        if (
            not isinstance(max_payload_bytes, int)
            or isinstance(max_payload_bytes, bool)
            or max_payload_bytes < 1
        ):
            raise InvalidArgument(
                f"max_payload_bytes must be a whole number >= 1, got {max_payload_bytes!r}"
            )
        self._path = path
        self._memory = memory
        self._clock: Callable[[], int] = clock if clock is not None else _default_clock
        self._synchronous = synchronous_mode
        # Only a file database that fsyncs on commit gains from relaxed lock bookkeeping.
        self._relaxable = not memory and synchronous_mode in ("FULL", "EXTRA")
        self._busy_timeout = float(busy_timeout)
        self._max_payload_bytes = max_payload_bytes
        # Lifecycle: calls in flight are counted so close() can wait for them
        # before closing the connections under their feet.
        self._state = threading.Condition()
        self._closed = False
        self._active_calls = 0
        # File databases: one connection per thread (sqlite3 connections are
        # not meant to be shared, and separate connections let WAL readers run
        # beside the writer). Connections of threads that ended are closed
        # when a new one is opened.
        self._local = threading.local()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        # In-memory databases: ONE connection shared by all threads, each call
        # holding this lock for its whole transaction. A ":memory:" database is
        # private to its connection, so sharing is the only way to share data;
        # the alternative (a named shared-cache memory database) uses table-level
        # locks whose SQLITE_LOCKED errors bypass the busy handler and deadlock
        # under concurrency (seen in Duroxide's tests). Memory is fast enough that
        # serialising calls costs nothing worth the risk.
        self._memory_lock = threading.RLock()
        # File databases: threads of this process take turns at the write lock
        # through this mutex, which hands over at once; only other processes
        # meet SQLite's busy handler, which polls with growing sleeps.
        self._writer = threading.Lock()
        self._memory_connection: sqlite3.Connection | None = None
        if memory:
            self._memory_connection = self._open_connection()
        try:
            self._migrate()
        except BaseException:
            self.close()  # a provider that failed to open leaves no connection behind
            raise

    def __repr__(self) -> str:
        where = "in-memory" if self._memory else repr(self._path)
        return f"<SqliteProvider {where}{' closed' if self._closed else ''}>"

    # -- connections, transactions, errors ---------------------------------------

    def _open_connection(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                # Autocommit mode: durox issues BEGIN IMMEDIATE / BEGIN / COMMIT itself.
                # The module's implicit transactions would start only at the first
                # write, leaving a leading SELECT outside the transaction.
                isolation_level=None,
                # Each connection is used by one thread at a time (its own, or any
                # thread holding the memory lock); close() may run on another thread.
                check_same_thread=False,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise ProviderError(
                f"cannot open SQLite database {self._path!r}: {exc}", operation="open"
            ) from exc
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            if not self._memory:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc, "open") from exc
        return conn

    def _thread_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        conn = self._open_connection()
        with self._state:
            if self._closed:
                conn.close()
                raise ProviderClosed()
            for thread in [t for t in self._connections if not t.is_alive()]:
                self._connections.pop(thread).close()
            self._connections[threading.current_thread()] = conn
        self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._memory:
            with self._memory_lock:
                assert self._memory_connection is not None
                yield self._memory_connection
        else:
            yield self._thread_connection()

    def _check_open(self) -> None:
        if self._closed:
            raise ProviderClosed()

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        with self._state:
            if self._closed:
                raise ProviderClosed()
            self._active_calls += 1
        try:
            yield
        finally:
            with self._state:
                self._active_calls -= 1
                if self._active_calls == 0:
                    self._state.notify_all()

    def _transaction(
        self,
        operation: str,
        body: Callable[[sqlite3.Connection, int], T],
        *,
        write: bool = True,
        durable: bool = True,
    ) -> T:
        """Run ``body(conn, now_ms)`` in one transaction, retrying lock errors; return its result.

        ``now_ms`` is read after the transaction began, so with ``write=True``
        time is judged while this connection holds the write lock.

        ``durable=False`` is for lock bookkeeping only (fetch, renew, abandon):
        its commit does not wait for fsync. A power cut can then lose nothing
        but a lock or an attempt count, which behaves like a lock expiring; and
        since the WAL is written in order, the next durable commit (every ack,
        enqueue and start) makes all earlier ones durable too. That halves the
        fsyncs per activity step without weakening what ``synchronous`` promises
        for history and queues.
        """
        relax = not durable and self._relaxable
        with self._call():
            attempt = 0
            started = time.monotonic()
            while True:
                attempt_started = time.monotonic()
                with self._connection() as conn, self._writer_turn(write):
                    try:
                        if relax:
                            conn.execute("PRAGMA synchronous = NORMAL")
                        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                        try:
                            result = body(conn, self._clock())
                            conn.execute("COMMIT")
                        except BaseException:
                            if conn.in_transaction:
                                conn.execute("ROLLBACK")
                            raise
                        finally:
                            if relax:
                                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                        return result
                    except sqlite3.Error as exc:
                        if not _is_lock_error(exc):
                            raise self._translate(exc, operation) from exc
                        # Retry only errors SQLite reported without waiting: once the
                        # busy handler has waited busy_timeout, so has the caller.
                        waited = time.monotonic() - attempt_started
                        if attempt >= _BUSY_RETRIES or waited >= self._busy_timeout * 0.9:
                            raise ProviderError(
                                f"SQLite database {self._path!r} stayed locked by another connection through "
                                f"{attempt + 1} attempts over {time.monotonic() - started:.1f}s during {operation}; "
                                "the call wrote nothing and can be retried",
                                retryable=True,
                                operation=operation,
                            ) from exc
                # Outside the connection context: never sleep holding the memory lock.
                time.sleep(
                    random.uniform(0, min(_BUSY_BACKOFF_CAP, _BUSY_BACKOFF_BASE * 2**attempt))
                )
                attempt += 1

    @contextlib.contextmanager
    def _writer_turn(self, write: bool) -> Iterator[None]:
        if write and not self._memory:
            with self._writer:
                yield
        else:
            yield

    def _read(self, operation: str, body: Callable[[sqlite3.Connection, int], T]) -> T:
        return self._transaction(operation, body, write=False)

    def _translate(self, exc: sqlite3.Error, operation: str) -> ProviderError:
        if isinstance(exc, sqlite3.ProgrammingError) and self._closed:
            return ProviderClosed()
        code = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        return ProviderError(
            f"SQLite failed during {operation} on {self._path!r}: {exc} ({code})",
            retryable=False,
            operation=operation,
        )

    def _migrate(self) -> None:
        migrations = _load_migrations()
        latest = len(migrations)

        def apply(conn: sqlite3.Connection, now: int) -> None:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > latest:
                raise ProviderError(
                    f"SQLite database {self._path!r} has schema version {version}, newer than this durox "
                    f"understands ({latest}); upgrade durox",
                    operation="open",
                )
            for statements in migrations[version:]:
                for statement in statements:
                    conn.execute(statement)
            if version < latest:
                conn.execute(f"PRAGMA user_version = {latest}")

        with self._call():
            if not self._memory:
                # WAL persists in the file; switching needs a moment of exclusive
                # access, so it is retried like any lock error.
                self._retry_lock_errors("open", lambda: self._set_wal())
        self._transaction("open", apply)

    def _set_wal(self) -> None:
        with self._connection() as conn:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ProviderError(
                f"SQLite database {self._path!r} cannot use WAL journal mode (got {mode!r}); "
                "durox needs a local file system",
                operation="open",
            )

    def _retry_lock_errors(self, operation: str, fn: Callable[[], T]) -> T:
        for attempt in range(_BUSY_RETRIES + 1):
            try:
                return fn()
            except sqlite3.Error as exc:
                if not _is_lock_error(exc):
                    raise self._translate(exc, operation) from exc
                if attempt == _BUSY_RETRIES:
                    raise ProviderError(
                        f"SQLite database {self._path!r} stayed locked during {operation}; retry later",
                        retryable=True,
                        operation=operation,
                    ) from exc
                time.sleep(
                    random.uniform(0, min(_BUSY_BACKOFF_CAP, _BUSY_BACKOFF_BASE * 2**attempt))
                )
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Wait for calls in flight (up to 30 s), then close every connection. Idempotent."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            self._state.wait_for(lambda: self._active_calls == 0, timeout=30.0)
            connections = list(self._connections.values())
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if self._memory_connection is not None:
            with self._memory_lock, contextlib.suppress(sqlite3.Error):
                self._memory_connection.close()

    def now_ms(self) -> int:
        """The provider's clock, in epoch milliseconds."""
        return int(self._clock())

    # -- starting and messaging instances ------------------------------------------

    def create_instance(self, start: StartOrchestration) -> None:
        """Create instance ``start.instance`` and enqueue ``start`` for it, atomically."""
        check_start(start, max_payload_bytes=self._max_payload_bytes)
        work_item = dumps_record(start)

        def body(conn: sqlite3.Connection, now: int) -> None:
            try:
                _insert_instance(conn, start, now)
            except sqlite3.IntegrityError:
                raise InstanceAlreadyExists(f"instance {start.instance!r} already exists") from None
            _insert_message(conn, start.instance, work_item, now)

        self._transaction("create_instance", body)

    def enqueue_orchestrator(self, message: OrchestratorMessage, *, delay_ms: int = 0) -> None:
        """Enqueue ``message`` for its instance, invisible for ``delay_ms``."""
        check_orchestrator_message(message, max_payload_bytes=self._max_payload_bytes)
        delay = check_delay(delay_ms)
        work_item = dumps_record(message)

        def body(conn: sqlite3.Connection, now: int) -> None:
            if (
                conn.execute(
                    "SELECT 1 FROM instances WHERE instance_id = ?", (message.instance,)
                ).fetchone()
                is None
            ):
                raise InstanceNotFound(
                    f"no instance {message.instance!r}; start it before sending it messages"
                )
            _insert_message(conn, message.instance, work_item, now + delay)

        self._transaction("enqueue_orchestrator", body)

    def enqueue_worker(self, message: ExecuteActivity) -> None:
        """Enqueue an activity directly (tests and tools; turns enqueue through acks)."""
        check_worker_message(message, max_payload_bytes=self._max_payload_bytes)
        row = _activity_row(message)
        self._transaction("enqueue_worker", lambda conn, now: _insert_activities(conn, [row], now))

    # -- orchestration turns ---------------------------------------------------------

    def fetch_orchestration_item(
        self, *, lock_timeout: float, known_history: KnownHistory | None = None
    ) -> OrchestrationItem | None:
        """Lock the instance whose oldest visible message is oldest, or return ``None``."""
        timeout_ms = check_timeout(lock_timeout)
        while True:
            outcome = self._transaction(
                "fetch_orchestration_item",
                lambda conn, now: _fetch_orchestration(conn, now, timeout_ms, known_history),
                durable=False,
            )
            if outcome is not _ORPHANS_REMAIN:
                break
        if outcome is None:
            return None
        assert isinstance(outcome, _FetchedRows)
        return outcome.to_item()

    def ack_orchestration_item(self, lock_token: str, commit: Commit) -> None:
        """Apply ``commit`` and release the instance lock, in one transaction."""
        check_lock_token(lock_token)
        plan = _AckPlan.build(commit, self._max_payload_bytes)
        self._transaction(
            "ack_orchestration_item", lambda conn, now: plan.apply(conn, now, lock_token)
        )

    def abandon_orchestration_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None:
        """Release the instance lock without writing a turn."""
        check_lock_token(lock_token)
        delay = check_delay(delay_ms)

        def body(conn: sqlite3.Connection, now: int) -> None:
            instance = _held_lock(conn, lock_token, now, "abandon")
            conn.execute(
                "UPDATE orchestrator_queue SET lock_token = NULL,"
                " visible_at = :now + :delay,"
                " attempt_count = CASE WHEN :ignore THEN MAX(attempt_count - 1, 0) ELSE attempt_count END"
                " WHERE instance_id = :instance AND lock_token = :token",
                {
                    "delay": delay,
                    "now": now,
                    "ignore": bool(ignore_attempt),
                    "instance": instance,
                    "token": lock_token,
                },
            )
            conn.execute("DELETE FROM instance_locks WHERE instance_id = ?", (instance,))

        self._transaction("abandon_orchestration_item", body, durable=False)

    def renew_orchestration_lock(self, lock_token: str, *, lock_timeout: float) -> None:
        """Extend a held instance lock to ``now + lock_timeout``; ``LockLost`` if not held."""
        check_lock_token(lock_token)
        timeout_ms = check_timeout(lock_timeout)

        def body(conn: sqlite3.Connection, now: int) -> None:
            cursor = conn.execute(
                "UPDATE instance_locks SET locked_until = ? WHERE lock_token = ? AND locked_until > ?",
                (now + timeout_ms, lock_token, now),
            )
            if cursor.rowcount == 0:
                raise LockLost(
                    _lock_lost_message(lock_token, "renew"), operation="renew_orchestration_lock"
                )

        self._transaction("renew_orchestration_lock", body, durable=False)

    # -- activities --------------------------------------------------------------------

    def fetch_work_item(
        self, *, lock_timeout: float, tag_filter: TagFilter, session: SessionClaim | None = None
    ) -> ActivityItem | None:
        """Lock the oldest visible activity the filter and sessions allow, or ``None``."""
        timeout_ms, session_ms = check_work_fetch(lock_timeout, tag_filter, session)
        if tag_filter.mode == "none":
            self._check_open()  # a closed provider fails even when the filter serves nothing
            return None
        query, params = _work_item_query(tag_filter, session)
        token = new_lock_token()

        def body(conn: sqlite3.Connection, now: int) -> tuple[str, int] | None:
            row = conn.execute(query, {**params, "now": now}).fetchone()
            if row is None:
                return None
            row_id, work_item, session_id, attempts = row
            conn.execute(
                "UPDATE worker_queue SET lock_token = ?, locked_until = ?, attempt_count = attempt_count + 1"
                " WHERE id = ?",
                (token, now + timeout_ms, row_id),
            )
            if session_id is not None:
                # The query only returns session work when claiming a session.
                assert session is not None and session_ms is not None
                conn.execute(
                    "INSERT INTO sessions (session_id, worker_id, locked_until, last_activity_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET"
                    " worker_id = excluded.worker_id, locked_until = excluded.locked_until,"
                    " last_activity_at = excluded.last_activity_at",
                    (session_id, session.owner_id, now + session_ms, now),
                )
            return work_item, attempts + 1

        found = self._transaction("fetch_work_item", body, durable=False)
        if found is None:
            return None
        work_item, attempts = found
        try:
            message = loads_work_item(work_item)
        except PayloadError as exc:
            message = None
            problem = str(exc)
        else:
            problem = f"it holds a {type(message).__name__}, not an ExecuteActivity"
        if not isinstance(message, ExecuteActivity):
            # Locked under a token nobody holds: it is retried after the lock
            # expires, never lost, and the error says what to repair.
            raise ProviderError(
                f"an activity in the worker queue of {self._path!r} cannot be read ({problem}); "
                "the store is damaged",
                operation="fetch_work_item",
            )
        return ActivityItem(lock_token=token, message=message, attempt_count=attempts)

    def ack_work_item(self, lock_token: str, result: ActivityResult | None) -> None:
        """Delete the locked activity and enqueue ``result`` for its instance, atomically."""
        check_lock_token(lock_token)
        check_activity_result(result, max_payload_bytes=self._max_payload_bytes)
        work_item = dumps_record(result) if result is not None else None

        def body(conn: sqlite3.Connection, now: int) -> None:
            row = conn.execute(
                "DELETE FROM worker_queue WHERE lock_token = ? AND locked_until > ?"
                " RETURNING instance_id, execution_id, activity_id, session_id",
                (lock_token, now),
            ).fetchone()
            if row is None:
                raise LockLost(
                    _activity_lock_lost_message(lock_token, "ack"), operation="ack_work_item"
                )
            instance, execution_id, activity_id, session_id = row
            if result is not None:
                if (result.instance, result.execution_id, result.id) != (
                    instance,
                    execution_id,
                    activity_id,
                ):
                    raise InvalidArgument(
                        f"result is for activity {result.id} of {result.instance!r} execution {result.execution_id}, "
                        f"but the token locks activity {activity_id} of {instance!r} execution {execution_id}"
                    )
                assert work_item is not None
                _insert_message(conn, instance, work_item, now)
            _touch_session(conn, session_id, now)

        self._transaction("ack_work_item", body)

    def renew_work_item_lock(self, lock_token: str, *, lock_timeout: float) -> None:
        """Extend an activity lock; ``LockLost`` if it is gone — the activity's cancel signal."""
        check_lock_token(lock_token)
        timeout_ms = check_timeout(lock_timeout)

        def body(conn: sqlite3.Connection, now: int) -> None:
            row = conn.execute(
                "UPDATE worker_queue SET locked_until = ? WHERE lock_token = ? AND locked_until > ? RETURNING session_id",
                (now + timeout_ms, lock_token, now),
            ).fetchone()
            if row is None:
                raise LockLost(
                    _activity_lock_lost_message(lock_token, "renew"),
                    operation="renew_work_item_lock",
                )
            _touch_session(conn, row[0], now)

        self._transaction("renew_work_item_lock", body, durable=False)

    def abandon_work_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None:
        """Unlock the activity so it runs again after ``delay_ms``; ``LockLost`` for an unknown token."""
        check_lock_token(lock_token)
        delay = check_delay(delay_ms)

        def body(conn: sqlite3.Connection, now: int) -> None:
            cursor = conn.execute(
                "UPDATE worker_queue SET lock_token = NULL, locked_until = NULL, visible_at = :visible,"
                " attempt_count = CASE WHEN :ignore THEN MAX(attempt_count - 1, 0) ELSE attempt_count END"
                " WHERE lock_token = :token AND locked_until > :now",
                {
                    "visible": now + delay,
                    "ignore": bool(ignore_attempt),
                    "token": lock_token,
                    "now": now,
                },
            )
            if cursor.rowcount == 0:
                raise LockLost(
                    _activity_lock_lost_message(lock_token, "abandon"),
                    operation="abandon_work_item",
                )

        self._transaction("abandon_work_item", body, durable=False)

    def renew_session_locks(
        self, owner_ids: Sequence[str], *, lock_timeout: float, idle_timeout: float
    ) -> int:
        """Extend the sessions these owners hold that saw work within ``idle_timeout``."""
        owners = check_owner_ids(owner_ids)
        timeout_ms = check_timeout(lock_timeout)
        idle_ms = check_timeout(idle_timeout, "idle_timeout")
        if not owners:
            self._check_open()
            return 0
        marks = ", ".join("?" * len(owners))

        def body(conn: sqlite3.Connection, now: int) -> int:
            cursor = conn.execute(
                f"UPDATE sessions SET locked_until = ? WHERE worker_id IN ({marks})"
                " AND locked_until > ? AND last_activity_at > ?",
                (now + timeout_ms, *owners, now, now - idle_ms),
            )
            return cursor.rowcount

        return self._transaction("renew_session_locks", body, durable=False)

    def cleanup_orphaned_sessions(self) -> int:
        """Delete expired sessions with no queued activity; return how many."""

        def body(conn: sqlite3.Connection, now: int) -> int:
            cursor = conn.execute(
                "DELETE FROM sessions WHERE locked_until <= ?"
                " AND NOT EXISTS (SELECT 1 FROM worker_queue w WHERE w.session_id = sessions.session_id)",
                (now,),
            )
            return cursor.rowcount

        return self._transaction("cleanup_orphaned_sessions", body, durable=False)

    # -- reads -----------------------------------------------------------------------------

    def read_history(self, instance: str, execution_id: int | None = None) -> list[history.Event]:
        """Events of one execution (the current one by default); ``[]`` if unknown."""
        check_id(instance)
        if execution_id is not None:
            check_execution_id(execution_id)

        def body(conn: sqlite3.Connection, now: int) -> list[str]:
            if execution_id is None:
                rows = conn.execute(
                    "SELECT h.event_data FROM instances i JOIN history h"
                    " ON h.instance_id = i.instance_id AND h.execution_id = i.current_execution_id"
                    " WHERE i.instance_id = ? ORDER BY h.event_id",
                    (instance,),
                )
            else:
                rows = conn.execute(
                    "SELECT event_data FROM history WHERE instance_id = ? AND execution_id = ? ORDER BY event_id",
                    (instance, execution_id),
                )
            return [row[0] for row in rows]

        texts = self._read("read_history", body)
        try:
            return [loads_event(text) for text in texts]
        except PayloadError as exc:
            raise ProviderError(
                f"stored history of instance {instance!r} cannot be read: {exc}",
                operation="read_history",
            ) from None

    def get_instance_status(self, instance: str) -> InstanceStatus | None:
        """The client-visible state of an instance, or ``None`` if it does not exist."""
        check_id(instance)
        row = self._read(
            "get_instance_status",
            lambda conn, now: conn.execute(
                "SELECT i.current_execution_id, i.orchestration_name, i.orchestration_version, i.custom_status,"
                " i.custom_status_version, e.status, e.output"
                " FROM instances i LEFT JOIN executions e"
                " ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id"
                " WHERE i.instance_id = ?",
                (instance,),
            ).fetchone(),
        )
        if row is None:
            return None
        execution_id, name, version, custom_status, custom_version, stored_status, output = row
        return instance_status(
            instance,
            stored_status=stored_status,
            execution_id=execution_id,
            orchestration_name=name,
            orchestration_version=version,
            output=output,
            custom_status=custom_status,
            custom_status_version=custom_version,
        )

    def get_kv_value(self, instance: str, key: str) -> str | None:
        """Latest value (including the running execution's writes) or ``None``."""
        check_id(instance)
        check_kv_key(key)
        row = self._read(
            "get_kv_value",
            lambda conn, now: conn.execute(
                "SELECT value FROM (SELECT value, 0 AS tier FROM kv_delta WHERE instance_id = :i AND key = :k"
                " UNION ALL SELECT value, 1 FROM kv_store WHERE instance_id = :i AND key = :k) ORDER BY tier LIMIT 1",
                {"i": instance, "k": key},
            ).fetchone(),
        )
        return None if row is None else row[0]

    def get_kv_all_values(self, instance: str) -> dict[str, str]:
        """Every latest KV value of the instance; ``{}`` if none or unknown."""
        check_id(instance)
        return self._read("get_kv_all_values", lambda conn, now: _current_kv(conn, instance))

    def next_orchestrator_visible_ms(self) -> int | None:
        """When the earliest unlocked orchestrator message becomes visible (epoch ms), or ``None``.

        Messages of a locked instance that the lock does not hold count from
        when that lock expires; the ones it holds come back only through it.
        """
        row = self._read(
            "next_orchestrator_visible_ms",
            lambda conn, now: conn.execute(
                # Free instances: one step down the visible_at index. Locked
                # instances: only the few with a live lock are looked at.
                "SELECT MIN(due) FROM ("
                " SELECT * FROM (SELECT q.visible_at AS due FROM orchestrator_queue q WHERE NOT EXISTS"
                "  (SELECT 1 FROM instance_locks l WHERE l.instance_id = q.instance_id AND l.locked_until > :now)"
                "  ORDER BY q.visible_at LIMIT 1)"
                # CROSS JOIN keeps instance_locks as the outer loop.
                " UNION ALL SELECT MAX(q.visible_at, l.locked_until) FROM instance_locks l"
                "  CROSS JOIN orchestrator_queue q ON q.instance_id = l.instance_id"
                "  WHERE l.locked_until > :now AND q.lock_token IS NOT l.lock_token)",
                {"now": now},
            ).fetchone(),
        )
        return None if row is None or row[0] is None else int(row[0])

    # -- management (ProviderAdmin) ----------------------------------------------------------

    def list_instances(self, status: ExecutionStatus | None = None) -> list[str]:
        """Instance ids, newest first; only those whose current execution has ``status`` if given."""
        check_status_filter(status)

        def body(conn: sqlite3.Connection, now: int) -> list[str]:
            if status is None:
                rows = conn.execute(
                    "SELECT instance_id FROM instances ORDER BY created_at_ms DESC, rowid DESC"
                )
            else:
                rows = conn.execute(
                    "SELECT i.instance_id FROM instances i JOIN executions e"
                    " ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id"
                    " WHERE e.status = ? ORDER BY i.created_at_ms DESC, i.rowid DESC",
                    (status,),
                )
            return [row[0] for row in rows]

        return self._read("list_instances", body)

    def get_instance_info(self, instance: str) -> InstanceInfo:
        """Metadata of one instance; :class:`~durox.errors.InstanceNotFound` if unknown."""
        check_id(instance)
        row = self._read(
            "get_instance_info",
            lambda conn, now: conn.execute(
                "SELECT i.orchestration_name, i.orchestration_version, i.current_execution_id, e.status, e.output,"
                " i.created_at_ms, i.updated_at_ms, i.parent_instance_id"
                " FROM instances i LEFT JOIN executions e"
                " ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id"
                " WHERE i.instance_id = ?",
                (instance,),
            ).fetchone(),
        )
        if row is None:
            raise InstanceNotFound(f"no instance {instance!r}")
        name, version, execution_id, status, output, created, updated, parent = row
        return InstanceInfo(
            instance_id=instance,
            orchestration_name=name,
            orchestration_version=version,
            current_execution_id=execution_id,
            status=read_status(status),
            output=output,
            created_at_ms=created,
            updated_at_ms=updated,
            parent_instance_id=parent,
        )

    def list_executions(self, instance: str) -> list[int]:
        """Execution ids of the instance, ascending; ``InstanceNotFound`` if unknown."""
        check_id(instance)

        def body(conn: sqlite3.Connection, now: int) -> list[int] | None:
            if (
                conn.execute(
                    "SELECT 1 FROM instances WHERE instance_id = ?", (instance,)
                ).fetchone()
                is None
            ):
                return None
            rows = conn.execute(
                "SELECT execution_id FROM executions WHERE instance_id = ? ORDER BY execution_id",
                (instance,),
            )
            return [row[0] for row in rows]

        ids = self._read("list_executions", body)
        if ids is None:
            raise InstanceNotFound(f"no instance {instance!r}")
        return ids

    def get_execution_info(self, instance: str, execution_id: int) -> ExecutionInfo:
        """Metadata of one execution; ``InstanceNotFound`` if instance or execution is unknown."""
        check_id(instance)
        check_execution_id(execution_id)
        row = self._read(
            "get_execution_info",
            lambda conn, now: conn.execute(
                "SELECT status, output, started_at_ms, completed_at_ms, event_count FROM executions"
                " WHERE instance_id = ? AND execution_id = ?",
                (instance, execution_id),
            ).fetchone(),
        )
        if row is None:
            raise InstanceNotFound(f"no execution {execution_id} of instance {instance!r}")
        status, output, started, completed, events = row
        return ExecutionInfo(
            execution_id=execution_id,
            status=read_status(status),
            output=output,
            started_at_ms=started,
            completed_at_ms=completed,
            event_count=events,
        )

    def get_system_metrics(self) -> SystemMetrics:
        """Counts over all instances."""

        def body(conn: sqlite3.Connection, now: int) -> SystemMetrics:
            total, running, completed, failed = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(e.status = 'Running'), 0), COALESCE(SUM(e.status = 'Completed'), 0),"
                " COALESCE(SUM(e.status = 'Failed'), 0) FROM instances i LEFT JOIN executions e"
                " ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id"
            ).fetchone()
            executions, events = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(event_count), 0) FROM executions"
            ).fetchone()
            return SystemMetrics(
                total_instances=total,
                total_executions=executions,
                running_instances=running,
                completed_instances=completed,
                failed_instances=failed,
                total_events=events,
            )

        return self._read("get_system_metrics", body)

    def get_queue_depths(self) -> QueueDepths:
        """Unlocked messages per queue."""

        def body(conn: sqlite3.Connection, now: int) -> QueueDepths:
            # An orchestrator message is locked while it is tagged with the token
            # of an instance lock that has not expired.
            orchestrator = conn.execute(
                "SELECT COUNT(*) FROM orchestrator_queue q WHERE q.lock_token IS NULL OR NOT EXISTS"
                " (SELECT 1 FROM instance_locks l WHERE l.instance_id = q.instance_id"
                " AND l.lock_token = q.lock_token AND l.locked_until > ?)",
                (now,),
            ).fetchone()[0]
            worker = conn.execute(
                "SELECT COUNT(*) FROM worker_queue WHERE lock_token IS NULL OR locked_until <= ?",
                (now,),
            ).fetchone()[0]
            return QueueDepths(orchestrator_queue=orchestrator, worker_queue=worker)

        return self._read("get_queue_depths", body)

    def get_orchestration_stats(self, instance: str) -> OrchestrationStats | None:
        """Size figures of one instance, ``None`` if unknown."""
        check_id(instance)

        def body(conn: sqlite3.Connection, now: int) -> OrchestrationStats | None:
            row = conn.execute(
                "SELECT e.event_count, (SELECT COALESCE(SUM(LENGTH(CAST(h.event_data AS BLOB))), 0) FROM history h"
                "  WHERE h.instance_id = i.instance_id AND h.execution_id = i.current_execution_id),"
                " (SELECT COUNT(*) FROM orchestrator_queue q WHERE q.instance_id = i.instance_id)"
                " FROM instances i LEFT JOIN executions e"
                " ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id"
                " WHERE i.instance_id = ?",
                (instance,),
            ).fetchone()
            if row is None:
                return None
            kv = _current_kv(conn, instance)
            return OrchestrationStats(
                history_event_count=row[0] or 0,
                history_size_bytes=row[1],
                queue_pending_count=row[2],
                kv_user_key_count=len(kv),
                kv_total_value_bytes=sum(len(value.encode("utf-8")) for value in kv.values()),
            )

        return self._read("get_orchestration_stats", body)

    def list_children(self, instance: str) -> list[str]:
        """Sub-orchestrations whose parent is ``instance``."""
        check_id(instance)
        return self._read(
            "list_children",
            lambda conn, now: [
                row[0]
                for row in conn.execute(
                    "SELECT instance_id FROM instances WHERE parent_instance_id = ? ORDER BY created_at_ms, rowid",
                    (instance,),
                )
            ],
        )

    def delete_instance(self, instance: str, *, force: bool = False) -> DeleteResult:
        """Delete an instance and, recursively, its sub-orchestrations, in one transaction."""
        check_id(instance)
        return self._transaction(
            "delete_instance", lambda conn, now: _delete_tree(conn, instance, bool(force))
        )

    def prune_executions(
        self, instance: str, *, keep_last: int | None = None, completed_before_ms: int | None = None
    ) -> PruneResult:
        """Delete old, finished executions of one instance (never the current one)."""
        check_id(instance)
        check_prune_options(keep_last, completed_before_ms)

        def body(conn: sqlite3.Connection, now: int) -> PruneResult:
            row = conn.execute(
                "SELECT current_execution_id FROM instances WHERE instance_id = ?", (instance,)
            ).fetchone()
            if row is None:
                raise InstanceNotFound(f"no instance {instance!r}")
            current = row[0]
            # keep_last=0 keeps nothing extra, but the current execution is never pruned.
            keep_from = None
            if keep_last:
                kept = conn.execute(
                    "SELECT execution_id FROM executions WHERE instance_id = ? ORDER BY execution_id DESC"
                    " LIMIT 1 OFFSET ?",
                    (instance, keep_last - 1),
                ).fetchone()
                keep_from = kept[0] if kept is not None else None
                if keep_from is None:
                    return PruneResult(
                        instances_processed=1, executions_deleted=0, events_deleted=0
                    )
            victims = conn.execute(
                "SELECT execution_id, event_count FROM executions WHERE instance_id = :i AND execution_id <> :current"
                " AND status <> 'Running' AND (:keep_from IS NULL OR execution_id < :keep_from)"
                " AND (:before IS NULL OR (completed_at_ms IS NOT NULL AND completed_at_ms < :before))",
                {
                    "i": instance,
                    "current": current,
                    "keep_from": keep_from,
                    "before": completed_before_ms,
                },
            ).fetchall()
            conn.executemany(
                "DELETE FROM executions WHERE instance_id = ? AND execution_id = ?",
                [(instance, execution_id) for execution_id, _ in victims],
            )
            return PruneResult(
                instances_processed=1,
                executions_deleted=len(victims),
                events_deleted=sum(count for _, count in victims),
            )

        return self._transaction("prune_executions", body)


# -- fetch of orchestration items ------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _FetchedRows:
    """What the fetch transaction read, parsed into an item after it committed (outside the write lock)."""

    instance: str
    lock_token: str
    execution_id: int
    name: str
    version: str | None
    history_rows: list[str]
    history_offset: int
    history_len: int
    message_rows: list[tuple[int, str]]
    kv_rows: list[tuple[str, str, int]]
    attempt_count: int

    def to_item(self) -> OrchestrationItem:
        problems: list[str] = []
        messages: list[OrchestratorMessage] = []
        for row_id, text in self.message_rows:
            try:
                message = loads_work_item(text)
            except PayloadError as exc:
                problems.append(f"queued message {row_id} cannot be read: {exc}")
                continue
            if isinstance(message, ExecuteActivity):
                problems.append(
                    f"queued message {row_id} is an ExecuteActivity in the orchestrator queue"
                )
                continue
            messages.append(message)
        events: tuple[history.Event, ...] = ()
        try:
            events = tuple(loads_event(text) for text in self.history_rows)
        except PayloadError as exc:
            problems.append(
                f"stored history of execution {self.execution_id} cannot be read: {exc}"
            )
        history_error = "; ".join(problems) or None
        return OrchestrationItem(
            instance=self.instance,
            lock_token=self.lock_token,
            execution_id=self.execution_id,
            orchestration_name=self.name,
            orchestration_version=self.version,
            history=() if history_error else events,
            history_offset=0 if history_error else self.history_offset,
            history_len=self.history_len,
            messages=tuple(messages),
            kv_snapshot={
                key: KvEntry(value=value, updated_at_ms=at) for key, value, at in self.kv_rows
            },
            attempt_count=self.attempt_count,
            history_error=history_error,
        )


_ORPHANS_REMAIN = object()
"""Returned by a fetch transaction that only discarded orphans; the fetch runs again."""


def _fetch_orchestration(
    conn: sqlite3.Connection, now: int, timeout_ms: int, known_history: KnownHistory | None
) -> _FetchedRows | object | None:
    for _ in range(_ORPHANS_PER_TRANSACTION):
        # The instance of the oldest visible message whose instance is not locked.
        # "Oldest" is enqueue order (id), as in the memory provider and Duroxide:
        # the visible_at index yields the visible rows and SQLite keeps only the
        # smallest id while sorting them, so the cost grows with the visible
        # backlog, never with future timers.
        candidate = conn.execute(
            "SELECT q.instance_id FROM orchestrator_queue q WHERE q.visible_at <= :now AND NOT EXISTS"
            " (SELECT 1 FROM instance_locks l WHERE l.instance_id = q.instance_id AND l.locked_until > :now)"
            " ORDER BY q.id LIMIT 1",
            {"now": now},
        ).fetchone()
        if candidate is None:
            return None
        instance = candidate[0]
        row = conn.execute(
            "SELECT i.orchestration_name, i.orchestration_version, i.current_execution_id, e.event_count"
            " FROM instances i LEFT JOIN executions e"
            " ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id"
            " WHERE i.instance_id = ?",
            (instance,),
        ).fetchone()
        if row is None:
            # The instance was deleted: its messages can never be delivered.
            conn.execute("DELETE FROM orchestrator_queue WHERE instance_id = ?", (instance,))
            continue
        name, version, execution_id, event_count = row
        token = new_lock_token()
        conn.execute(
            "INSERT OR REPLACE INTO instance_locks (instance_id, lock_token, locked_until) VALUES (?, ?, ?)",
            (instance, token, now + timeout_ms),
        )
        message_rows = conn.execute(
            "UPDATE orchestrator_queue SET lock_token = ?, attempt_count = attempt_count + 1"
            " WHERE instance_id = ? AND visible_at <= ? RETURNING id, work_item, attempt_count",
            (token, instance, now),
        ).fetchall()
        message_rows.sort()
        history_len = event_count or 0
        known = known_history(instance, execution_id) if known_history is not None else 0
        if history_len and known == history_len:
            history_rows: list[str] = []
            offset = history_len
        else:
            history_rows = [
                r[0]
                for r in conn.execute(
                    "SELECT event_data FROM history WHERE instance_id = ? AND execution_id = ? ORDER BY event_id",
                    (instance, execution_id),
                )
            ]
            offset = 0
        kv_rows = conn.execute(
            "SELECT key, value, updated_at_ms FROM kv_store WHERE instance_id = ?", (instance,)
        ).fetchall()
        return _FetchedRows(
            instance=instance,
            lock_token=token,
            execution_id=execution_id,
            name=name,
            version=version,
            history_rows=history_rows,
            history_offset=offset,
            history_len=history_len,
            message_rows=[(r[0], r[1]) for r in message_rows],
            kv_rows=kv_rows,
            attempt_count=max(r[2] for r in message_rows),
        )
    return _ORPHANS_REMAIN


# -- ack of orchestration items ----------------------------------------------------------------


class _AckPlan:
    """A commit checked and serialized before the transaction, so the write lock is held briefly."""

    def __init__(
        self,
        commit: Commit,
        event_rows: list[tuple[int, str, str]],
        worker_rows: list[tuple[Any, ...]],
        outgoing: list[tuple[OutgoingMessage, str]],
    ) -> None:
        self.commit = commit
        self.event_rows = event_rows
        self.worker_rows = worker_rows
        self.outgoing = outgoing

    @classmethod
    def build(cls, commit: Commit, max_payload_bytes: int) -> _AckPlan:
        check_commit(commit, max_payload_bytes=max_payload_bytes)
        event_rows = [
            (event.event_id, type(event).__name__, dumps_record(event))
            for event in commit.new_events
        ]
        worker_rows = [_activity_row(activity) for activity in commit.worker_items]
        outgoing = [(item, dumps_record(item.message)) for item in commit.orchestrator_items]
        return cls(commit, event_rows, worker_rows, outgoing)

    def apply(self, conn: sqlite3.Connection, now: int, token: str) -> None:
        commit = self.commit
        instance = _held_lock(conn, token, now, "ack")
        if instance != commit.instance:
            raise InvalidArgument(
                f"the commit is for {commit.instance!r} but the lock token locks {instance!r}"
            )
        execution_id = commit.execution_id
        # A continue_as_new commit starts the next execution: create its row.
        conn.execute(
            "INSERT OR IGNORE INTO executions (instance_id, execution_id, started_at_ms) VALUES (?, ?, ?)",
            (instance, execution_id, now),
        )
        conn.execute(
            "UPDATE instances SET orchestration_name = :name, orchestration_version = :version,"
            " current_execution_id = MAX(current_execution_id, :execution),"
            " parent_instance_id = COALESCE(parent_instance_id, :parent), updated_at_ms = :now,"
            " custom_status = CASE WHEN :cs_changed THEN :cs ELSE custom_status END,"
            " custom_status_version = custom_status_version + :cs_changed"
            " WHERE instance_id = :instance",
            {
                "name": commit.orchestration_name,
                "version": commit.orchestration_version,
                "execution": execution_id,
                "parent": commit.parent_instance,
                "now": now,
                "cs_changed": int(bool(commit.custom_status_changed)),
                "cs": commit.custom_status,
                "instance": instance,
            },
        )
        # One row at a time (the statement is prepared once either way), so a
        # clash names the event id that another turn already wrote.
        for event_id, event_type, event_data in self.event_rows:
            try:
                conn.execute(
                    "INSERT INTO history (instance_id, execution_id, event_id, event_type, event_data)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (instance, execution_id, event_id, event_type, event_data),
                )
            except sqlite3.IntegrityError:
                raise ProviderError(
                    f"event id {event_id} already exists in execution {execution_id} of instance "
                    f"{instance!r}; the whole commit was rejected and nothing was written "
                    "(another turn already wrote it)",
                    operation="ack_orchestration_item",
                ) from None
        terminal = commit.status in _TERMINAL_STATUSES
        conn.execute(
            "UPDATE executions SET event_count = event_count + :added,"
            " status = COALESCE(:status, status),"
            " output = CASE WHEN :status IS NULL THEN output ELSE :output END,"
            " completed_at_ms = CASE WHEN :terminal THEN :now ELSE completed_at_ms END"
            " WHERE instance_id = :instance AND execution_id = :execution",
            {
                "added": len(self.event_rows),
                "status": commit.status,
                "output": commit.output,
                "terminal": terminal,
                "now": now,
                "instance": instance,
                "execution": execution_id,
            },
        )
        _apply_kv_ops(conn, instance, commit.kv_ops, terminal)
        if self.worker_rows:
            _insert_activities(conn, self.worker_rows, now)
        # After the inserts: an activity scheduled and cancelled in one turn leaves no row.
        if commit.cancelled_activities:
            conn.executemany(
                "DELETE FROM worker_queue WHERE instance_id = ? AND execution_id = ? AND activity_id = ?",
                [(ref.instance, ref.execution_id, ref.id) for ref in commit.cancelled_activities],
            )
        for item, work_item in self.outgoing:
            message = item.message
            if isinstance(message, StartOrchestration):
                # A child or detached orchestration: create its row unless the id exists.
                _insert_instance(conn, message, now, ignore_existing=True)
            _insert_message(conn, message.instance, work_item, now + item.delay_ms)
        conn.execute(
            "DELETE FROM orchestrator_queue WHERE instance_id = ? AND lock_token = ?",
            (instance, token),
        )
        conn.execute("DELETE FROM instance_locks WHERE instance_id = ?", (instance,))


def _apply_kv_ops(
    conn: sqlite3.Connection, instance: str, ops: Sequence[KvOp], terminal: bool
) -> None:
    for op in ops:
        if isinstance(op, history.KeyValueSet):
            conn.execute(
                "INSERT INTO kv_delta (instance_id, key, value, updated_at_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value,"
                " updated_at_ms = excluded.updated_at_ms",
                (instance, op.key, op.value, op.updated_at_ms),
            )
        elif isinstance(op, history.KeyValueCleared):
            conn.execute(
                "INSERT INTO kv_delta (instance_id, key, value, updated_at_ms) VALUES (?, ?, NULL, ?)"
                " ON CONFLICT (instance_id, key) DO UPDATE SET value = NULL, updated_at_ms = excluded.updated_at_ms",
                (instance, op.key, op.timestamp_ms),
            )
        else:
            # Clear all: forget this execution's writes and hide every baseline key.
            conn.execute("DELETE FROM kv_delta WHERE instance_id = ?", (instance,))
            conn.execute(
                "INSERT INTO kv_delta (instance_id, key, value, updated_at_ms)"
                " SELECT instance_id, key, NULL, ? FROM kv_store WHERE instance_id = ?",
                (op.timestamp_ms, instance),
            )
    if terminal:
        # The execution ended: its writes become the next execution's baseline.
        conn.execute(
            "INSERT INTO kv_store (instance_id, key, value, updated_at_ms)"
            " SELECT instance_id, key, value, updated_at_ms FROM kv_delta WHERE instance_id = ? AND value IS NOT NULL"
            " ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
            (instance,),
        )
        conn.execute(
            "DELETE FROM kv_store WHERE instance_id = ? AND key IN"
            " (SELECT key FROM kv_delta WHERE instance_id = ? AND value IS NULL)",
            (instance, instance),
        )
        conn.execute("DELETE FROM kv_delta WHERE instance_id = ?", (instance,))


# -- deletion -----------------------------------------------------------------------------------


def _delete_tree(conn: sqlite3.Connection, instance: str, force: bool) -> DeleteResult:
    row = conn.execute(
        "SELECT parent_instance_id FROM instances WHERE instance_id = ?", (instance,)
    ).fetchone()
    if row is None:
        raise InstanceNotFound(f"no instance {instance!r}")
    if row[0] is not None:
        raise InvalidArgument(
            f"instance {instance!r} is a sub-orchestration of {row[0]!r}; delete its root instance instead"
        )
    tree = [
        r[0]
        for r in conn.execute(
            "WITH RECURSIVE tree (id) AS (SELECT ? UNION SELECT i.instance_id FROM instances i"
            " JOIN tree ON i.parent_instance_id = tree.id) SELECT id FROM tree",
            (instance,),
        )
    ]
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS durox_doomed (instance_id TEXT PRIMARY KEY) WITHOUT ROWID"
    )
    conn.execute("DELETE FROM temp.durox_doomed")
    conn.executemany("INSERT INTO temp.durox_doomed VALUES (?)", [(i,) for i in tree])
    try:
        if not force:
            running = conn.execute(
                "SELECT i.instance_id FROM instances i JOIN executions e ON e.instance_id = i.instance_id"
                " AND e.execution_id = i.current_execution_id WHERE e.status = 'Running'"
                " AND i.instance_id IN (SELECT instance_id FROM temp.durox_doomed) LIMIT 1"
            ).fetchone()
            if running is not None:
                which = (
                    "it is"
                    if running[0] == instance
                    else f"its sub-orchestration {running[0]!r} is"
                )
                raise InvalidArgument(
                    f"cannot delete instance {instance!r}: {which} still running; cancel it first or pass force=True"
                )
        executions, events = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(event_count), 0) FROM executions"
            " WHERE instance_id IN (SELECT instance_id FROM temp.durox_doomed)"
        ).fetchone()
        orchestrator = conn.execute(
            "DELETE FROM orchestrator_queue WHERE instance_id IN (SELECT instance_id FROM temp.durox_doomed)"
        ).rowcount
        # Sessions are keyed by session id alone and may serve other instances;
        # once expired and unused they go through cleanup_orphaned_sessions.
        activities = conn.execute(
            "DELETE FROM worker_queue WHERE instance_id IN (SELECT instance_id FROM temp.durox_doomed)"
        ).rowcount
        # Executions, history, locks and KV go by ON DELETE CASCADE. Deleting the
        # lock row makes an in-flight turn's ack fail with LockLost.
        conn.execute(
            "DELETE FROM instances WHERE instance_id IN (SELECT instance_id FROM temp.durox_doomed)"
        )
    finally:
        conn.execute("DELETE FROM temp.durox_doomed")
    return DeleteResult(
        instances_deleted=len(tree),
        executions_deleted=executions,
        events_deleted=events,
        queue_messages_deleted=orchestrator + activities,
    )


# -- shared statements ------------------------------------------------------------------------


def _insert_instance(
    conn: sqlite3.Connection, start: StartOrchestration, now: int, *, ignore_existing: bool = False
) -> None:
    verb = "INSERT OR IGNORE" if ignore_existing else "INSERT"
    cursor = conn.execute(
        f"{verb} INTO instances (instance_id, orchestration_name, orchestration_version, parent_instance_id,"
        " created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
        (start.instance, start.name, start.version, start.parent_instance, now, now),
    )
    if cursor.rowcount:
        conn.execute(
            "INSERT INTO executions (instance_id, execution_id, started_at_ms) VALUES (?, 1, ?)",
            (start.instance, now),
        )


def _insert_message(
    conn: sqlite3.Connection, instance: str, work_item: str, visible_at: int
) -> None:
    conn.execute(
        "INSERT INTO orchestrator_queue (instance_id, work_item, visible_at) VALUES (?, ?, ?)",
        (instance, work_item, visible_at),
    )


def _activity_row(activity: ExecuteActivity) -> tuple[Any, ...]:
    return (
        activity.instance,
        activity.execution_id,
        activity.id,
        activity.session_id,
        activity.tag,
        dumps_record(activity),
    )


def _insert_activities(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], now: int) -> None:
    conn.executemany(
        "INSERT INTO worker_queue (instance_id, execution_id, activity_id, session_id, tag, work_item, visible_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(*row, now) for row in rows],
    )


def _held_lock(conn: sqlite3.Connection, token: str, now: int, action: str) -> str:
    row = conn.execute(
        "SELECT instance_id, locked_until FROM instance_locks WHERE lock_token = ?", (token,)
    ).fetchone()
    if row is None or row[1] <= now:
        raise LockLost(_lock_lost_message(token, action), operation=f"{action}_orchestration_item")
    return str(row[0])


def _touch_session(conn: sqlite3.Connection, session_id: str | None, now: int) -> None:
    if session_id is not None:
        conn.execute(
            "UPDATE sessions SET last_activity_at = ? WHERE session_id = ? AND locked_until > ?",
            (now, session_id, now),
        )


def _current_kv(conn: sqlite3.Connection, instance: str) -> dict[str, str]:
    """The baseline overlaid with the running execution's writes (tombstones remove)."""
    values = dict(
        conn.execute(
            "SELECT key, value FROM kv_store WHERE instance_id = ?", (instance,)
        ).fetchall()
    )
    for key, value in conn.execute(
        "SELECT key, value FROM kv_delta WHERE instance_id = ?", (instance,)
    ):
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


def _work_item_query(
    tag_filter: TagFilter, session: SessionClaim | None
) -> tuple[str, dict[str, Any]]:
    """The claim query for one filter: oldest eligible unlocked row, or oldest row whose lock expired.

    Unlocked rows are looked up once per tag (``tag IS NULL`` for untagged
    work), each a seek into ``worker_queue_ready (tag, id)`` that stops at its
    first eligible row; an ``IN`` list would sort every matching row instead.
    """
    params: dict[str, Any] = {}
    tag_branches: list[str] = []
    if tag_filter.mode in ("default_only", "default_and"):
        tag_branches.append("tag IS NULL")
    for index, tag in enumerate(tag_filter.names):
        params[f"tag{index}"] = tag
        tag_branches.append(f"tag = :tag{index}")
    if tag_filter.mode == "any":
        tag_branches = ["1"]  # id order over all unlocked rows
    if session is None:
        session_clause = "session_id IS NULL"
    else:
        params["owner"] = session.owner_id
        session_clause = (
            "(session_id IS NULL OR NOT EXISTS (SELECT 1 FROM sessions s"
            " WHERE s.session_id = worker_queue.session_id"
            " AND s.locked_until > :now AND s.worker_id <> :owner))"
        )
    columns = "id, work_item, session_id, attempt_count"
    eligible = f"visible_at <= :now AND {session_clause}"
    branches = [
        f"SELECT * FROM (SELECT {columns} FROM worker_queue WHERE lock_token IS NULL AND {tag}"
        f" AND {eligible} ORDER BY id LIMIT 1)"
        for tag in tag_branches
    ]
    # Rows whose lock expired (a crashed worker): few, found through the expiry index.
    any_tag = " OR ".join(tag_branches)
    branches.append(
        f"SELECT * FROM (SELECT {columns} FROM worker_queue WHERE lock_token IS NOT NULL"
        f" AND locked_until <= :now AND ({any_tag}) AND {eligible} ORDER BY id LIMIT 1)"
    )
    return " UNION ALL ".join(branches) + " ORDER BY id LIMIT 1", params


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- small helpers -----------------------------------------------------------------------------------


def _lock_lost_message(token: str, action: str) -> str:
    return (
        f"cannot {action}: instance lock token {token!r} is unknown or expired "
        "(the lock timed out, or the instance was deleted); another worker may own the instance now"
    )


def _activity_lock_lost_message(token: str, action: str) -> str:
    return (
        f"cannot {action}: activity lock token {token!r} is unknown or expired "
        "(the activity was cancelled by its orchestration, or its lock timed out)"
    )


def _is_lock_error(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    # Python 3.10 has no error codes on exceptions; fall back to SQLite's messages.
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and (
        "database is locked" in text or "is locked" in text
    )


_MIGRATION_FILE = re.compile(r"^sqlite_(\d{3})_[a-z0-9_]+\.sql$")


def _load_migrations() -> list[list[str]]:
    """The schema scripts in order, each split into statements (migration N is index N-1)."""
    folder = importlib.resources.files("durox.providers") / "sql"
    found = sorted(
        (int(match.group(1)), entry.name)
        for entry in folder.iterdir()
        if (match := _MIGRATION_FILE.match(entry.name))
    )
    if [number for number, _ in found] != list(range(1, len(found) + 1)):
        raise ProviderError(
            f"SQLite migrations are not numbered 1..N: {[name for _, name in found]}"
        )
    return [_split_statements((folder / name).read_text(encoding="utf-8")) for _, name in found]


def _split_statements(script: str) -> list[str]:
    # executescript() would COMMIT first, so statements run one by one inside
    # the migration transaction.
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ProviderError(f"unterminated statement in SQLite migration: {current.strip()[:60]!r}")
    return statements
