"""The drivers on PostgreSQL: work written by another process arrives through LISTEN/NOTIFY."""

from __future__ import annotations

import uuid

import pytest

from durox import Registry

from .conftest import make_harness

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_schema():
    psycopg = pytest.importorskip("psycopg")
    from durox.providers.testing.builtin import drop_postgres_schema, postgres_dsn

    try:
        psycopg.connect(postgres_dsn(), connect_timeout=3).close()
    except Exception as exc:  # no server: this module's tests cannot run here
        pytest.skip(f"no PostgreSQL server at {postgres_dsn()!r}: {exc}")
    schema = f"durox_drv_{uuid.uuid4().hex[:8]}"
    yield postgres_dsn(), schema
    drop_postgres_schema(postgres_dsn(), schema)


@pytest.mark.parametrize("driver", ["threads", "asyncio", "trio"])
def test_notifications_wake_dispatchers_for_other_processes_work(driver, pg_schema, tmp_path):
    from durox.drivers.threads import Client
    from durox.providers.postgres import PostgresProvider

    dsn, schema = pg_schema
    registry = Registry()

    @registry.activity("Ping")
    def ping(ctx, n):
        return n + 1

    @registry.orchestration("Remote")
    def remote(ctx, n):
        n = yield ctx.schedule_activity("Ping", n)
        return (yield ctx.schedule_activity("Ping", n))

    harness = make_harness(driver, "memory", "cache", tmp_path)
    runtime_store = PostgresProvider(dsn, schema=schema)
    other_process = PostgresProvider(dsn, schema=schema)  # no in-process wake-ups from here
    try:
        # A 60 s backstop poll: only NOTIFY can make this finish in time.
        with harness.runtime(registry, provider=runtime_store, poll_interval=60.0):
            client = Client(other_process)
            client.start_orchestration("remote", "Remote", 1)
            assert client.wait_for_orchestration("remote", timeout=20).output == 3
    finally:
        other_process.close()
        runtime_store.close()
        harness.close()
