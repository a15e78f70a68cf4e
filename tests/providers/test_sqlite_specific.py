"""What only the SQLite provider promises: settings, schema versions, locking, corruption, connections.

The shared behaviour (queues, locks, KV, sessions...) is the conformance
suite's job; these tests look at the file, the connections and the failure
modes that exist because there is a database underneath.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from durox.core import history
from durox.core.codec import dumps_record
from durox.core.commit import Commit, OutgoingMessage
from durox.core.errors import (
    ErrorDetails,
    InstanceNotFound,
    InvalidArgument,
    LockLost,
    PayloadError,
    ProviderClosed,
    ProviderError,
)
from durox.core.items import OrchestrationItem
from durox.core.messages import (
    ActivityResult,
    ExecuteActivity,
    ExternalRaised,
    StartOrchestration,
)
from durox.core.tags import TagFilter
from durox.providers import sqlite as sqlite_module
from durox.providers.sqlite import SqliteProvider
from durox.providers.testing import ManualClock

LOCK = 5.0
TABLES = (
    "instances",
    "executions",
    "history",
    "orchestrator_queue",
    "instance_locks",
    "worker_queue",
    "sessions",
    "kv_store",
    "kv_delta",
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "durox.db")


@pytest.fixture
def provider(path: str, clock: ManualClock) -> Iterator[SqliteProvider]:
    p = SqliteProvider(path, clock=clock.now_ms)
    yield p
    p.close()


def start(p: SqliteProvider, instance: str = "i1") -> None:
    p.create_instance(StartOrchestration(instance=instance, name="Flow", input="null"))


def fetch(p: SqliteProvider) -> OrchestrationItem:
    item = p.fetch_orchestration_item(lock_timeout=LOCK)
    assert item is not None, "expected an item"
    return item


def commit_for(item: OrchestrationItem, *events: history.Event, **fields: Any) -> Commit:
    return Commit(
        instance=item.instance,
        execution_id=item.execution_id,
        orchestration_name="Flow",
        orchestration_version="1.0.0",
        new_events=events,
        **fields,
    )


def started(event_id: int = 1) -> history.OrchestrationStarted:
    return history.OrchestrationStarted(
        event_id=event_id, timestamp_ms=0, name="Flow", version="1.0.0", input="null"
    )


def table_counts(path: str) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in TABLES
        }


def raw(path: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run SQL on the file through a connection of our own (autocommit)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# -- settings and schema ----------------------------------------------------------------------


def test_a_new_file_gets_wal_the_current_schema_and_durable_settings(
    provider: SqliteProvider, path: str
) -> None:
    conn = provider._thread_connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(
        sqlite_module._load_migrations()
    )
    assert set(TABLES) <= {
        r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    }


def test_synchronous_normal_is_an_explicit_opt_in(path: str) -> None:
    p = SqliteProvider(path, synchronous="normal", busy_timeout=2.5)
    try:
        conn = p._thread_connection()
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2_500
    finally:
        p.close()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda path: SqliteProvider(path, synchronous="WAL"), "synchronous"),
        (lambda path: SqliteProvider(path, busy_timeout=-1), "busy_timeout"),
        (lambda path: SqliteProvider(":memory:"), "in_memory"),
        (lambda path: SqliteProvider(""), "file path"),
        (lambda path: SqliteProvider(path, max_payload_bytes=0), "max_payload_bytes"),
    ],
)
def test_bad_settings_are_refused(
    path: str, make: Callable[[str], SqliteProvider], words: str
) -> None:
    with pytest.raises(InvalidArgument, match=words):
        make(path)


def test_everything_survives_closing_and_reopening_the_file(path: str, clock: ManualClock) -> None:
    p = SqliteProvider(path, clock=clock.now_ms)
    start(p)
    item = fetch(p)
    activity = ExecuteActivity(instance="i1", execution_id=1, id=2, name="Work", input="1")
    kv = history.KeyValueSet(event_id=3, timestamp_ms=0, key="k", value='"v"', updated_at_ms=7)
    p.ack_orchestration_item(
        item.lock_token,
        commit_for(
            item,
            started(),
            history.ActivityScheduled(event_id=2, timestamp_ms=0, name="Work", input="1"),
            kv,
            worker_items=(activity,),
            kv_ops=(kv,),
            custom_status_changed=True,
            custom_status="half",
        ),
    )
    before = (
        p.read_history("i1"),
        p.get_instance_status("i1"),
        p.get_kv_all_values("i1"),
        p.get_queue_depths(),
    )
    p.close()

    reopened = SqliteProvider(path, clock=clock.now_ms)
    try:
        after = (
            reopened.read_history("i1"),
            reopened.get_instance_status("i1"),
            reopened.get_kv_all_values("i1"),
            reopened.get_queue_depths(),
        )
        assert after == before
        work = reopened.fetch_work_item(lock_timeout=LOCK, tag_filter=TagFilter.default_only())
        assert work is not None and work.message == activity
    finally:
        reopened.close()


def test_a_schema_newer_than_this_code_is_refused_and_left_alone(path: str) -> None:
    SqliteProvider(path).close()
    raw(path, "PRAGMA user_version = 99")
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = real_connect(*args, **kwargs)
        opened.append(conn)
        return conn

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sqlite3, "connect", connect)
        with pytest.raises(ProviderError, match="schema version 99") as info:
            SqliteProvider(path)
    assert not info.value.retryable
    assert opened
    for conn in opened:  # the failed provider closed what it opened
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    assert raw(path, "PRAGMA user_version") == [(99,)]


def test_a_failing_migration_rolls_back_completely(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sqlite_module._load_migrations()
    broken = [*real, ["CREATE TABLE durox_half_done (x)", "THIS IS NOT SQL"]]
    monkeypatch.setattr(sqlite_module, "_load_migrations", lambda: broken)
    with pytest.raises(ProviderError, match="syntax error"):
        SqliteProvider(path)
    # The whole upgrade was one transaction: nothing of it, not even the first migration, stayed.
    assert raw(path, "PRAGMA user_version") == [(0,)]
    assert raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'") == []
    monkeypatch.undo()
    SqliteProvider(path).close()
    assert raw(path, "PRAGMA user_version") == [(len(real),)]


def test_migration_scripts_are_numbered_and_split_into_statements() -> None:
    migrations = sqlite_module._load_migrations()
    assert migrations, "no migrations found in providers/sql"
    for statements in migrations:
        assert statements and all(sqlite3.complete_statement(s) for s in statements)


# -- other connections holding the lock -------------------------------------------------------


def test_a_write_lock_held_too_long_gives_a_retryable_error_and_writes_nothing(path: str) -> None:
    p = SqliteProvider(path, busy_timeout=0.02)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        start(p, "before")
        counts = table_counts(path)
        blocker.execute("BEGIN IMMEDIATE")
        began = time.monotonic()
        with pytest.raises(ProviderError) as info:
            start(p, "during")
        assert time.monotonic() - began < 2.0, "gave up long after busy_timeout"
        assert info.value.retryable
        assert "locked" in info.value.message and "can be retried" in info.value.message
        assert "database is locked" not in info.value.message
        # Readers are not blocked by a writer in WAL mode.
        status = p.get_instance_status("before")
        assert status is not None and status.status == "Running"
        blocker.execute("ROLLBACK")
        assert table_counts(path) == counts
        start(p, "after")
        assert p.get_instance_status("after") is not None
    finally:
        blocker.close()
        p.close()


def test_a_write_lock_released_in_time_is_waited_for(path: str) -> None:
    p = SqliteProvider(path, busy_timeout=5.0)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
        release.start()
        began = time.monotonic()
        start(p)
        assert time.monotonic() - began >= 0.2  # it waited, then wrote
        release.join()
        assert p.get_instance_status("i1") is not None
    finally:
        blocker.close()
        p.close()


# -- the ack is all or nothing -----------------------------------------------------------------


def test_a_clashing_event_id_rejects_the_whole_ack(provider: SqliteProvider, path: str) -> None:
    start(provider)
    item = fetch(provider)
    provider.ack_orchestration_item(item.lock_token, commit_for(item, started()))
    provider.enqueue_orchestrator(ExternalRaised(instance="i1", name="go", data="1"))
    item = fetch(provider)
    counts = table_counts(path)
    clash = commit_for(
        item,
        history.ExternalEvent(event_id=2, timestamp_ms=0, name="go", data="1"),
        history.ExternalEvent(event_id=1, timestamp_ms=0, name="go", data="1"),
        worker_items=(
            ExecuteActivity(instance="i1", execution_id=1, id=2, name="Work", input="1"),
        ),
        status="Completed",
        output='"x"',
        custom_status_changed=True,
        custom_status="never",
    )
    with pytest.raises(ProviderError, match="event id 1 already exists") as info:
        provider.ack_orchestration_item(item.lock_token, clash)
    assert not isinstance(info.value, LockLost) and not info.value.retryable
    assert table_counts(path) == counts
    assert provider.read_history("i1") == [started()]
    assert provider.fetch_orchestration_item(lock_timeout=LOCK) is None, (
        "the lock must still be held"
    )
    status = provider.get_instance_status("i1")
    assert status is not None and (status.status, status.custom_status_version) == ("Running", 0)


def test_a_force_delete_during_a_turn_makes_its_ack_fail_and_recreates_nothing(
    provider: SqliteProvider,
) -> None:
    start(provider)
    item = fetch(provider)
    deleted = provider.delete_instance("i1", force=True)
    assert (deleted.instances_deleted, deleted.queue_messages_deleted) == (1, 1)
    with pytest.raises(LockLost):
        provider.ack_orchestration_item(item.lock_token, commit_for(item, started()))
    assert provider.get_instance_status("i1") is None
    assert provider.read_history("i1") == []
    assert provider.get_queue_depths().orchestrator_queue == 0


# -- damaged data ---------------------------------------------------------------------------------


def test_unreadable_history_is_reported_on_the_item_with_the_lock_held(
    provider: SqliteProvider, path: str
) -> None:
    start(provider)
    item = fetch(provider)
    provider.ack_orchestration_item(item.lock_token, commit_for(item, started()))
    raw(path, "UPDATE history SET event_data = '{not json' WHERE instance_id = 'i1'")
    provider.enqueue_orchestrator(ExternalRaised(instance="i1", name="go", data="1"))

    item = fetch(provider)
    assert item.history_error is not None and "cannot be read" in item.history_error
    assert (item.history, item.history_len) == ((), 1)
    assert item.messages == (ExternalRaised(instance="i1", name="go", data="1"),)
    assert provider.fetch_orchestration_item(lock_timeout=LOCK) is None, "the lock must be held"
    with pytest.raises(ProviderError, match="cannot be read"):
        provider.read_history("i1")
    # The poison path appends a failure without re-reading the damaged rows.
    failure = ErrorDetails(category="infrastructure", kind="poison", message="history unreadable")
    provider.ack_orchestration_item(
        item.lock_token,
        commit_for(
            item,
            history.OrchestrationFailed(event_id=99_999, timestamp_ms=0, details=failure),
            status="Failed",
            output=dumps_record(failure),
        ),
    )
    status = provider.get_instance_status("i1")
    assert status is not None and status.status == "Failed" and status.error == failure


def test_an_unreadable_queued_message_is_reported_too(provider: SqliteProvider, path: str) -> None:
    start(provider)
    raw(path, "UPDATE orchestrator_queue SET work_item = '[1, 2' WHERE instance_id = 'i1'")
    item = fetch(provider)
    assert item.history_error is not None and "queued message" in item.history_error
    assert item.messages == ()
    # Acking drops the damaged message with the batch.
    provider.ack_orchestration_item(item.lock_token, commit_for(item))
    assert provider.get_queue_depths().orchestrator_queue == 0


def test_an_unreadable_activity_is_a_provider_error_and_is_not_lost(
    provider: SqliteProvider, path: str, clock: ManualClock
) -> None:
    provider.enqueue_worker(
        ExecuteActivity(instance="i1", execution_id=1, id=1, name="W", input="1")
    )
    raw(path, "UPDATE worker_queue SET work_item = 'garbage'")
    with pytest.raises(ProviderError, match="cannot be read"):
        provider.fetch_work_item(lock_timeout=LOCK, tag_filter=TagFilter.any())
    clock.advance(LOCK + 1)
    assert raw(path, "SELECT COUNT(*) FROM worker_queue") == [(1,)]
    with pytest.raises(ProviderError, match="cannot be read"):
        provider.fetch_work_item(lock_timeout=LOCK, tag_filter=TagFilter.any())


def test_orphaned_messages_are_discarded_without_blocking_other_instances(
    provider: SqliteProvider, path: str
) -> None:
    # More orphaned instances than one fetch transaction cleans up, all older than the real work.
    orphans = sqlite_module._ORPHANS_PER_TRANSACTION + 8
    work_item = dumps_record(ExternalRaised(instance="x", name="go", data="1"))
    for n in range(orphans):
        raw(
            path,
            "INSERT INTO orchestrator_queue (instance_id, work_item, visible_at) VALUES (?, ?, 0)",
            (f"gone-{n}", work_item),
        )
    start(provider, "alive")
    item = fetch(provider)
    assert item.instance == "alive"
    assert raw(path, "SELECT COUNT(*) FROM orchestrator_queue WHERE instance_id LIKE 'gone-%'") == [
        (0,)
    ]


# -- bad input writes nothing -----------------------------------------------------------------------


def test_bad_input_is_refused_with_a_typed_error_and_writes_nothing(
    path: str, clock: ManualClock
) -> None:
    p = SqliteProvider(path, clock=clock.now_ms, max_payload_bytes=1_000)
    try:
        start(p)
        item = fetch(p)
        counts = table_counts(path)
        bad_calls: list[tuple[type[Exception], Callable[[], object]]] = [
            (
                InvalidArgument,
                lambda: p.create_instance(StartOrchestration(instance="", name="F", input="1")),
            ),
            (
                InvalidArgument,
                lambda: p.create_instance(
                    StartOrchestration(instance="x" * 257, name="F", input="1")
                ),
            ),
            (
                InvalidArgument,
                lambda: p.create_instance(
                    StartOrchestration(instance="a\x00b", name="F", input="1")
                ),
            ),
            (
                InvalidArgument,
                lambda: p.create_instance(StartOrchestration(instance="ok", name="", input="1")),
            ),
            (
                PayloadError,
                lambda: p.create_instance(
                    StartOrchestration(instance="ok", name="F", input="not json")
                ),
            ),
            (
                PayloadError,
                lambda: p.create_instance(
                    StartOrchestration(instance="ok", name="F", input='"' + "x" * 2_000 + '"')
                ),
            ),
            (
                InvalidArgument,
                lambda: p.create_instance(ExternalRaised(instance="ok", name="e", data="1")),  # type: ignore[arg-type]
            ),
            (
                InstanceNotFound,
                lambda: p.enqueue_orchestrator(
                    ExternalRaised(instance="nobody", name="e", data="1")
                ),
            ),
            (
                InvalidArgument,
                lambda: p.enqueue_orchestrator(
                    ExternalRaised(instance="i1", name="e", data="1"), delay_ms=-1
                ),
            ),
            (
                PayloadError,
                lambda: p.enqueue_orchestrator(ExternalRaised(instance="i1", name="e", data="{")),
            ),
            (
                InvalidArgument,
                lambda: p.enqueue_worker(
                    ExecuteActivity(instance="i1", execution_id=0, id=1, name="W", input="1")
                ),
            ),
            (InvalidArgument, lambda: p.fetch_orchestration_item(lock_timeout=0)),
            (
                InvalidArgument,
                lambda: p.fetch_work_item(lock_timeout=float("nan"), tag_filter=TagFilter.any()),
            ),
            (
                InvalidArgument,
                lambda: p.ack_orchestration_item(item.lock_token, commit_for(item, started(0))),
            ),
            (
                InvalidArgument,
                lambda: p.ack_orchestration_item(item.lock_token, commit_for(item, status="Done")),
            ),
            (
                PayloadError,
                lambda: p.ack_orchestration_item(
                    item.lock_token,
                    commit_for(item, custom_status_changed=True, custom_status="x" * 300_000),
                ),
            ),
            (
                PayloadError,
                lambda: p.ack_orchestration_item(
                    item.lock_token,
                    commit_for(
                        item,
                        orchestrator_items=(
                            OutgoingMessage(
                                message=ExternalRaised(instance="i1", name="e", data="?")
                            ),
                        ),
                    ),
                ),
            ),
            (LockLost, lambda: p.ack_orchestration_item("not-a-token", commit_for(item))),
            (LockLost, lambda: p.ack_work_item("not-a-token", None)),
            (
                InvalidArgument,
                lambda: p.ack_work_item(
                    item.lock_token, ActivityResult(instance="", execution_id=1, id=1, result="1")
                ),
            ),
        ]
        for expected, call in bad_calls:
            with pytest.raises(expected):
                call()
            assert table_counts(path) == counts, (
                f"a refused call wrote something: {expected.__name__}"
            )
        p.ack_orchestration_item(
            item.lock_token, commit_for(item, started())
        )  # the lock survived it all
    finally:
        p.close()


# -- lifecycle and connections -------------------------------------------------------------------------


def test_every_call_after_close_raises_provider_closed(provider: SqliteProvider) -> None:
    start(provider)
    provider.close()
    provider.close()  # idempotent
    calls: list[Callable[[], object]] = [
        lambda: start(provider, "other"),
        lambda: provider.enqueue_orchestrator(ExternalRaised(instance="i1", name="e", data="1")),
        lambda: provider.fetch_orchestration_item(lock_timeout=LOCK),
        lambda: provider.fetch_work_item(lock_timeout=LOCK, tag_filter=TagFilter.none()),
        lambda: provider.ack_work_item("t", None),
        lambda: provider.renew_session_locks([], lock_timeout=1, idle_timeout=1),
        lambda: provider.get_instance_status("i1"),
        lambda: provider.read_history("i1"),
        lambda: provider.list_instances(),
        lambda: provider.get_queue_depths(),
        lambda: provider.delete_instance("i1", force=True),
    ]
    for call in calls:
        with pytest.raises(ProviderClosed):
            call()


def test_close_waits_for_a_call_in_flight(provider: SqliteProvider) -> None:
    start(provider)
    inside, release = threading.Event(), threading.Event()
    fetched: list[OrchestrationItem | None] = []

    def slow_cache(instance: str, execution_id: int) -> int:
        inside.set()
        release.wait(5)
        return 0

    fetcher = threading.Thread(
        target=lambda: fetched.append(
            provider.fetch_orchestration_item(lock_timeout=LOCK, known_history=slow_cache)
        )
    )
    fetcher.start()
    assert inside.wait(5)
    closer = threading.Thread(target=provider.close)
    closer.start()
    time.sleep(0.1)
    assert closer.is_alive(), "close() returned while a call was still running"
    release.set()
    fetcher.join(5)
    closer.join(5)
    assert not closer.is_alive()
    assert len(fetched) == 1 and fetched[0] is not None and fetched[0].instance == "i1"


def test_each_thread_has_its_own_connection_and_dead_threads_lose_theirs(
    provider: SqliteProvider,
) -> None:
    together = threading.Barrier(4)

    def use() -> None:
        provider.get_instance_status("i1")

    def use_together() -> None:
        together.wait(5)  # all four alive at once, so none is swept early
        use()
        together.wait(5)

    threads = [threading.Thread(target=use_together) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(provider._connections) >= 4
    dead = [t for t in provider._connections if not t.is_alive()]
    assert dead
    alive = threading.Event()

    def use_and_stay() -> None:
        use()
        alive.wait(5)

    newcomer = threading.Thread(target=use_and_stay)
    newcomer.start()  # its new connection sweeps the dead threads' ones
    try:
        deadline = time.monotonic() + 5
        while newcomer not in provider._connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(t.is_alive() for t in provider._connections)
        assert newcomer in provider._connections
    finally:
        alive.set()
        newcomer.join()


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_many_threads_share_one_provider_without_errors_or_double_locks(
    kind: str, path: str
) -> None:
    p = SqliteProvider(path, synchronous="NORMAL") if kind == "file" else SqliteProvider.in_memory()
    names = [f"t{n}" for n in range(40)]
    for name in names:
        start(p, name)
    held: set[str] = set()
    guard = threading.Lock()
    errors: list[BaseException] = []
    done: list[str] = []

    def worker() -> None:
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(done) < len(names):
                item = p.fetch_orchestration_item(lock_timeout=30)
                if item is None:
                    time.sleep(0.001)
                    continue
                with guard:
                    assert item.instance not in held, f"{item.instance} locked twice"
                    held.add(item.instance)
                commit = commit_for(item, started(), status="Completed", output="1")
                with guard:
                    held.discard(item.instance)
                p.ack_orchestration_item(item.lock_token, commit)
                with guard:
                    done.append(item.instance)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    p.close() if kind == "memory" else None
    assert not errors, errors[:3]
    assert sorted(done) == sorted(names)
    if kind == "file":
        assert p.get_system_metrics().completed_instances == len(names)
        p.close()


# -- hot statements use indexes ---------------------------------------------------------------------------


def test_hot_statements_use_indexes_and_one_transaction_per_call(provider: SqliteProvider) -> None:
    for n in range(3):
        start(provider, f"i{n}")
    conn = provider._thread_connection()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        item = fetch(provider)
        provider.ack_orchestration_item(
            item.lock_token,
            commit_for(
                item,
                started(),
                worker_items=(
                    ExecuteActivity(
                        instance=item.instance, execution_id=1, id=2, name="W", input="1"
                    ),
                ),
            ),
        )
        work = provider.fetch_work_item(
            lock_timeout=LOCK, tag_filter=TagFilter.default_and(["gpu", "io"])
        )
        assert work is not None
        provider.ack_work_item(
            work.lock_token,
            ActivityResult(instance=item.instance, execution_id=1, id=2, result="1"),
        )
        provider.next_orchestrator_visible_ms()
    finally:
        conn.set_trace_callback(None)
    begins = [s for s in statements if s.startswith("BEGIN")]
    assert begins == ["BEGIN IMMEDIATE"] * 4 + ["BEGIN"], begins
    # Allowed: index and primary-key searches, ordered index scans (they stop at
    # LIMIT), subquery results, and the instance_locks table (one row per live turn).
    for statement in statements:
        if not statement.startswith(("SELECT", "UPDATE", "DELETE", "INSERT")):
            continue
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}")]
        scans = [
            step
            for step in plan
            if step.startswith("SCAN")
            and "USING" not in step
            and not step.startswith("SCAN (")
            and step not in ("SCAN l", "SCAN instance_locks")
        ]
        assert not scans, f"full scan in {statement!r}: {plan}"


def test_in_memory_is_private_to_each_provider() -> None:
    first, second = SqliteProvider.in_memory(), SqliteProvider.in_memory()
    try:
        start(first)
        assert first.get_instance_status("i1") is not None
        assert second.get_instance_status("i1") is None
    finally:
        first.close()
        second.close()
