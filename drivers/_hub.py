"""In-process wake-ups: work enqueued here reaches this process's dispatchers at once.

Clients and runtimes that share one provider *object* tell each other about
what they just wrote, so an idle dispatcher never waits for its poll
interval to notice work made in the same process:

* a client start/event/cancel -> orchestration dispatchers wake;
* a turn's commit with activities -> worker dispatchers wake; with
  orchestrator messages (including future timers) -> orchestration
  dispatchers wake (and recompute when the next timer is due);
* a turn's commit that cancels activities -> the runtimes running them
  signal cancellation at once instead of at their next lock renewal;
* an activity result -> orchestration dispatchers wake;
* any committed turn (status, custom status, KV may have changed) -> clients
  blocked in a ``wait_for_*`` poll again at once.

Work written by other processes is found by the slow backstop poll (or, on
PostgreSQL, by LISTEN/NOTIFY through ``provider.wait_for_work``).

Listeners are called on the notifying thread and must only hand the news to
their own loop in a thread-safe way; they never block.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from durox.core.commit import ActivityRef

__all__ = [
    "WAKE_ALL",
    "Listener",
    "activities_cancelled",
    "on_next_change",
    "state_changed",
    "subscribe",
    "work_enqueued",
]


class Listener(Protocol):
    """What a runtime exposes to be woken."""

    def wake_orchestrator(self, count: int) -> None:
        """``count`` new orchestrator-queue messages (or timers) exist: wake up to that many slots."""

    def wake_worker(self, count: int) -> None:
        """``count`` new activities exist: wake up to that many worker slots."""

    def cancel_activities(self, refs: Iterable[ActivityRef]) -> None:
        """These activities were cancelled by their orchestration."""


WAKE_ALL = 1 << 30
"""Wake count meaning every idle slot (shutdown, notifications from other processes)."""

_lock = threading.Lock()
# Keyed by id(provider): a provider need not be hashable or weak-referenceable.
# Runtimes unsubscribe when they stop, so nothing here outlives its runtime.
_listeners: dict[int, tuple[Listener, ...]] = {}


def subscribe(provider: object, listener: Listener) -> Callable[[], None]:
    """Register ``listener`` for news about ``provider``; returns the unsubscribe function."""
    key = id(provider)
    with _lock:
        _listeners[key] = (*_listeners.get(key, ()), listener)

    def unsubscribe() -> None:
        with _lock:
            remaining = tuple(item for item in _listeners.get(key, ()) if item is not listener)
            if remaining:
                _listeners[key] = remaining
            else:
                _listeners.pop(key, None)

    return unsubscribe


def _current(provider: object) -> tuple[Listener, ...]:
    with _lock:
        return _listeners.get(id(provider), ())


def work_enqueued(provider: object, *, orchestrator: int = 0, worker: int = 0) -> None:
    """Tell every runtime on ``provider`` how many queue messages were just written.

    Runtimes wake only that many idle slots: waking them all would make the
    rest fetch nothing, a wasted write transaction each.
    """
    for listener in _current(provider):
        if orchestrator:
            listener.wake_orchestrator(int(orchestrator))
        if worker:
            listener.wake_worker(int(worker))


def activities_cancelled(provider: object, refs: Iterable[ActivityRef]) -> None:
    """Tell every runtime on ``provider`` that these activities were cancelled."""
    refs = tuple(refs)
    if refs:
        for listener in _current(provider):
            listener.cancel_activities(refs)


_change_waiters: dict[tuple[int, str], list[Callable[[], object]]] = {}


def on_next_change(
    provider: object, instance: str, callback: Callable[[], object]
) -> Callable[[], None]:
    """Call ``callback()`` once, at the next turn of ``instance`` committed on ``provider``.

    Returns a canceller.
    """
    key = (id(provider), instance)
    with _lock:
        _change_waiters.setdefault(key, []).append(callback)

    def cancel() -> None:
        with _lock:
            waiters = _change_waiters.get(key)
            if waiters and callback in waiters:
                waiters.remove(callback)
                if not waiters:
                    del _change_waiters[key]

    return cancel


def state_changed(provider: object, instance: str) -> None:
    """A turn of ``instance`` was committed on ``provider``: wake the clients waiting on it."""
    with _lock:
        waiters = _change_waiters.pop((id(provider), instance), None)
    for callback in waiters or ():
        # A waiter whose loop has ended has nobody left to wake.
        with contextlib.suppress(Exception):
            callback()
