"""One background thread per runtime for everything that happens on a clock.

Lock renewals (orchestration turns, running activities), session renewal and
orphan cleanup, and cancellation grace deadlines are all "call this at that
time" jobs. They run on a single framework-free thread so the three drivers
share them unchanged: the provider is synchronous anyway, and a renewal must
happen even while an event loop is busy.

Callbacks must be short (one provider call); they run one at a time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["TimerHandle", "Timers"]

log = logging.getLogger("durox.runtime")


class TimerHandle:
    """A scheduled job; :meth:`cancel` it to stop it (idempotent, thread-safe)."""

    __slots__ = ("_cancelled", "fn", "interval")

    def __init__(self, fn: Callable[[], bool | None], interval: float | None) -> None:
        self.fn = fn
        self.interval = interval
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        """True once cancelled (or once a repeating job asked to stop)."""
        return self._cancelled

    def cancel(self) -> None:
        """Never run this job again."""
        self._cancelled = True


class Timers:
    """A heap of jobs served by one daemon thread."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; pending jobs are dropped."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def after(self, delay: float, fn: Callable[[], object]) -> TimerHandle:
        """Run ``fn()`` once, ``delay`` seconds from now."""
        handle = TimerHandle(lambda: (fn(), False)[1], None)
        self._push(time.monotonic() + max(delay, 0.0), handle)
        return handle

    def every(self, interval: float, fn: Callable[[], bool | None]) -> TimerHandle:
        """Run ``fn()`` every ``interval`` seconds (first run one interval from now).

        ``fn`` returning ``False`` stops the repetition.
        """
        handle = TimerHandle(fn, interval)
        self._push(time.monotonic() + interval, handle)
        return handle

    def _push(self, due: float, handle: TimerHandle) -> None:
        with self._cond:
            if self._stopped:
                handle.cancel()
                return
            heapq.heappush(self._heap, (due, next(self._seq), handle))
            if self._heap[0][2] is handle:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    if self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                        continue
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, handle = heapq.heappop(self._heap)
                        break
                    self._cond.wait(timeout=(self._heap[0][0] - now) if self._heap else None)
            try:
                again = handle.fn()
            except Exception:  # a job must never kill the thread that serves all others
                log.exception("background job failed")
                again = True
            if handle.interval is not None and again is not False and not handle.cancelled:
                self._push(time.monotonic() + handle.interval, handle)
            elif handle.interval is not None:
                handle.cancel()
