"""Provider fixtures: one factory per built-in provider, skipped when it is not available here.

SQLite and PostgreSQL factories skip while their module has not been written;
PostgreSQL also skips when no server answers at ``DUROX_TEST_POSTGRES_DSN``
(and fails instead when the ``CI`` environment variable is set).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from durox.providers.testing import (
    MemoryFactory,
    PostgresFactory,
    ProviderFactory,
    SqliteFileFactory,
    SqliteMemoryFactory,
)
from durox.providers.testing.builtin import postgres_dsn


def _require_provider_module(module: str) -> None:
    if importlib.util.find_spec(f"durox.providers.{module}") is None:
        pytest.skip(f"providers/{module}.py not present yet")


@functools.lru_cache(maxsize=1)
def _postgres_problem() -> str | None:
    import psycopg

    try:
        with psycopg.connect(postgres_dsn(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL server answers at DUROX_TEST_POSTGRES_DSN={postgres_dsn()!r}: {exc}"
    return None


@pytest.fixture
def memory_factory() -> ProviderFactory:
    """Factory of MemoryProvider instances."""
    return MemoryFactory()


@pytest.fixture
def sqlite_file_factory(tmp_path: Path) -> Iterator[ProviderFactory]:
    """Factory of SqliteProvider stores on files under ``tmp_path``."""
    _require_provider_module("sqlite")
    factory = SqliteFileFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
def sqlite_memory_factory() -> ProviderFactory:
    """Factory of ``SqliteProvider.in_memory()`` stores."""
    _require_provider_module("sqlite")
    return SqliteMemoryFactory()


@pytest.fixture
def postgres_factory() -> Iterator[ProviderFactory]:
    """Factory of PostgresProvider instances, one fresh schema each."""
    _require_provider_module("postgres")
    problem = _postgres_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    factory = PostgresFactory()
    yield factory
    factory.close()
