"""Factories for durox's own providers, so their tests and yours run the same suite.

The SQLite and PostgreSQL modules are imported only when a factory creates
a provider, so importing this module needs neither.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from durox.providers.base import Provider
from durox.providers.memory import MemoryProvider
from durox.providers.testing.clock import ManualClock
from durox.providers.testing.factory import ProviderFactory

__all__ = [
    "DEFAULT_POSTGRES_DSN",
    "MemoryFactory",
    "PostgresFactory",
    "SqliteFileFactory",
    "SqliteMemoryFactory",
    "drop_postgres_schema",
    "postgres_dsn",
]

DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_dsn() -> str:
    """The test server: ``DUROX_TEST_POSTGRES_DSN`` or the local default."""
    return os.environ.get("DUROX_TEST_POSTGRES_DSN", DEFAULT_POSTGRES_DSN)


class MemoryFactory(ProviderFactory):
    """Fresh :class:`~durox.providers.memory.MemoryProvider` instances on the manual clock."""

    def create(self, clock: ManualClock) -> Provider:
        """A new, empty in-memory provider."""
        return MemoryProvider(clock=clock.now_ms)


class SqliteMemoryFactory(ProviderFactory):
    """``SqliteProvider.in_memory()`` stores on the manual clock."""

    def create(self, clock: ManualClock) -> Provider:
        """A new, empty in-memory SQLite store."""
        from durox.providers.sqlite import SqliteProvider

        provider: Provider = SqliteProvider.in_memory(clock=clock.now_ms)
        return provider


class SqliteFileFactory(ProviderFactory):
    """``SqliteProvider(path)`` on a new file per provider, under ``directory`` (a temp dir by default)."""

    supports_multiprocess = True

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self._owns_directory = directory is None
        self._directory = (
            Path(directory)
            if directory is not None
            else Path(tempfile.mkdtemp(prefix="durox-conf-"))
        )
        self._paths: dict[int, Path] = {}

    def create(self, clock: ManualClock) -> Provider:
        """A new SQLite file store."""
        from durox.providers.sqlite import SqliteProvider

        path = self._directory / f"store-{uuid.uuid4().hex[:12]}.db"
        provider: Provider = SqliteProvider(str(path), clock=clock.now_ms)
        self._paths[id(provider)] = path
        return provider

    def destroy(self, provider: Provider) -> None:
        """Close the provider and delete its file and WAL side files."""
        provider.close()
        path = self._paths.pop(id(provider), None)
        if path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    def reopen_spec(self, provider: Provider) -> Callable[[], Provider]:
        """``SqliteProvider(path)`` on the same file, for another process."""
        from durox.providers.sqlite import SqliteProvider

        return functools.partial(SqliteProvider, str(self._paths[id(provider)]))

    def close(self) -> None:
        """Remove the temp directory if this factory made it."""
        if self._owns_directory:
            shutil.rmtree(self._directory, ignore_errors=True)


class PostgresFactory(ProviderFactory):
    """``PostgresProvider`` on a new schema per provider, dropped by :meth:`destroy`.

    Time moves through ``clock_offset_ms``, added to the database clock.
    """

    supports_multiprocess = True

    def __init__(self, dsn: str | None = None) -> None:
        self.dsn = dsn or postgres_dsn()
        self._schemas: dict[int, str] = {}

    def create(self, clock: ManualClock) -> Provider:
        """A new provider on a fresh ``durox_test_<uuid8>`` schema."""
        from durox.providers.postgres import PostgresProvider

        schema = f"durox_test_{uuid.uuid4().hex[:8]}"
        provider: Provider = PostgresProvider(
            self.dsn, schema=schema, clock_offset_ms=lambda: clock.offset_ms
        )
        self._schemas[id(provider)] = schema
        return provider

    def destroy(self, provider: Provider) -> None:
        """Close the provider, then drop its schema over a connection of our own.

        Dropping it ourselves works even when the check closed the provider.
        """
        schema = self._schemas.pop(id(provider), None)
        try:
            provider.close()
        finally:
            if schema is not None:
                drop_postgres_schema(self.dsn, schema)

    def reopen_spec(self, provider: Provider) -> Callable[[], Provider]:
        """``PostgresProvider(dsn, schema=...)`` on the same schema, for another process."""
        from durox.providers.postgres import PostgresProvider

        return functools.partial(PostgresProvider, self.dsn, schema=self._schemas[id(provider)])


def drop_postgres_schema(dsn: str, schema: str) -> None:
    """``DROP SCHEMA … CASCADE``, for test cleanup."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
