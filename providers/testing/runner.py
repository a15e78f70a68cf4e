"""Run conformance checks without pytest: :func:`check_provider` and its report."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from typing import Literal

import attrs

from durox.providers.base import ProviderAdmin
from durox.providers.testing.clock import ManualClock
from durox.providers.testing.factory import ProviderFactory
from durox.providers.testing.registry import Check, CheckSkipped, Env

__all__ = ["CheckOutcome", "ConformanceReport", "check_provider", "run_check"]


def run_check(check: Check, factory: ProviderFactory) -> None:
    """Run one check on a fresh provider; raise what it raises (``CheckSkipped`` if it does not apply)."""
    if check.multiprocess and not factory.supports_multiprocess:
        raise CheckSkipped(
            f"{type(factory).__name__} does not support several processes on one store"
        )
    clock = ManualClock()
    provider = factory.create(clock)
    try:
        if check.needs_admin and not isinstance(provider, ProviderAdmin):
            raise CheckSkipped(f"{type(provider).__name__} does not implement ProviderAdmin")
        check.run(Env(factory=factory, clock=clock, provider=provider))
    finally:
        factory.destroy(provider)


@attrs.frozen
class CheckOutcome:
    """How one check went."""

    check_id: str
    status: Literal["passed", "failed", "skipped"]
    detail: str = ""


@attrs.frozen
class ConformanceReport:
    """The outcome of every check of one run."""

    outcomes: tuple[CheckOutcome, ...]

    @property
    def passed(self) -> list[str]:
        """Ids of the checks that passed."""
        return [o.check_id for o in self.outcomes if o.status == "passed"]

    @property
    def failed(self) -> list[CheckOutcome]:
        """The checks that failed, with their tracebacks."""
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def skipped(self) -> list[CheckOutcome]:
        """The checks that did not apply, with the reason."""
        return [o for o in self.outcomes if o.status == "skipped"]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.failed

    def summary(self) -> str:
        """Counts, then one line per failure."""
        lines = [
            f"{len(self.passed)} passed, {len(self.failed)} failed, {len(self.skipped)} skipped"
        ]
        lines += [
            f"FAILED {o.check_id}: {o.detail.strip().splitlines()[-1] if o.detail else ''}"
            for o in self.failed
        ]
        return "\n".join(lines)


def check_provider(
    factory: ProviderFactory, *, categories: Iterable[str] | None = None, fail_fast: bool = False
) -> ConformanceReport:
    """Run every conformance check (or those of ``categories``) against ``factory``'s providers.

    >>> from durox.providers.testing import MemoryFactory
    >>> check_provider(MemoryFactory(), categories=["instance_creation"]).ok
    True
    """
    from durox.providers.testing.suite import (
        ALL_CHECKS,
    )  # importing the suite registers every check

    wanted = set(categories) if categories is not None else None
    if wanted is not None:
        unknown = wanted - {c.category for c in ALL_CHECKS}
        if unknown:
            raise ValueError(f"unknown conformance categories: {sorted(unknown)}")
    outcomes: list[CheckOutcome] = []
    for check in ALL_CHECKS:
        if wanted is not None and check.category not in wanted:
            continue
        try:
            run_check(check, factory)
        except CheckSkipped as exc:
            outcomes.append(CheckOutcome(check.id, "skipped", str(exc)))
        except Exception:
            outcomes.append(CheckOutcome(check.id, "failed", traceback.format_exc()))
            if fail_fast:
                break
        else:
            outcomes.append(CheckOutcome(check.id, "passed"))
    return ConformanceReport(tuple(outcomes))
