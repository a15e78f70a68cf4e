"""Imports every category module, so that :data:`ALL_CHECKS` holds the whole suite."""

from __future__ import annotations

from durox.providers.testing import (  # noqa: F401  (imported to register their checks)
    atomicity,
    cancellation,
    concurrency,
    custom_status,
    deletion,
    errors,
    history_fetch,
    instance_creation,
    kv,
    lock_expiration,
    locking,
    management,
    multi_execution,
    poison,
    prune,
    queues,
    sessions,
    tags,
)
from durox.providers.testing.registry import ALL_CHECKS

__all__ = ["ALL_CHECKS", "categories"]


def categories() -> list[str]:
    """Category names, in suite order."""
    return list(dict.fromkeys(c.category for c in ALL_CHECKS))
