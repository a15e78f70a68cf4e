"""Storage providers: where durox keeps history, queues, status and KV.

Providers are imported on first use (module ``__getattr__``), so
``import durox.providers`` never imports psycopg.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from durox.providers.base import Provider, ProviderAdmin

if TYPE_CHECKING:
    from durox.providers.memory import MemoryProvider
    from durox.providers.postgres import PostgresProvider
    from durox.providers.sqlite import SqliteProvider

__all__ = ["MemoryProvider", "PostgresProvider", "Provider", "ProviderAdmin", "SqliteProvider"]

_LAZY = {
    "MemoryProvider": "durox.providers.memory",
    "SqliteProvider": "durox.providers.sqlite",
    "PostgresProvider": "durox.providers.postgres",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'durox.providers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
