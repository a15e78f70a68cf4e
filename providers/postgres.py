"""PostgresProvider: durox storage for many workers on many machines.

Built on psycopg 3 and psycopg-pool. The rules it follows, and why:

* **One clock.** Lock expiry and message visibility are judged by the
  database clock (``statement_timestamp()`` in epoch ms), never by a worker's,
  so nodes with skewed clocks agree on who owns what. ``clock_offset_ms`` adds
  a test-controlled offset to that clock.
* **Short transactions.** Every write is one short transaction, most of them
  a single statement (a turn's whole commit is one call of the ``ack_turn``
  SQL function); none stays open while user code runs. Deadlocks,
  serialization failures and lock timeouts are retried with jittered backoff.
* **Claims that neither block nor lie.** Workers claim activities with
  ``FOR UPDATE SKIP LOCKED``; instances are claimed by the ``claim_instance``
  SQL function (peek, per-instance ``pg_try_advisory_xact_lock``, guarded
  upsert of the lock row), which returns nothing only when nothing is
  claimable.
* **Wake-ups.** Calls that enqueue work ``NOTIFY`` the schema's channel right
  after their commit (never inside it, which would serialize commits);
  :meth:`PostgresProvider.wait_for_work` lets idle dispatchers sleep until
  then. Polling stays as a backstop: a notification is only a hint.
* **Safe start-up.** Versioned migrations run in one transaction under a
  ``pg_advisory_xact_lock``, so many processes may start at once on an empty
  database.

Install with ``pip install durox[postgres]``.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as _exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError(
        "PostgresProvider needs psycopg 3 and psycopg-pool; install them with: pip install 'durox[postgres]'"
    ) from _exc

from durox.core import history
from durox.core.codec import dumps_record, loads_event, loads_work_item
from durox.core.commit import Commit, ExecutionStatus, KvOp
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
    ORCHESTRATOR_MESSAGE_TYPES,
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

__all__ = ["SCHEMA_VERSION", "PostgresProvider", "redact_dsn"]

T = TypeVar("T")

SCHEMA_VERSION = 1
"""The newest schema version this code creates and understands."""

_MIGRATIONS: tuple[tuple[int, str], ...] = ((1, "postgres_0001_schema.sql"),)

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")

# "now" in epoch ms on the database clock plus the test offset. statement_timestamp()
# is stable within a statement, so the planner may still use indexes on it.
_NOW = "(floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint + %(off)s::bigint)"

# SQLSTATEs after which the server has rolled the transaction back, so running
# it again is safe: deadlock, serialization failure, lock wait timeout, and a
# cached plan invalidated by a concurrent migration.
_RETRY_SQLSTATES = frozenset({"40P01", "40001", "55P03", "0A000"})
_LOCK_LOST_STATE = "DX001"
_WRONG_INSTANCE_STATE = "DX002"

Queue = Literal["orchestrator", "worker"]


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``, safe to show in errors and logs.

    >>> redact_dsn("postgresql://app:s3cret@db:5432/prod")
    'postgresql://app:***@db:5432/prod'
    >>> redact_dsn("host=db password='a b' user=app")
    'host=db password=*** user=app'
    """
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
        except ValueError:
            return re.sub(r"//[^@/]*@", "//***@", dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{hostinfo}"
        query = parts.query
        if query:
            pairs = [
                (k, "***" if k.lower() == "password" else v)
                for k, v in parse_qsl(query, keep_blank_values=True)
            ]
            query = urlencode(pairs, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)


def _dsn_password(dsn: str) -> str | None:
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        return None
    return str(password) if password else None


class PostgresProvider(Provider, ProviderAdmin):  # type: ignore[misc, unused-ignore]  # Any when mypy cannot see through the editable finder
    """Durable storage in a PostgreSQL schema, shared by any number of processes.

    ``dsn`` is a libpq connection string or URI. ``schema`` (default
    ``"durox"``) holds every table; it is created and migrated on start-up, so
    several applications (or tests) can share a database with one schema each.
    ``pool_size`` bounds this process's connections (size it to the runtime's
    orchestration plus worker concurrency, plus two for clients);
    ``wait_for_work`` uses one more, dedicated connection.
    ``clock_offset_ms`` (tests only) returns milliseconds added to the database
    clock, so a test can move time forward without sleeping.

    Raises :class:`~durox.errors.ProviderError` when the server cannot be
    reached (the message shows the DSN with its password redacted) and
    :class:`~durox.errors.InvalidArgument` for a bad schema name or option.
    """

    name = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "durox",
        pool_size: int = 10,
        clock_offset_ms: Callable[[], int] | None = None,
        connect_timeout: float = 10.0,
        acquire_timeout: float = 30.0,
        statement_timeout: float = 30.0,
        lock_wait_timeout: float = 5.0,
        idle_in_transaction_timeout: float = 60.0,
        max_retries: int = 8,
        application_name: str | None = None,
    ) -> None:
        if not isinstance(dsn, str):
            raise InvalidArgument(f"dsn must be a connection string, got {type(dsn).__name__}")
        if (
            not isinstance(schema, str)
            or not _SCHEMA_NAME.fullmatch(schema)
            or schema.lower().startswith("pg_")
        ):
            raise InvalidArgument(
                f"schema {schema!r} must be 1-48 letters, digits or underscores, not starting with a digit or 'pg_'"
            )
        if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 1:
            raise InvalidArgument(f"pool_size must be a whole number >= 1, got {pool_size!r}")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise InvalidArgument(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        self.schema = schema
        self.channel = f"{schema}_work"
        self._dsn = dsn
        self._redacted = redact_dsn(dsn)
        self._password = _dsn_password(dsn)
        self._offset_hook = clock_offset_ms
        self._max_retries = max_retries
        self._acquire_timeout = check_timeout(acquire_timeout, "acquire_timeout") / 1000
        self._connect_kwargs = self._connection_settings(
            connect_timeout=check_timeout(connect_timeout, "connect_timeout"),
            statement_ms=check_timeout(statement_timeout, "statement_timeout"),
            lock_ms=check_timeout(lock_wait_timeout, "lock_wait_timeout"),
            idle_ms=check_timeout(idle_in_transaction_timeout, "idle_in_transaction_timeout"),
            application_name=application_name or f"durox-{os.getpid()}",
        )
        self._sql = _Statements(sql.Identifier(schema).as_string(None))
        self._closed = False
        self._listener: _WorkListener | None = None
        self._listener_lock = threading.Lock()
        self._migrate()
        self._pool: ConnectionPool[Any] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs={**self._connect_kwargs, "autocommit": True},
            open=False,
            timeout=self._acquire_timeout,
            name=f"durox-{schema}",
        )
        self._pool.open(wait=False)
        self._notifier = _Notifier(self._send_notifications)

    # -- connections, errors and retries ----------------------------------------

    def _connection_settings(
        self,
        *,
        connect_timeout: int,
        statement_ms: int,
        lock_ms: int,
        idle_ms: int,
        application_name: str,
    ) -> dict[str, Any]:
        try:
            given = conninfo_to_dict(self._dsn)
        except psycopg.Error as exc:
            raise InvalidArgument(
                f"cannot parse the PostgreSQL DSN {self._redacted!r}: {self._scrub(str(exc))}"
            ) from None
        # Keep the user's own server options, and add ours after them.
        options = " ".join(
            part
            for part in (
                str(given.get("options") or ""),
                f"-c statement_timeout={statement_ms}",
                f"-c lock_timeout={lock_ms}",
                f"-c idle_in_transaction_session_timeout={idle_ms}",
            )
            if part
        )
        settings: dict[str, Any] = {
            "options": options,
            "application_name": given.get("application_name") or application_name,
            "connect_timeout": given.get("connect_timeout") or max(1, connect_timeout // 1000),
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        return settings

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def _connect(self, **extra: Any) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self._dsn, **{**self._connect_kwargs, **extra})
        except psycopg.Error as exc:
            raise ProviderError(
                f"cannot connect to PostgreSQL at {self._redacted}: {self._scrub(str(exc)).strip()}",
                retryable=True,
                operation="connect",
            ) from None

    def _off(self) -> int:
        if self._offset_hook is None:
            return 0
        return int(self._offset_hook())

    def _check_open(self) -> None:
        if self._closed:
            raise ProviderClosed()

    def _run(
        self,
        operation: str,
        body: Callable[[psycopg.Connection[Any]], T],
        *,
        read_only: bool = False,
    ) -> T:
        """Run ``body`` on a pooled connection, retrying transient failures.

        ``body`` runs whole transactions; the server rolled those back for the
        SQLSTATEs in ``_RETRY_SQLSTATES``, so they are simply run again. A lost
        connection is retried only for reads: for a write the commit may have
        happened, and the caller must find out by reading state.
        """
        self._check_open()
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._pool.connection() as conn:
                    return body(conn)
            except PoolTimeout:
                self._check_open()
                raise ProviderError(
                    f"{operation}: no PostgreSQL connection became free within {self._acquire_timeout:g} s; "
                    "raise pool_size or lower the runtime's concurrency",
                    retryable=True,
                    operation=operation,
                ) from None
            except psycopg.Error as exc:
                self._check_open()
                state = exc.sqlstate or ""
                if state == _LOCK_LOST_STATE:
                    raise LockLost(f"{operation}: {_primary(exc)}", operation=operation) from None
                if state == _WRONG_INSTANCE_STATE:
                    raise InvalidArgument(f"{operation}: {_primary(exc)}") from None
                connection_lost = isinstance(exc, psycopg.OperationalError) and (
                    not state or state.startswith("08") or state in ("57P01", "57P02", "57P03")
                )
                transient = state in _RETRY_SQLSTATES or (connection_lost and read_only)
                if connection_lost:
                    self._pool.check()  # drop the other dead connections too
                if transient and attempt <= self._max_retries:
                    time.sleep(min(1.0, 0.005 * 2**attempt) * random.uniform(0.5, 1.5))
                    continue
                raise ProviderError(
                    f"{operation} failed: {self._scrub(_primary(exc))}"
                    + (
                        " (the connection was lost; the outcome of this write is unknown)"
                        if connection_lost
                        else ""
                    ),
                    retryable=transient or connection_lost or state == "57014",
                    operation=operation,
                ) from None

    def _read_one(
        self, operation: str, statement: bytes, params: dict[str, Any] | None = None
    ) -> tuple[Any, ...] | None:
        """Run one read-only statement; its first row, or ``None``."""
        return self._run(
            operation,
            lambda conn: conn.execute(statement, params).fetchone(),
            read_only=True,
        )

    def _read_all(
        self, operation: str, statement: bytes, params: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one read-only statement; all its rows."""
        return self._run(
            operation,
            lambda conn: conn.execute(statement, params).fetchall(),
            read_only=True,
        )

    def _run_count(
        self,
        operation: str,
        statement: bytes,
        params: dict[str, Any] | None = None,
        *,
        read_only: bool = False,
    ) -> int:
        """Run one statement whose row starts with a count (or a flag word); 0 when no row comes back."""

        def body(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(statement, params).fetchone()
            return int(row[0]) if row else 0

        return self._run(operation, body, read_only=read_only)

    def _notify(self, *, orchestrator: bool = False, worker: bool = False) -> None:
        """Tell listening dispatchers (in every process) that a queue got work; returns at once.

        The NOTIFY is sent after the write committed, by a background thread
        in a transaction of its own: a transaction that notifies holds a
        database-wide lock through its commit, so notifying inside the writes
        would serialize every writer's WAL flush (measured: about 4x fewer
        commits per second with 8 writers). Requests that pile up while one
        NOTIFY is in flight are merged into the next.
        """
        if orchestrator or worker:
            self._notifier.request(orchestrator=orchestrator, worker=worker)

    def _send_notifications(self, payloads: list[str]) -> None:
        try:
            with self._pool.connection() as conn:
                conn.execute(self._sql.notify, {"chan": self.channel, "payloads": payloads})
        except psycopg.Error:
            pass  # a lost notification only delays a wake-up until the next poll

    # -- schema ------------------------------------------------------------------

    def _migrate(self) -> None:
        """Create or upgrade the schema; safe when many processes start at once."""
        with self._connect(autocommit=True) as conn:
            try:
                with conn.transaction():
                    conn.execute("SET LOCAL statement_timeout = 0")
                    conn.execute("SET LOCAL lock_timeout = 0")
                    # One migrator per schema at a time; the others wait here, then
                    # find the versions applied and do nothing.
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext('durox-migrate'), hashtext(%s))",
                        (self.schema,),
                    )
                    ident = sql.Identifier(self.schema)
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE IF NOT EXISTS {}.schema_version "
                            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                        ).format(ident)
                    )
                    row = conn.execute(
                        sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_version").format(
                            ident
                        )
                    ).fetchone()
                    current = int(row[0]) if row else 0
                    if current > SCHEMA_VERSION:
                        raise ProviderError(
                            f"schema {self.schema!r} is at version {current}, newer than this durox "
                            f"understands ({SCHEMA_VERSION}); upgrade durox",
                            operation="migrate",
                        )
                    for version, script in _MIGRATIONS:
                        if version <= current:
                            continue
                        conn.execute(self._render_migration(script))
                        conn.execute(
                            sql.SQL("INSERT INTO {}.schema_version (version) VALUES (%s)").format(
                                ident
                            ),
                            (version,),
                        )
            except psycopg.Error as exc:
                raise ProviderError(
                    f"migrating schema {self.schema!r} at {self._redacted} failed: {self._scrub(_primary(exc))}",
                    operation="migrate",
                ) from None

    def _render_migration(self, script: str) -> bytes:
        text = (
            importlib.resources.files("durox.providers")
            .joinpath("sql")
            .joinpath(script)
            .read_text(encoding="utf-8")
        )
        lock_class = _lock_class(self.schema)
        text = text.replace("__SCHEMA__", sql.Identifier(self.schema).as_string(None))
        return text.replace("__LOCK_CLASS__", str(lock_class)).encode("utf-8")

    def schema_version(self) -> int:
        """The version of the schema in the database (``SCHEMA_VERSION`` after start-up)."""
        return self._run_count("schema_version", self._sql.schema_version, read_only=True)

    def drop_schema(self) -> None:
        """Drop the schema and everything in it (tests and tools). Works after :meth:`close` too.

        Waits for other sessions' transactions on the schema to finish; retries
        if dropping deadlocks with a concurrent start-up.
        """
        for attempt in range(1, 11):
            with self._connect(autocommit=True) as conn:
                try:
                    with conn.transaction():
                        conn.execute("SET LOCAL statement_timeout = 0")
                        conn.execute(
                            "SELECT pg_advisory_xact_lock(hashtext('durox-migrate'), hashtext(%s))",
                            (self.schema,),
                        )
                        conn.execute(
                            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                                sql.Identifier(self.schema)
                            )
                        )
                    return
                except psycopg.Error as exc:
                    if (exc.sqlstate or "") in _RETRY_SQLSTATES and attempt < 10:
                        time.sleep(0.05 * attempt)
                        continue
                    raise ProviderError(
                        f"dropping schema {self.schema!r} failed: {self._scrub(_primary(exc))}",
                        operation="drop_schema",
                    ) from None

    # -- starting and messaging instances ----------------------------------------

    def create_instance(self, start: StartOrchestration) -> None:
        """See :meth:`Provider.create_instance`."""
        check_start(start)
        item = dumps_record(start)
        params = {
            "off": self._off(),
            "inst": start.instance,
            "name": start.name,
            "ver": start.version,
            "parent": start.parent_instance,
            "item": item,
        }

        if self._run_count("create_instance", self._sql.create_instance, params) == 0:
            raise InstanceAlreadyExists(f"instance {start.instance!r} already exists")
        self._notify(orchestrator=True)

    def enqueue_orchestrator(self, message: OrchestratorMessage, *, delay_ms: int = 0) -> None:
        """See :meth:`Provider.enqueue_orchestrator`."""
        check_orchestrator_message(message)
        params = {
            "off": self._off(),
            "inst": message.instance,
            "item": dumps_record(message),
            "delay": check_delay(delay_ms),
        }

        if self._run_count("enqueue_orchestrator", self._sql.enqueue_orchestrator, params) == 0:
            raise InstanceNotFound(f"instance {message.instance!r} does not exist")
        self._notify(orchestrator=True)

    def enqueue_worker(self, message: ExecuteActivity) -> None:
        """See :meth:`Provider.enqueue_worker`."""
        check_worker_message(message)
        params = {"off": self._off(), **_worker_rows([message])}
        self._run("enqueue_worker", lambda conn: conn.execute(self._sql.insert_activities, params))
        self._notify(worker=True)

    # -- orchestration turns -------------------------------------------------------

    def fetch_orchestration_item(
        self, *, lock_timeout: float, known_history: KnownHistory | None = None
    ) -> OrchestrationItem | None:
        """See :meth:`Provider.fetch_orchestration_item`.

        One statement claims the instance and returns its batch and KV
        baseline; history is read by a second one only when the caller does
        not already hold it. The claim commits first, so ``known_history``
        never runs inside an open transaction; the lock keeps other writers off
        what is read afterwards.
        """
        lock_ms = check_timeout(lock_timeout, "lock_timeout")
        token = new_lock_token()
        claim_params = {"off": self._off(), "ms": lock_ms, "tok": token}
        row = self._run(
            "fetch_orchestration_item",
            lambda conn: conn.execute(self._sql.claim_instance, claim_params).fetchone(),
        )
        if row is None:
            return None
        try:
            return self._claimed_item(row, token, known_history)
        except BaseException:
            # known_history raised, or reading history failed: give the claim
            # back as if it never happened (lock released, attempts restored).
            self._release_claim(token)
            raise

    def _release_claim(self, token: str) -> None:
        params = {"off": self._off(), "tok": token, "delay": 0, "ignore": True}
        with contextlib.suppress(ProviderError):  # else the lock simply expires
            self._run(
                "fetch_orchestration_item",
                lambda conn: conn.execute(self._sql.abandon_orchestration, params),
            )

    def _claimed_item(
        self, row: tuple[Any, ...], token: str, known_history: KnownHistory | None
    ) -> OrchestrationItem:
        instance, name, version = row[0], row[1], row[2]
        execution_id, history_len = int(row[3]), int(row[4])
        texts: list[str] = row[5] or []
        attempts: list[int] = row[6] or []
        kv_snapshot = {
            key: KvEntry(value=value, updated_at_ms=int(ts))
            for key, value, ts in zip(row[7] or (), row[8] or (), row[9] or ())
        }
        known = known_history(instance, execution_id) if known_history is not None else 0
        tail_only = history_len > 0 and known == history_len
        problem: str | None = None
        messages: list[OrchestratorMessage] = []
        for text in texts:
            try:
                message = loads_work_item(text)
            except PayloadError as exc:
                problem = f"a queued message of instance {instance!r} cannot be read: {exc}"
                continue
            if isinstance(message, ORCHESTRATOR_MESSAGE_TYPES):
                messages.append(message)
            else:
                problem = f"the orchestrator queue of {instance!r} holds a {type(message).__name__}"
        events: list[history.Event] = []
        if not tail_only and history_len > 0 and problem is None:
            params = {"inst": instance, "exec": execution_id}
            rows = self._read_all("fetch_orchestration_item", self._sql.history_rows, params)
            try:
                events = [loads_event(text) for (text,) in rows]
            except PayloadError as exc:
                problem = f"history of {instance!r} execution {execution_id} cannot be read: {exc}"
                events = []
        return OrchestrationItem(
            instance=instance,
            lock_token=token,
            execution_id=execution_id,
            orchestration_name=name,
            orchestration_version=version,
            history=tuple(events),
            history_offset=history_len if tail_only else 0,
            history_len=history_len,
            messages=tuple(messages),
            kv_snapshot=kv_snapshot,
            attempt_count=max(attempts, default=1),
            history_error=problem,
        )

    def ack_orchestration_item(self, lock_token: str, commit: Commit) -> None:
        """See :meth:`Provider.ack_orchestration_item`. One statement: the ``ack_turn`` SQL function."""
        token = check_lock_token(lock_token)
        params = _AckPlan.build(commit).params()
        params.update(off=self._off(), tok=token)

        try:
            wake = self._run_count("ack_orchestration_item", self._sql.ack_turn, params)
        except ProviderError as exc:
            if "history_pkey" in exc.message:
                raise ProviderError(
                    f"ack_orchestration_item: an event id of this turn already exists in "
                    f"{commit.instance!r} execution {commit.execution_id}; nothing was written",
                    retryable=False,
                    operation="ack_orchestration_item",
                ) from None
            raise
        self._notify(orchestrator=bool(wake & 1), worker=bool(wake & 2))

    def abandon_orchestration_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None:
        """See :meth:`Provider.abandon_orchestration_item`."""
        params = {
            "off": self._off(),
            "tok": check_lock_token(lock_token),
            "delay": check_delay(delay_ms),
            "ignore": bool(ignore_attempt),
        }

        released = self._run_count(
            "abandon_orchestration_item", self._sql.abandon_orchestration, params
        )
        if released == 0:
            raise LockLost(
                f"abandon_orchestration_item: lock token {lock_token!r} is unknown "
                "(already acked or abandoned, or taken over after expiry)",
                operation="abandon_orchestration_item",
            )
        self._notify(orchestrator=True)

    def renew_orchestration_lock(self, lock_token: str, *, lock_timeout: float) -> None:
        """See :meth:`Provider.renew_orchestration_lock`."""
        params = {
            "off": self._off(),
            "tok": check_lock_token(lock_token),
            "ms": check_timeout(lock_timeout, "lock_timeout"),
        }

        def body(conn: psycopg.Connection[Any]) -> int:
            return conn.execute(self._sql.renew_orchestration, params).rowcount

        if self._run("renew_orchestration_lock", body) == 0:
            raise LockLost(
                f"renew_orchestration_lock: lock token {lock_token!r} is unknown or expired",
                operation="renew_orchestration_lock",
            )

    # -- activities -------------------------------------------------------------------

    def fetch_work_item(
        self, *, lock_timeout: float, tag_filter: TagFilter, session: SessionClaim | None = None
    ) -> ActivityItem | None:
        """See :meth:`Provider.fetch_work_item`."""
        self._check_open()
        lock_ms, session_ms = check_work_fetch(lock_timeout, tag_filter, session)
        if tag_filter.mode == "none":
            return None
        statement = self._sql.fetch_work[(tag_filter.mode, session is not None)]
        # A lost race for a session makes the claim come back empty although a
        # candidate existed; try again (the loser now sees the session as owned).
        for _ in range(16):
            token = new_lock_token()
            params: dict[str, Any] = {
                "off": self._off(),
                "tok": token,
                "ms": lock_ms,
                "tags": list(tag_filter.names),
            }
            if session is not None:
                params.update(owner=session.owner_id, sms=session_ms)

            def body(
                conn: psycopg.Connection[Any], params: dict[str, Any] = params
            ) -> tuple[Any, ...] | None:
                return conn.execute(statement, params).fetchone()

            row = self._run("fetch_work_item", body)
            if row is None or row[2] == 0:
                return None
            if row[0] is None:
                continue
            message = loads_work_item(row[0])
            if not isinstance(message, ExecuteActivity):
                raise ProviderError(
                    f"the worker queue holds a {type(message).__name__}, not an ExecuteActivity",
                    operation="fetch_work_item",
                )
            return ActivityItem(lock_token=token, message=message, attempt_count=int(row[1]))
        return None

    def ack_work_item(self, lock_token: str, result: ActivityResult | None) -> None:
        """See :meth:`Provider.ack_work_item`."""
        token = check_lock_token(lock_token)
        check_activity_result(result)
        params = {
            "off": self._off(),
            "tok": token,
            "inst": result.instance if result is not None else None,
            "item": dumps_record(result) if result is not None else None,
        }

        def body(conn: psycopg.Connection[Any]) -> tuple[int, int]:
            row = conn.execute(self._sql.ack_work, params).fetchone()
            return (int(row[0]), int(row[1])) if row else (0, 0)

        deleted, enqueued = self._run("ack_work_item", body)
        if deleted == 0:
            raise LockLost(
                f"ack_work_item: lock token {lock_token!r} is unknown or expired "
                "(the activity was cancelled, or its lock expired)",
                operation="ack_work_item",
            )
        if enqueued:
            self._notify(orchestrator=True)

    def renew_work_item_lock(self, lock_token: str, *, lock_timeout: float) -> None:
        """See :meth:`Provider.renew_work_item_lock`."""
        params = {
            "off": self._off(),
            "tok": check_lock_token(lock_token),
            "ms": check_timeout(lock_timeout, "lock_timeout"),
        }

        if self._run_count("renew_work_item_lock", self._sql.renew_work, params) == 0:
            raise LockLost(
                f"renew_work_item_lock: lock token {lock_token!r} is unknown or expired (the activity was cancelled)",
                operation="renew_work_item_lock",
            )

    def abandon_work_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None:
        """See :meth:`Provider.abandon_work_item`."""
        params = {
            "off": self._off(),
            "tok": check_lock_token(lock_token),
            "delay": check_delay(delay_ms),
            "ignore": bool(ignore_attempt),
        }

        if self._run_count("abandon_work_item", self._sql.abandon_work, params) == 0:
            raise LockLost(
                f"abandon_work_item: lock token {lock_token!r} is unknown",
                operation="abandon_work_item",
            )
        self._notify(worker=True)

    def renew_session_locks(
        self, owner_ids: Sequence[str], *, lock_timeout: float, idle_timeout: float
    ) -> int:
        """See :meth:`Provider.renew_session_locks`."""
        owners = check_owner_ids(owner_ids)
        params = {
            "off": self._off(),
            "owners": owners,
            "ms": check_timeout(lock_timeout, "lock_timeout"),
            "idle": check_timeout(idle_timeout, "idle_timeout"),
        }
        if not owners:
            self._check_open()
            return 0
        return self._run(
            "renew_session_locks",
            lambda conn: conn.execute(self._sql.renew_sessions, params).rowcount,
        )

    def cleanup_orphaned_sessions(self) -> int:
        """See :meth:`Provider.cleanup_orphaned_sessions`."""
        params = {"off": self._off()}
        return self._run(
            "cleanup_orphaned_sessions",
            lambda conn: conn.execute(self._sql.cleanup_sessions, params).rowcount,
        )

    # -- reads ----------------------------------------------------------------------------

    def read_history(self, instance: str, execution_id: int | None = None) -> list[history.Event]:
        """See :meth:`Provider.read_history`."""
        check_id(instance)
        if execution_id is not None:
            check_execution_id(execution_id)
        params = {"inst": instance, "exec": execution_id}
        rows = self._read_all("read_history", self._sql.read_history, params)
        return [loads_event(text) for (text,) in rows]

    def get_instance_status(self, instance: str) -> InstanceStatus | None:
        """See :meth:`Provider.get_instance_status`."""
        check_id(instance)
        row = self._read_one("get_instance_status", self._sql.instance_status, {"inst": instance})
        if row is None:
            return None
        name, version, execution_id, custom_status, custom_version, stored, output = row
        return instance_status(
            instance,
            stored_status=stored,
            execution_id=execution_id,
            orchestration_name=name,
            orchestration_version=version,
            output=output,
            custom_status=custom_status,
            custom_status_version=custom_version,
        )

    def get_kv_value(self, instance: str, key: str) -> str | None:
        """See :meth:`Provider.get_kv_value`."""
        check_id(instance)
        check_kv_key(key)
        row = self._read_one("get_kv_value", self._sql.kv_value, {"inst": instance, "key": key})
        return None if row is None else row[0]

    def get_kv_all_values(self, instance: str) -> dict[str, str]:
        """See :meth:`Provider.get_kv_all_values`."""
        check_id(instance)
        rows = self._read_all("get_kv_all_values", self._sql.kv_all, {"inst": instance})
        return {key: value for key, value, _size in rows}

    def next_orchestrator_visible_ms(self) -> int | None:
        """See :meth:`Provider.next_orchestrator_visible_ms`.

        Messages a live lock holds are not reported (they come back through
        that lock); other messages of a locked instance count from when the
        lock expires, so an idle dispatcher never spins on work it cannot claim.
        """
        params = {"off": self._off()}
        row = self._read_one("next_orchestrator_visible_ms", self._sql.next_visible, params)
        return None if row is None or row[0] is None else int(row[0])

    def now_ms(self) -> int:
        """The database clock (plus the test offset), in epoch milliseconds."""
        params = {"off": self._off()}
        row = self._read_one("now_ms", self._sql.now, params)
        assert row is not None
        return int(row[0])

    # -- wake-ups -----------------------------------------------------------------------

    def wait_for_work(self, timeout: float, *, queue: Queue | None = None) -> bool:
        """Block until work may have been enqueued (by any process), or ``timeout`` seconds pass.

        Returns ``True`` when woken by a notification, ``False`` on timeout.
        ``queue`` narrows the wake-up to ``"orchestrator"`` or ``"worker"``
        work; ``None`` wakes on either. Meant for a dispatcher's idle loop::

            while running:
                item = provider.fetch_work_item(...)
                if item is None:
                    provider.wait_for_work(poll_interval, queue="worker")

        Each thread remembers what it has seen: a notification that arrives
        between that thread's fetch and its wait makes the wait return at once,
        so no wake-up is lost. Notifications are hints (a lost connection or a
        notification for work someone else claimed wakes a waiter for nothing);
        keep a poll interval as the backstop. Uses one dedicated connection,
        opened on first use, that LISTENs on the schema's channel.
        """
        self._check_open()
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout >= 0:
            raise InvalidArgument(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        if queue not in (None, "orchestrator", "worker"):
            raise InvalidArgument(f"queue must be 'orchestrator', 'worker' or None, got {queue!r}")
        with self._listener_lock:
            self._check_open()
            if self._listener is None:
                self._listener = _WorkListener(self._connect, self.channel)
            listener = self._listener
        return listener.wait(timeout, queue)

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the pool and the listening connection; later calls raise ``ProviderClosed``."""
        with self._listener_lock:
            if self._closed:
                return
            self._closed = True
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self._notifier.stop()
        self._pool.close()

    def __enter__(self) -> PostgresProvider:
        return self

    def __repr__(self) -> str:
        return f"PostgresProvider({self._redacted!r}, schema={self.schema!r})"

    # -- management -------------------------------------------------------------------

    def list_instances(self, status: ExecutionStatus | None = None) -> list[str]:
        """See :meth:`ProviderAdmin.list_instances`."""
        check_status_filter(status)
        rows = self._read_all("list_instances", self._sql.list_instances, {"status": status})
        return [row[0] for row in rows]

    def get_instance_info(self, instance: str) -> InstanceInfo:
        """See :meth:`ProviderAdmin.get_instance_info`."""
        check_id(instance)
        row = self._read_one("get_instance_info", self._sql.instance_info, {"inst": instance})
        if row is None:
            raise InstanceNotFound(f"instance {instance!r} does not exist")
        name, version, execution_id, status, output, created, updated, parent = row
        return InstanceInfo(
            instance_id=instance,
            orchestration_name=name,
            orchestration_version=version,
            current_execution_id=int(execution_id),
            status=read_status(status),
            output=output,
            created_at_ms=int(created),
            updated_at_ms=int(updated),
            parent_instance_id=parent,
        )

    def list_executions(self, instance: str) -> list[int]:
        """See :meth:`ProviderAdmin.list_executions`."""
        check_id(instance)
        rows = self._read_all("list_executions", self._sql.list_executions, {"inst": instance})
        if not rows:
            raise InstanceNotFound(f"instance {instance!r} does not exist")
        return [int(row[0]) for row in rows if row[0] is not None]

    def get_execution_info(self, instance: str, execution_id: int) -> ExecutionInfo:
        """See :meth:`ProviderAdmin.get_execution_info`."""
        check_id(instance)
        check_execution_id(execution_id)
        row = self._read_one(
            "get_execution_info", self._sql.execution_info, {"inst": instance, "exec": execution_id}
        )
        if row is None:
            raise InstanceNotFound(f"instance {instance!r} has no execution {execution_id}")
        status, output, started, completed, events = row
        return ExecutionInfo(
            execution_id=execution_id,
            status=status,
            output=output,
            started_at_ms=int(started),
            completed_at_ms=None if completed is None else int(completed),
            event_count=int(events),
        )

    def get_system_metrics(self) -> SystemMetrics:
        """See :meth:`ProviderAdmin.get_system_metrics`."""
        row = self._read_one("get_system_metrics", self._sql.system_metrics)
        assert row is not None
        total, running, completed, failed, executions, events = (int(v) for v in row)
        return SystemMetrics(
            total_instances=total,
            total_executions=executions,
            running_instances=running,
            completed_instances=completed,
            failed_instances=failed,
            total_events=events,
        )

    def get_queue_depths(self) -> QueueDepths:
        """See :meth:`ProviderAdmin.get_queue_depths`."""
        params = {"off": self._off()}
        row = self._read_one("get_queue_depths", self._sql.queue_depths, params)
        assert row is not None
        return QueueDepths(orchestrator_queue=int(row[0]), worker_queue=int(row[1]))

    def get_orchestration_stats(self, instance: str) -> OrchestrationStats | None:
        """See :meth:`ProviderAdmin.get_orchestration_stats`; history figures are the current execution's."""
        check_id(instance)
        row = self._read_one(
            "get_orchestration_stats", self._sql.orchestration_stats, {"inst": instance}
        )
        if row is None:
            return None
        events, size, pending, keys, kv_bytes = (int(v) for v in row)
        return OrchestrationStats(
            history_event_count=events,
            history_size_bytes=size,
            queue_pending_count=pending,
            kv_user_key_count=keys,
            kv_total_value_bytes=kv_bytes,
        )

    def list_children(self, instance: str) -> list[str]:
        """See :meth:`ProviderAdmin.list_children`."""
        check_id(instance)
        rows = self._read_all("list_children", self._sql.list_children, {"inst": instance})
        return [row[0] for row in rows]

    def delete_instance(self, instance: str, *, force: bool = False) -> DeleteResult:
        """See :meth:`ProviderAdmin.delete_instance`."""
        check_id(instance)
        s = self._sql

        def body(conn: psycopg.Connection[Any]) -> DeleteResult:
            with conn.transaction():
                row = conn.execute(s.parent_of, {"inst": instance}).fetchone()
                if row is None:
                    raise InstanceNotFound(f"instance {instance!r} does not exist")
                if row[0] is not None and row[1]:
                    raise InvalidArgument(
                        f"instance {instance!r} is a sub-orchestration of {row[0]!r}; delete its root instead"
                    )
                # Take the lock rows first (the same order as acks, so no deadlock):
                # an in-flight ack either commits before us, and any child it
                # created joins the tree on the next pass, or fails with LockLost.
                tree: list[str] = []
                while True:
                    found = [
                        r[0] for r in conn.execute(s.instance_tree, {"inst": instance}).fetchall()
                    ]
                    if set(found) == set(tree):
                        break
                    tree = found
                    conn.execute(s.delete_locks, {"ids": tree})
                    conn.execute(s.lock_instances, {"ids": tree})
                if not force:
                    running = conn.execute(s.running_in, {"ids": tree}).fetchone()
                    if running is not None:
                        which = (
                            "it"
                            if running[0] == instance
                            else f"its sub-orchestration {running[0]!r}"
                        )
                        raise InvalidArgument(
                            f"instance {instance!r} cannot be deleted while {which} is running; "
                            "cancel it first or pass force=True"
                        )
                counts = conn.execute(s.delete_tree, {"ids": tree}).fetchone()
                assert counts is not None
                return DeleteResult(
                    instances_deleted=int(counts[0]),
                    executions_deleted=int(counts[1]),
                    events_deleted=int(counts[2]),
                    queue_messages_deleted=int(counts[3]),
                )

        return self._run("delete_instance", body)

    def prune_executions(
        self, instance: str, *, keep_last: int | None = None, completed_before_ms: int | None = None
    ) -> PruneResult:
        """See :meth:`ProviderAdmin.prune_executions`.

        With neither option given every finished execution but the current one
        is pruned; the current execution and running ones never are.
        """
        check_id(instance)
        check_prune_options(keep_last, completed_before_ms)
        params = {"inst": instance, "keep": keep_last, "before": completed_before_ms}

        def body(conn: psycopg.Connection[Any]) -> PruneResult:
            with conn.transaction():
                if conn.execute(self._sql.lock_instance, params).fetchone() is None:
                    raise InstanceNotFound(f"instance {instance!r} does not exist")
                row = conn.execute(self._sql.prune, params).fetchone()
                assert row is not None
                return PruneResult(
                    instances_processed=1,
                    executions_deleted=int(row[0]),
                    events_deleted=int(row[1]),
                )

        return self._run("prune_executions", body)


# -- helpers ---------------------------------------------------------------------------


def _primary(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(exc) or type(exc).__name__
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    return f"{text} [{constraint}]" if constraint else text


def _lock_class(schema: str) -> int:
    """A stable 32-bit signed number for the schema: the first key of its advisory locks."""
    value = 0
    for byte in schema.encode("utf-8"):
        value = (value * 31 + byte) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _worker_rows(items: Sequence[ExecuteActivity]) -> dict[str, Any]:
    return {
        "w_inst": [m.instance for m in items],
        "w_exec": [m.execution_id for m in items],
        "w_id": [m.id for m in items],
        "w_item": [dumps_record(m) for m in items],
        "w_session": [m.session_id for m in items],
        "w_tag": [m.tag for m in items],
    }


class _AckPlan:
    """A commit checked and turned into the column arrays ``ack_turn`` takes, before any SQL runs."""

    def __init__(self, commit: Commit) -> None:
        self.commit = commit
        self.kv_clear_all: int | None = None
        self.kv_final: dict[str, tuple[str | None, int]] = {}
        self.children: list[StartOrchestration] = []

    @classmethod
    def build(cls, commit: Commit) -> _AckPlan:
        check_commit(commit)
        plan = cls(commit)
        plan._reduce_kv(commit.kv_ops)
        for out in commit.orchestrator_items:
            if (
                isinstance(out.message, StartOrchestration)
                and out.message.instance != commit.instance
            ):
                plan.children.append(out.message)
        return plan

    def _reduce_kv(self, ops: Sequence[KvOp]) -> None:
        # The net effect of the ops, in order: a clear-all tombstones every key
        # stored before it; after that each key ends with a value or a tombstone.
        for op in ops:
            if isinstance(op, history.KeyValueSet):
                self.kv_final[op.key] = (op.value, op.updated_at_ms)
            elif isinstance(op, history.KeyValueCleared):
                self.kv_final[op.key] = (None, op.timestamp_ms)
            else:  # KeyValuesCleared: check_commit lets no other op through
                self.kv_final.clear()
                self.kv_clear_all = op.timestamp_ms

    def params(self) -> dict[str, Any]:
        """Named parameters of the ``ack_turn`` statement (without ``off`` and ``tok``)."""
        c = self.commit
        outgoing = c.orchestrator_items
        cancelled = c.cancelled_activities
        return {
            "inst": c.instance,
            "exec": c.execution_id,
            "name": c.orchestration_name,
            "ver": c.orchestration_version,
            "parent": c.parent_instance,
            "cs_changed": bool(c.custom_status_changed),
            "cs": c.custom_status,
            "status": c.status,
            "output": c.output if c.status is not None else None,
            "terminal": c.is_terminal,
            "ev_id": [e.event_id for e in c.new_events],
            "ev_type": [type(e).__name__ for e in c.new_events],
            "ev_data": [dumps_record(e) for e in c.new_events],
            "kv_clear_all": self.kv_clear_all,
            "k_key": list(self.kv_final),
            "k_value": [v for v, _ in self.kv_final.values()],
            "k_ts": [t for _, t in self.kv_final.values()],
            **_worker_rows(c.worker_items),
            "c_inst": [a.instance for a in cancelled],
            "c_exec": [a.execution_id for a in cancelled],
            "c_id": [a.id for a in cancelled],
            "ch_inst": [m.instance for m in self.children],
            "ch_name": [m.name for m in self.children],
            "ch_ver": [m.version for m in self.children],
            "ch_parent": [m.parent_instance for m in self.children],
            "o_inst": [o.message.instance for o in outgoing],
            "o_item": [dumps_record(o.message) for o in outgoing],
            "o_delay": [o.delay_ms for o in outgoing],
        }


class _Statements:
    """Every SQL text the provider runs, built once per schema so psycopg can prepare them."""

    def __init__(self, schema: str) -> None:
        def q(text: str) -> bytes:
            return text.replace("{s}", schema).replace("{now}", _NOW).encode("utf-8")

        self.notify = q("SELECT pg_notify(%(chan)s, p) FROM unnest(%(payloads)s::text[]) AS p")
        self.schema_version = q("SELECT coalesce(max(version), 0) FROM {s}.schema_version")
        self.now = q("SELECT {now}")
        self.create_instance = q(
            """
            WITH i AS (
                INSERT INTO {s}.instances (instance_id, orchestration_name, orchestration_version,
                                           parent_instance_id, created_at_ms, updated_at_ms)
                VALUES (%(inst)s, %(name)s, %(ver)s, %(parent)s, {now}, {now})
                ON CONFLICT (instance_id) DO NOTHING
                RETURNING instance_id),
            e AS (
                INSERT INTO {s}.executions (instance_id, execution_id, started_at_ms)
                SELECT instance_id, 1, {now} FROM i),
            m AS (
                INSERT INTO {s}.orchestrator_queue (instance_id, work_item, visible_at)
                SELECT instance_id, %(item)s, {now} FROM i
                RETURNING 1)
            SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM m)
            """
        )
        self.enqueue_orchestrator = q(
            """
            WITH m AS (
                INSERT INTO {s}.orchestrator_queue (instance_id, work_item, visible_at)
                SELECT %(inst)s, %(item)s, {now} + %(delay)s
                  FROM {s}.instances WHERE instance_id = %(inst)s
                RETURNING 1)
            SELECT count(*) FROM m
            """
        )
        self.insert_activities = q(
            """
            SELECT {s}.insert_activities({now}, %(w_inst)s::text[], %(w_exec)s::bigint[],
                       %(w_id)s::bigint[], %(w_item)s::text[], %(w_session)s::text[],
                       %(w_tag)s::text[])
            """
        )
        self.claim_instance = q("SELECT * FROM {s}.claim_instance({now}, {now} + %(ms)s, %(tok)s)")
        self.history_rows = q(
            "SELECT event_data FROM {s}.history WHERE instance_id = %(inst)s AND execution_id = %(exec)s ORDER BY event_id"
        )
        self.ack_turn = q(
            """
            SELECT {s}.ack_turn(
                {now}, %(tok)s, %(inst)s, %(exec)s,
                %(name)s, %(ver)s, %(parent)s,
                %(cs_changed)s, %(cs)s,
                %(status)s, %(output)s, %(terminal)s,
                %(ev_id)s::bigint[], %(ev_type)s::text[], %(ev_data)s::text[],
                %(kv_clear_all)s::bigint, %(k_key)s::text[], %(k_value)s::text[], %(k_ts)s::bigint[],
                %(w_inst)s::text[], %(w_exec)s::bigint[], %(w_id)s::bigint[], %(w_item)s::text[],
                %(w_session)s::text[], %(w_tag)s::text[],
                %(c_inst)s::text[], %(c_exec)s::bigint[], %(c_id)s::bigint[],
                %(ch_inst)s::text[], %(ch_name)s::text[], %(ch_ver)s::text[], %(ch_parent)s::text[],
                %(o_inst)s::text[], %(o_item)s::text[], %(o_delay)s::bigint[])
            """
        )
        self.abandon_orchestration = q(
            """
            WITH l AS (
                DELETE FROM {s}.instance_locks
                 WHERE lock_token = %(tok)s AND locked_until > {now}
                RETURNING instance_id),
            m AS (
                UPDATE {s}.orchestrator_queue
                   SET lock_token = NULL,
                       visible_at = CASE WHEN %(delay)s > 0 THEN {now} + %(delay)s ELSE visible_at END,
                       attempt_count = CASE WHEN %(ignore)s THEN greatest(attempt_count - 1, 0) ELSE attempt_count END
                 WHERE lock_token = %(tok)s AND EXISTS (SELECT 1 FROM l)
                RETURNING 1)
            SELECT (SELECT count(*) FROM l), (SELECT count(*) FROM m)
            """
        )
        self.renew_orchestration = q(
            "UPDATE {s}.instance_locks SET locked_until = {now} + %(ms)s WHERE lock_token = %(tok)s AND locked_until > {now}"
        )
        # -- worker queue
        tag_sql = {
            "default_only": "q.tag IS NULL",
            "tags": "q.tag = ANY(%(tags)s::text[])",
            "default_and": "(q.tag IS NULL OR q.tag = ANY(%(tags)s::text[]))",
            "any": "TRUE",
        }
        self.fetch_work: dict[tuple[str, bool], bytes] = {}
        for mode, tag_condition in tag_sql.items():
            for with_session in (False, True):
                if with_session:
                    session_condition = """(q.session_id IS NULL OR NOT EXISTS (
                        SELECT 1 FROM {s}.sessions ss
                         WHERE ss.session_id = q.session_id AND ss.locked_until > {now}
                           AND ss.owner_id <> %(owner)s))"""
                    session_cte = """,
                    sess AS (
                        INSERT INTO {s}.sessions AS ss (session_id, owner_id, locked_until, last_activity_at)
                        SELECT c.session_id, %(owner)s, {now} + %(sms)s, {now} FROM c WHERE c.session_id IS NOT NULL
                        ON CONFLICT (session_id) DO UPDATE
                           SET owner_id = EXCLUDED.owner_id, locked_until = EXCLUDED.locked_until,
                               last_activity_at = EXCLUDED.last_activity_at
                         WHERE ss.locked_until <= {now} OR ss.owner_id = %(owner)s
                        RETURNING 1)"""
                    claim_condition = "AND (c.session_id IS NULL OR EXISTS (SELECT 1 FROM sess))"
                else:
                    session_condition = "q.session_id IS NULL"
                    session_cte = ""
                    claim_condition = ""
                self.fetch_work[(mode, with_session)] = q(
                    f"""
                    WITH c AS (
                        SELECT q.id, q.session_id FROM {{s}}.worker_queue q
                         WHERE q.visible_at <= {{now}}
                           AND (q.lock_token IS NULL OR q.locked_until <= {{now}})
                           AND {tag_condition}
                           AND {session_condition}
                         ORDER BY q.id
                         LIMIT 1
                         FOR UPDATE SKIP LOCKED){session_cte},
                    u AS (
                        UPDATE {{s}}.worker_queue w
                           SET lock_token = %(tok)s, locked_until = {{now}} + %(ms)s,
                               attempt_count = w.attempt_count + 1
                          FROM c
                         WHERE w.id = c.id {claim_condition}
                        RETURNING w.work_item, w.attempt_count)
                    SELECT u.work_item, u.attempt_count, (SELECT count(*) FROM c)
                      FROM (SELECT 1) AS one LEFT JOIN u ON TRUE
                    """
                )
        self.ack_work = q(
            """
            WITH d AS (
                DELETE FROM {s}.worker_queue
                 WHERE lock_token = %(tok)s AND locked_until > {now}
                RETURNING instance_id, session_id),
            m AS (
                INSERT INTO {s}.orchestrator_queue (instance_id, work_item, visible_at)
                SELECT %(inst)s::text, %(item)s::text, {now} FROM d WHERE %(item)s::text IS NOT NULL
                RETURNING 1),
            ss AS (
                UPDATE {s}.sessions s SET last_activity_at = {now}
                  FROM d WHERE s.session_id = d.session_id AND s.locked_until > {now}
                RETURNING 1)
            SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM m)
            """
        )
        self.renew_work = q(
            """
            WITH u AS (
                UPDATE {s}.worker_queue SET locked_until = {now} + %(ms)s
                 WHERE lock_token = %(tok)s AND locked_until > {now}
                RETURNING session_id),
            ss AS (
                UPDATE {s}.sessions s SET last_activity_at = {now}
                  FROM u WHERE s.session_id = u.session_id AND s.locked_until > {now}
                RETURNING 1)
            SELECT count(*) FROM u
            """
        )
        self.abandon_work = q(
            """
            WITH u AS (
                UPDATE {s}.worker_queue
                   SET lock_token = NULL, locked_until = NULL,
                       visible_at = CASE WHEN %(delay)s > 0 THEN {now} + %(delay)s ELSE visible_at END,
                       attempt_count = CASE WHEN %(ignore)s THEN greatest(attempt_count - 1, 0) ELSE attempt_count END
                 WHERE lock_token = %(tok)s AND locked_until > {now}
                RETURNING 1)
            SELECT count(*) FROM u
            """
        )
        self.renew_sessions = q(
            """
            UPDATE {s}.sessions SET locked_until = {now} + %(ms)s
             WHERE owner_id = ANY(%(owners)s::text[]) AND locked_until > {now}
               AND last_activity_at > {now} - %(idle)s
            """
        )
        self.cleanup_sessions = q(
            """
            DELETE FROM {s}.sessions s
             WHERE s.locked_until <= {now}
               AND NOT EXISTS (SELECT 1 FROM {s}.worker_queue w WHERE w.session_id = s.session_id)
            """
        )
        # -- reads
        self.read_history = q(
            """
            SELECT h.event_data FROM {s}.history h
             WHERE h.instance_id = %(inst)s
               AND h.execution_id = coalesce(%(exec)s::bigint,
                     (SELECT current_execution_id FROM {s}.instances WHERE instance_id = %(inst)s))
             ORDER BY h.event_id
            """
        )
        self.instance_status = q(
            """
            SELECT i.orchestration_name, i.orchestration_version, i.current_execution_id,
                   i.custom_status, i.custom_status_version, e.status, e.output
              FROM {s}.instances i
              LEFT JOIN {s}.executions e
                ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id
             WHERE i.instance_id = %(inst)s
            """
        )
        merged_kv = """
            SELECT s.key, s.value FROM {s}.kv_store s
             WHERE s.instance_id = %(inst)s
               AND NOT EXISTS (SELECT 1 FROM {s}.kv_delta d WHERE d.instance_id = s.instance_id AND d.key = s.key)
            UNION ALL
            SELECT d.key, d.value FROM {s}.kv_delta d WHERE d.instance_id = %(inst)s AND d.value IS NOT NULL
        """
        self.kv_value = q(f"SELECT m.value FROM ({merged_kv}) m WHERE m.key = %(key)s")
        self.kv_all = q(f"SELECT m.key, m.value, octet_length(m.value) FROM ({merged_kv}) m")
        # Messages a live lock holds come back only through it; others of a
        # locked instance wait for that lock to end as well.
        self.next_visible = q(
            """
            SELECT min(due) FROM (
                (SELECT q.visible_at AS due FROM {s}.orchestrator_queue q
                  WHERE NOT EXISTS (SELECT 1 FROM {s}.instance_locks il
                                     WHERE il.instance_id = q.instance_id AND il.locked_until > {now})
                  ORDER BY q.visible_at LIMIT 1)
                UNION ALL
                SELECT greatest(q.visible_at, il.locked_until) FROM {s}.instance_locks il
                  JOIN {s}.orchestrator_queue q ON q.instance_id = il.instance_id
                 WHERE il.locked_until > {now} AND q.lock_token IS DISTINCT FROM il.lock_token
            ) AS candidates
            """
        )
        # -- management
        self.list_instances = q(
            """
            SELECT i.instance_id FROM {s}.instances i
              LEFT JOIN {s}.executions e
                ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id
             WHERE %(status)s::text IS NULL OR coalesce(e.status, 'Running') = %(status)s::text
             ORDER BY i.created_at_ms DESC, i.created_seq DESC
            """
        )
        self.instance_info = q(
            """
            SELECT i.orchestration_name, i.orchestration_version, i.current_execution_id, e.status, e.output,
                   i.created_at_ms, i.updated_at_ms, i.parent_instance_id
              FROM {s}.instances i
              LEFT JOIN {s}.executions e
                ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id
             WHERE i.instance_id = %(inst)s
            """
        )
        self.list_executions = q(
            """
            SELECT e.execution_id FROM {s}.instances i
              LEFT JOIN {s}.executions e ON e.instance_id = i.instance_id
             WHERE i.instance_id = %(inst)s
             ORDER BY e.execution_id
            """
        )
        self.execution_info = q(
            """
            SELECT e.status, e.output, e.started_at_ms, e.completed_at_ms,
                   (SELECT count(*) FROM {s}.history h
                     WHERE h.instance_id = e.instance_id AND h.execution_id = e.execution_id)
              FROM {s}.executions e
             WHERE e.instance_id = %(inst)s AND e.execution_id = %(exec)s
            """
        )
        self.system_metrics = q(
            """
            SELECT count(*),
                   count(*) FILTER (WHERE coalesce(e.status, 'Running') = 'Running'),
                   count(*) FILTER (WHERE e.status = 'Completed'),
                   count(*) FILTER (WHERE e.status = 'Failed'),
                   (SELECT count(*) FROM {s}.executions),
                   (SELECT count(*) FROM {s}.history)
              FROM {s}.instances i
              LEFT JOIN {s}.executions e
                ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id
            """
        )
        self.queue_depths = q(
            """
            SELECT (SELECT count(*) FROM {s}.orchestrator_queue q
                     WHERE NOT EXISTS (SELECT 1 FROM {s}.instance_locks il
                                        WHERE il.lock_token = q.lock_token AND il.locked_until > {now})),
                   (SELECT count(*) FROM {s}.worker_queue w
                     WHERE w.lock_token IS NULL OR w.locked_until <= {now})
            """
        )
        self.orchestration_stats = q(
            f"""
            SELECT (SELECT count(*) FROM {{s}}.history h
                     WHERE h.instance_id = i.instance_id AND h.execution_id = i.current_execution_id),
                   (SELECT coalesce(sum(octet_length(h.event_data)), 0) FROM {{s}}.history h
                     WHERE h.instance_id = i.instance_id AND h.execution_id = i.current_execution_id),
                   (SELECT count(*) FROM {{s}}.orchestrator_queue q WHERE q.instance_id = i.instance_id),
                   (SELECT count(*) FROM ({merged_kv}) m),
                   (SELECT coalesce(sum(octet_length(m.value)), 0) FROM ({merged_kv}) m)
              FROM {{s}}.instances i
             WHERE i.instance_id = %(inst)s
            """
        )
        self.list_children = q(
            "SELECT instance_id FROM {s}.instances WHERE parent_instance_id = %(inst)s ORDER BY created_at_ms, created_seq"
        )
        self.parent_of = q(
            """
            SELECT i.parent_instance_id,
                   EXISTS (SELECT 1 FROM {s}.instances p WHERE p.instance_id = i.parent_instance_id)
              FROM {s}.instances i WHERE i.instance_id = %(inst)s
            """
        )
        self.instance_tree = q(
            """
            WITH RECURSIVE t(id) AS (
                SELECT %(inst)s::text
                UNION
                SELECT i.instance_id FROM {s}.instances i JOIN t ON i.parent_instance_id = t.id)
            SELECT id FROM t
            """
        )
        self.delete_locks = q(
            "DELETE FROM {s}.instance_locks WHERE instance_id = ANY(%(ids)s::text[])"
        )
        self.lock_instances = q(
            "SELECT instance_id FROM {s}.instances WHERE instance_id = ANY(%(ids)s::text[]) ORDER BY instance_id FOR UPDATE"
        )
        self.lock_instance = q(
            "SELECT current_execution_id FROM {s}.instances WHERE instance_id = %(inst)s FOR UPDATE"
        )
        self.running_in = q(
            """
            SELECT i.instance_id FROM {s}.instances i
              JOIN {s}.executions e ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id
             WHERE i.instance_id = ANY(%(ids)s::text[]) AND e.status = 'Running'
             ORDER BY i.instance_id <> (%(ids)s::text[])[1], i.instance_id
             LIMIT 1
            """
        )
        self.delete_tree = q(
            """
            WITH h AS (DELETE FROM {s}.history WHERE instance_id = ANY(%(ids)s::text[]) RETURNING 1),
            e AS (DELETE FROM {s}.executions WHERE instance_id = ANY(%(ids)s::text[]) RETURNING 1),
            o AS (DELETE FROM {s}.orchestrator_queue WHERE instance_id = ANY(%(ids)s::text[]) RETURNING 1),
            w AS (DELETE FROM {s}.worker_queue WHERE instance_id = ANY(%(ids)s::text[]) RETURNING session_id),
            ss AS (
                DELETE FROM {s}.sessions s
                 WHERE s.session_id IN (SELECT session_id FROM w WHERE session_id IS NOT NULL)
                   AND NOT EXISTS (SELECT 1 FROM {s}.worker_queue q
                                    WHERE q.session_id = s.session_id
                                      AND NOT (q.instance_id = ANY(%(ids)s::text[])))),
            ks AS (DELETE FROM {s}.kv_store WHERE instance_id = ANY(%(ids)s::text[])),
            kd AS (DELETE FROM {s}.kv_delta WHERE instance_id = ANY(%(ids)s::text[])),
            i AS (DELETE FROM {s}.instances WHERE instance_id = ANY(%(ids)s::text[]) RETURNING 1)
            SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM e), (SELECT count(*) FROM h),
                   (SELECT count(*) FROM o) + (SELECT count(*) FROM w)
            """
        )
        self.prune = q(
            """
            WITH doomed AS (
                SELECT e.execution_id FROM {s}.executions e
                  JOIN {s}.instances i ON i.instance_id = e.instance_id
                 WHERE e.instance_id = %(inst)s
                   AND e.execution_id <> i.current_execution_id
                   AND e.status <> 'Running'
                   AND (%(keep)s::bigint IS NULL OR e.execution_id NOT IN (
                        SELECT k.execution_id FROM {s}.executions k
                         WHERE k.instance_id = %(inst)s ORDER BY k.execution_id DESC LIMIT %(keep)s::bigint))
                   AND (%(before)s::bigint IS NULL OR e.completed_at_ms < %(before)s::bigint)),
            h AS (DELETE FROM {s}.history WHERE instance_id = %(inst)s
                    AND execution_id IN (SELECT execution_id FROM doomed) RETURNING 1),
            x AS (DELETE FROM {s}.executions WHERE instance_id = %(inst)s
                    AND execution_id IN (SELECT execution_id FROM doomed) RETURNING 1)
            SELECT (SELECT count(*) FROM x), (SELECT count(*) FROM h)
            """
        )


class _Notifier:
    """A thread that sends NOTIFYs off the callers' path, merging requests that pile up."""

    def __init__(self, send: Callable[[list[str]], None]) -> None:
        self._send = send
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def request(self, *, orchestrator: bool, worker: bool) -> None:
        with self._cond:
            if self._stopping:
                return
            if orchestrator:
                self._pending.add("o")
            if worker:
                self._pending.add("w")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="durox-notify", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                payloads, self._pending = sorted(self._pending), set()
                stopping = self._stopping
            if payloads:
                self._send(payloads)
            if stopping:
                return

    def stop(self) -> None:
        """Send what is pending, then end the thread."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join(timeout=5)


class _WorkListener:
    """A thread holding one LISTEN connection that wakes waiters on notifications."""

    _KEYS: ClassVar[dict[str | None, tuple[str, ...]]] = {
        None: ("o", "w"),
        "orchestrator": ("o",),
        "worker": ("w",),
    }

    def __init__(self, connect: Callable[..., psycopg.Connection[Any]], channel: str) -> None:
        self._connect = connect
        self._channel = channel
        self._cond = threading.Condition()
        self._generation = {"o": 0, "w": 0}
        self._seen = threading.local()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._listen, name=f"durox-listen-{channel}", daemon=True
        )
        self._thread.start()

    def wait(self, timeout: float, queue: Queue | None) -> bool:
        keys = self._KEYS[queue]
        deadline = time.monotonic() + timeout
        with self._cond:
            seen: dict[str, int] | None = getattr(self._seen, "generation", None)
            if seen is None:
                seen = dict(self._generation)
            try:
                while True:
                    if any(self._generation[k] != seen[k] for k in keys):
                        return True
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._stopping.is_set():
                        return False
                    self._cond.wait(remaining)
            finally:
                for k in keys:
                    seen[k] = self._generation[k]
                self._seen.generation = seen

    def _bump(self, payloads: Sequence[str]) -> None:
        with self._cond:
            for payload in payloads:
                if payload in self._generation:
                    self._generation[payload] += 1
            self._cond.notify_all()

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                with self._connect(autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    # Anything enqueued while we were not listening was missed:
                    # wake every waiter so it polls once.
                    self._bump(("o", "w"))
                    backoff = 0.1
                    while not self._stopping.is_set():
                        batch = [n.payload for n in conn.notifies(timeout=0.2)]
                        if batch:
                            self._bump(batch)
            except (psycopg.Error, ProviderError):
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5)
