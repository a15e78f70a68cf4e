"""One orchestration turn, decided purely: a locked item in, a commit (or an abandon) out.

This is the whole orchestration-side step that every driver shares::

    item = provider.fetch_orchestration_item(lock_timeout=..., known_history=cache.known)
    decision = decide_turn(item, registry, options=options, now_ms=clock(), entropy=os.urandom(16),
                           cached=cache.get(item.instance))
    if isinstance(decision, AbandonTurn):
        provider.abandon_orchestration_item(item.lock_token, delay_ms=decision.delay_ms)
    else:
        provider.ack_orchestration_item(item.lock_token, decision.commit)
        cache.put(decision.state)   # or evict when state is None / the ack failed

It handles poison (too many attempts), unreadable history, unregistered
orchestrations (abandon with backoff), messages for finished instances
(discarded), start/continue-as-new, the replay itself (:func:`run_turn`) and the
translation of the replay's decisions into a :class:`~durox.core.commit.Commit`.
"""

from __future__ import annotations

from typing import Literal, Union

import attrs

from durox.core.commit import Commit
from durox.core.errors import ErrorDetails

__all__ = ["AbandonTurn", "AckTurn", "Trace", "TurnDecision"]

TraceLevel = Literal["debug", "info", "warning", "error"]


@attrs.frozen(kw_only=True)
class Trace:
    """A log line the orchestration (``ctx.trace_*``) or the engine asked for.

    Core never logs; drivers write these to the ``durox.orchestration`` logger.
    Replayed traces are never produced again.
    """

    level: TraceLevel
    message: str
    instance: str
    execution_id: int
    orchestration_name: str
    orchestration_version: str


TurnOutcome = Literal["continue", "completed", "failed", "continued_as_new", "discarded"]


@attrs.frozen(kw_only=True)
class AckTurn:
    """Ack the item with ``commit``.

    ``state`` is the in-memory replay state to cache for the instance's next
    turn (``None``: nothing worth caching, evict). ``outcome``/``failure``/
    ``poisoned`` feed metrics and logs.
    """

    commit: Commit
    state: object | None = None
    traces: tuple[Trace, ...] = ()
    outcome: TurnOutcome = "continue"
    failure: ErrorDetails | None = None
    poisoned: bool = False


@attrs.frozen(kw_only=True)
class AbandonTurn:
    """Release the item unprocessed; it becomes visible again after ``delay_ms``."""

    delay_ms: int
    reason: str


TurnDecision = Union[AckTurn, AbandonTurn]
