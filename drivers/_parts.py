"""What the orchestration and worker sides of one runtime share."""

from __future__ import annotations

import logging
import threading
import time
from typing import Literal

from durox.core.errors import ProviderClosed, ProviderError
from durox.core.options import RuntimeOptions
from durox.core.registry import Registry
from durox.drivers._cache import StickyCache
from durox.drivers._metrics import Metrics
from durox.drivers._timers import Timers
from durox.providers.base import Provider

__all__ = ["ACK_RETRIES", "RuntimeParts"]

log = logging.getLogger("durox.runtime")

ACK_RETRIES = 5
"""Retries of an ack after a retryable storage error: 10, 20, 40, 80, 160 ms (Duroxide's schedule)."""


class RuntimeParts:
    """The provider, registry, options, cache, counters and clock thread of one runtime.

    Also the two runtime-wide flags: ``hard_stopped`` (the shutdown deadline
    passed: turns still deciding are abandoned instead of committed) and
    ``closed``.
    """

    def __init__(
        self, provider: Provider, registry: Registry, options: RuntimeOptions, runtime_id: str
    ) -> None:
        self.provider = provider
        self.registry = registry
        self.options = options
        self.cache = StickyCache(options.sticky_cache_size)
        self.metrics = Metrics()
        self.timers = Timers(f"durox-timers-{runtime_id}")
        self.hard_stopped = False
        self.closed = threading.Event()
        self.fetch_errors = {"orchestration": 0, "activity": 0}
        try:
            provider.now_ms()
            self._provider_clock = True
        except NotImplementedError:
            self._provider_clock = False

    @property
    def stopped(self) -> bool:
        """True past the shutdown deadline or after close: fetch nothing new."""
        return self.hard_stopped or self.closed.is_set()

    def now_ms(self) -> int:
        """The provider's clock when it has one (tests inject clocks), else the wall clock."""
        if self._provider_clock:
            return int(self.provider.now_ms())
        return int(time.time() * 1000)

    def fetch_failed(self, side: Literal["orchestration", "activity"], exc: ProviderError) -> float:
        """Log a failed fetch; return how long the slot should back off (Duroxide's schedule)."""
        count = self.fetch_errors[side] = self.fetch_errors[side] + 1
        if isinstance(exc, ProviderClosed):
            log.error("%s fetch: the provider is closed; stop the runtime", side)
            return 1.0
        delay = min(0.1 * 2**count, 3.0) if exc.retryable else 0.1
        log.warning("%s fetch failed (%s); retrying in %.1fs", side, exc, delay)
        return delay
