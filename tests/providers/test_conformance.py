"""Runs the provider conformance suite on every built-in provider."""

from __future__ import annotations

import pytest

from durox.providers.testing import ProviderConformance, ProviderFactory


class TestMemoryProvider(ProviderConformance):
    @pytest.fixture
    def conformance_factory(self, memory_factory: ProviderFactory) -> ProviderFactory:
        return memory_factory


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
