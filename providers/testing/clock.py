"""A clock the tests move by hand, so lock expiry and timers need no real sleeps."""

from __future__ import annotations

import threading

__all__ = ["ManualClock"]


class ManualClock:
    """Epoch milliseconds that only move when :meth:`advance` is called.

    Memory and SQLite providers take ``clock=clock.now_ms``; a provider that
    reads a database clock takes ``clock_offset_ms=lambda: clock.offset_ms`` and
    adds it to its own reading, so the same tests move its time forward too.

    >>> clock = ManualClock(start_ms=1_000)
    >>> clock.advance(1.5)
    >>> clock.now_ms(), clock.offset_ms
    (2500, 1500)
    """

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._start_ms = start_ms
        self._offset_ms = 0
        self._mutex = threading.Lock()

    def now_ms(self) -> int:
        """The current reading, in epoch milliseconds."""
        with self._mutex:
            return self._start_ms + self._offset_ms

    @property
    def offset_ms(self) -> int:
        """Milliseconds advanced in total since the clock was made."""
        with self._mutex:
            return self._offset_ms

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backward)."""
        if seconds < 0:
            raise ValueError(f"a ManualClock only moves forward, got {seconds}")
        with self._mutex:
            self._offset_ms += round(seconds * 1000)
