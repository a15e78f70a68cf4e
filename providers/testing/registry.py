"""The list of conformance checks and the environment each one runs in.

A check is a plain function ``check(env) -> None`` that asserts; category
modules register theirs with :func:`check`. Both runners — the pytest base
class and :func:`~durox.providers.testing.check_provider` — read the same list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import attrs

from durox.providers.base import Provider, ProviderAdmin
from durox.providers.testing.clock import ManualClock
from durox.providers.testing.factory import ProviderFactory

__all__ = ["ALL_CHECKS", "Check", "CheckSkipped", "Env", "check"]


class CheckSkipped(Exception):
    """A check does not apply to this provider (e.g. it has no management capability)."""


@attrs.define
class Env:
    """What a check gets: a fresh provider, its clock, and the factory that made it."""

    factory: ProviderFactory
    clock: ManualClock
    provider: Provider

    @property
    def admin(self) -> ProviderAdmin:
        """The provider's management capability (checks needing it declare ``admin=True``)."""
        if not isinstance(self.provider, ProviderAdmin):
            raise CheckSkipped(f"{type(self.provider).__name__} does not implement ProviderAdmin")
        return cast(ProviderAdmin, self.provider)

    def advance(self, seconds: float) -> None:
        """Move the provider's time forward."""
        self.clock.advance(seconds)


CheckFn = Callable[[Env], None]


@attrs.frozen
class Check:
    """One registered conformance check."""

    category: str
    name: str
    run: CheckFn
    needs_admin: bool = False
    multiprocess: bool = False

    @property
    def id(self) -> str:
        """``category.name``, stable across runs."""
        return f"{self.category}.{self.name}"

    @property
    def doc(self) -> str:
        """The check function's docstring: the property it asserts."""
        return (self.run.__doc__ or "").strip()


ALL_CHECKS: list[Check] = []
"""Every registered check, in registration order (filled when the suite is imported)."""


def check(
    category: str, *, admin: bool = False, multiprocess: bool = False
) -> Callable[[CheckFn], CheckFn]:
    """Register the decorated function as a conformance check of ``category``."""

    def register(fn: CheckFn) -> CheckFn:
        entry = Check(
            category=category,
            name=fn.__name__,
            run=fn,
            needs_admin=admin,
            multiprocess=multiprocess,
        )
        if any(c.id == entry.id for c in ALL_CHECKS):
            raise ValueError(f"conformance check {entry.id} is registered twice")
        ALL_CHECKS.append(entry)
        return fn

    return register
