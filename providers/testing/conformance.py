"""The pytest face of the suite: subclass :class:`ProviderConformance` in your own test file.

::

    from durox.providers.testing import ProviderConformance

    class TestMyProvider(ProviderConformance):
        factory = MyFactory()

or, for a factory that needs pytest's ``tmp_path``, override ``make_factory``.
Every registered check becomes one test method, ``test_<category>__<check>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from durox.providers.testing.factory import ProviderFactory
from durox.providers.testing.registry import Check, CheckSkipped
from durox.providers.testing.runner import run_check
from durox.providers.testing.suite import ALL_CHECKS

__all__ = ["ProviderConformance"]


class ProviderConformance:
    """Base class whose subclasses run every conformance check on their provider."""

    factory: ClassVar[ProviderFactory | None] = None
    """The factory to test; or override :meth:`make_factory`."""

    def make_factory(self, tmp_path: Path) -> ProviderFactory:
        """The factory for one test; may call ``pytest.skip`` when the provider is unavailable."""
        if self.factory is None:
            raise TypeError(f"{type(self).__name__} must set `factory` or override make_factory()")
        return self.factory

    @pytest.fixture
    def conformance_factory(self, tmp_path: Path) -> Iterator[ProviderFactory]:
        """The factory of the running test, closed after it if it was made for it."""
        factory = self.make_factory(tmp_path)
        try:
            yield factory
        finally:
            if factory is not self.factory:
                factory.close()


def _make_test(check: Check) -> Callable[..., None]:
    def test(self: Any, conformance_factory: ProviderFactory) -> None:
        try:
            run_check(check, conformance_factory)
        except CheckSkipped as exc:
            pytest.skip(str(exc))

    test.__name__ = f"test_{check.category}__{check.name}"
    test.__qualname__ = f"ProviderConformance.{test.__name__}"
    test.__doc__ = check.doc
    return test


for _check in ALL_CHECKS:
    setattr(ProviderConformance, f"test_{_check.category}__{_check.name}", _make_test(_check))
