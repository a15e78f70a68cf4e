"""The sticky instance cache: live replay states of recently run instances.

Replaying an instance's whole history on every turn costs O(n²) over its
life. Instead the runtime keeps the replay state a turn returned
(:attr:`durox.core.turn.AckTurn.state`) and hands it to that instance's next
turn, which then only feeds in the new events.

Ownership rules keep this correct with several dispatcher slots:

* a state is *taken out* (popped) for a turn, so no two turns can share a
  live generator;
* it is put back only after that turn's ack succeeded; a failed ack, an
  abandon or a ``None`` state simply leaves the instance uncached, and the
  next turn replays from history (a *miss* is always safe);
* :meth:`StickyCache.known_history` tells the provider how much history the
  cached state already holds, so a fetch returns only the tail.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

__all__ = ["CachedState", "StickyCache"]


class CachedState(Protocol):
    """What the runtime needs to know about a replay state (the rest is opaque)."""

    instance: str
    execution_id: int
    history_len: int


class StickyCache:
    """A thread-safe LRU map instance -> replay state, at most ``capacity`` entries (0 = off)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: OrderedDict[str, CachedState] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False when the capacity is 0: every turn replays from history."""
        return self.capacity > 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    def known_history(self, instance: str, execution_id: int) -> int:
        """History length held for ``instance`` when its cached state is of ``execution_id``, else 0."""
        with self._lock:
            state = self._states.get(instance)
            if state is None or state.execution_id != execution_id:
                return 0
            return state.history_len

    def take(self, instance: str) -> CachedState | None:
        """Pop the state of ``instance`` for a turn (``None`` on a miss)."""
        with self._lock:
            return self._states.pop(instance, None)

    def put(self, state: CachedState) -> None:
        """Keep ``state`` after a successful ack, evicting the least recently used beyond capacity."""
        if not self.enabled:
            return
        with self._lock:
            self._states[state.instance] = state
            self._states.move_to_end(state.instance)
            while len(self._states) > self.capacity:
                self._states.popitem(last=False)

    def evict(self, instance: str) -> None:
        """Forget ``instance`` (its state is stale)."""
        with self._lock:
            self._states.pop(instance, None)

    def clear(self) -> None:
        """Forget everything (runtime shutdown)."""
        with self._lock:
            self._states.clear()
