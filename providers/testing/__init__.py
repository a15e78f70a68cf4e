"""The provider conformance suite, importable so any provider can run it.

Two ways to run it on your provider:

* with pytest — subclass :class:`ProviderConformance` in a test file::

      from durox.providers.testing import ProviderConformance, ProviderFactory

      class MyFactory(ProviderFactory):
          def create(self, clock):
              return MyProvider(clock=clock.now_ms)

      class TestMyProvider(ProviderConformance):
          factory = MyFactory()

* without pytest — ``check_provider(MyFactory())`` returns a
  :class:`ConformanceReport` (``.ok``, ``.summary()``).

Checks move time with :class:`ManualClock` instead of sleeping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durox.providers.testing.builtin import (
    MemoryFactory,
    PostgresFactory,
    SqliteFileFactory,
    SqliteMemoryFactory,
)
from durox.providers.testing.clock import ManualClock
from durox.providers.testing.factory import ProviderFactory
from durox.providers.testing.registry import Check, CheckSkipped, Env
from durox.providers.testing.runner import (
    CheckOutcome,
    ConformanceReport,
    check_provider,
    run_check,
)

if TYPE_CHECKING:
    from durox.providers.testing.conformance import ProviderConformance

__all__ = [
    "Check",
    "CheckOutcome",
    "CheckSkipped",
    "ConformanceReport",
    "Env",
    "ManualClock",
    "MemoryFactory",
    "PostgresFactory",
    "ProviderConformance",
    "ProviderFactory",
    "SqliteFileFactory",
    "SqliteMemoryFactory",
    "check_provider",
    "run_check",
]


def __getattr__(name: str) -> Any:
    # The pytest base class imports pytest; only load it when asked for.
    if name == "ProviderConformance":
        from durox.providers.testing.conformance import ProviderConformance

        return ProviderConformance
    raise AttributeError(f"module 'durox.providers.testing' has no attribute {name!r}")
