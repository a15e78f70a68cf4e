"""Runs the provider conformance suite on every built-in provider."""

from __future__ import annotations

import pytest

from durox.providers.testing import (
    MemoryFactory,
    ProviderConformance,
    ProviderFactory,
    check_provider,
)


class TestMemoryProvider(ProviderConformance):
    # The plain style a user's own test file would use.
    factory = MemoryFactory()


class TestSqliteFile(ProviderConformance):
    @pytest.fixture
    def conformance_factory(self, sqlite_file_factory: ProviderFactory) -> ProviderFactory:
        return sqlite_file_factory


class TestSqliteInMemory(ProviderConformance):
    @pytest.fixture
    def conformance_factory(self, sqlite_memory_factory: ProviderFactory) -> ProviderFactory:
        return sqlite_memory_factory


@pytest.mark.postgres
class TestPostgres(ProviderConformance):
    @pytest.fixture
    def conformance_factory(self, postgres_factory: ProviderFactory) -> ProviderFactory:
        return postgres_factory


@pytest.mark.slow
@pytest.mark.parametrize(
    "factory_fixture",
    ["memory_factory", "sqlite_file_factory", "sqlite_memory_factory", "postgres_factory"],
)
def test_concurrency_soak(factory_fixture: str, request: pytest.FixtureRequest) -> None:
    """The concurrency checks repeated 25 times: races that hide in one run show up here."""
    factory: ProviderFactory = request.getfixturevalue(factory_fixture)
    for attempt in range(25):
        report = check_provider(factory, categories=["concurrency"])
        assert report.ok, f"run {attempt + 1}: {report.summary()}"
