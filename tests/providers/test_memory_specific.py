"""MemoryProvider details the shared suite does not cover, and proof that the suite catches broken providers."""

from __future__ import annotations

import doctest
import subprocess
import sys
import time
from collections.abc import Sequence

import pytest

from durox.core.commit import Commit, KvOp
from durox.core.errors import InvalidArgument
from durox.providers import MemoryProvider
from durox.providers import memory as memory_module
from durox.providers.base import Provider
from durox.providers.testing import ManualClock, MemoryFactory, ProviderFactory, check_provider
from durox.providers.testing import clock as clock_module
from durox.providers.testing import runner as runner_module
from durox.providers.testing.suite import ALL_CHECKS, categories


def test_default_clock_is_the_wall_clock() -> None:
    provider = MemoryProvider()
    before = time.time_ns() // 1_000_000
    assert before - 5 <= provider.now_ms() <= time.time_ns() // 1_000_000 + 5


def test_lock_timeouts_must_be_positive() -> None:
    provider = MemoryProvider(clock=ManualClock().now_ms)
    with pytest.raises(InvalidArgument):
        provider.fetch_orchestration_item(lock_timeout=0)
    with pytest.raises(InvalidArgument):
        provider.renew_orchestration_lock("t", lock_timeout=-1)


def test_manual_clock_only_moves_forward() -> None:
    clock = ManualClock(start_ms=10)
    clock.advance(0.25)
    assert (clock.now_ms(), clock.offset_ms) == (260, 250)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_doctests() -> None:
    for module in (memory_module, clock_module, runner_module):
        assert doctest.testmod(module).failed == 0


def test_suite_is_large_and_covers_every_category() -> None:
    assert len(ALL_CHECKS) >= 150
    assert set(categories()) >= {
        "instance_creation", "atomicity", "error_handling", "instance_locking", "lock_expiration",
        "queue_semantics", "multi_execution", "poison_message", "cancellation", "deletion", "prune",
        "management", "custom_status", "tag_filtering", "sessions", "kv_store", "history_fetch", "concurrency",
    }  # fmt: skip


def test_check_provider_passes_on_memory() -> None:
    report = check_provider(MemoryFactory())
    assert report.ok, report.summary()
    assert len(report.passed) + len(report.skipped) == len(ALL_CHECKS)
    multiprocess = {c.id for c in ALL_CHECKS if c.multiprocess}
    assert multiprocess and {o.check_id for o in report.skipped} == multiprocess


def test_unknown_category_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown conformance categories"):
        check_provider(MemoryFactory(), categories=["nope"])


# -- the suite must fail providers that break the contract ------------------------------


class _IgnoresLocks(MemoryProvider):
    def _live_lock(self, instance: str, now: int) -> None:  # type: ignore[override]
        return None


class _AcceptsDuplicateEvents(MemoryProvider):
    @staticmethod
    def _check_event_ids(commit: Commit, execution: object) -> None:  # type: ignore[override]
        return None


class _LeaksCurrentKvIntoSnapshot(MemoryProvider):
    @staticmethod
    def _apply_kv(row: object, ops: Sequence[KvOp], *, fold: bool) -> None:  # type: ignore[override]
        MemoryProvider._apply_kv(row, ops, fold=True)  # type: ignore[arg-type]


class _Factory(ProviderFactory):
    def __init__(self, cls: type[MemoryProvider]) -> None:
        self.cls = cls

    def create(self, clock: ManualClock) -> Provider:
        return self.cls(clock=clock.now_ms)


@pytest.mark.parametrize(
    ("cls", "category", "must_fail"),
    [
        (
            _IgnoresLocks,
            "instance_locking",
            "instance_locking.locked_instance_is_not_fetched_again",
        ),
        (
            _AcceptsDuplicateEvents,
            "atomicity",
            "atomicity.duplicate_event_id_rejects_the_whole_commit",
        ),
        (
            _LeaksCurrentKvIntoSnapshot,
            "kv_store",
            "kv_store.snapshot_excludes_current_execution_writes",
        ),
    ],
)
def test_suite_catches_a_broken_provider(
    cls: type[MemoryProvider], category: str, must_fail: str
) -> None:
    report = check_provider(_Factory(cls), categories=[category])
    assert not report.ok
    assert must_fail in [o.check_id for o in report.failed], report.summary()


def test_importing_the_suite_needs_neither_pytest_nor_psycopg() -> None:
    code = (
        "import sys, durox.providers, durox.providers.testing\n"
        "from durox.providers import MemoryProvider\n"
        "bad = [m for m in ('pytest', 'psycopg') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
