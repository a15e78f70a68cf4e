"""The orchestration side of a runtime: fetch a locked instance, decide its turn, commit it.

:class:`TurnRunner` is what every driver's orchestration slots call (on a
thread): the turn's content comes from :func:`durox.core.turn.decide_turn`;
this module only carries it out — sticky cache, lock renewal, ack with
retries or abandon, metrics, logs and in-process wake-ups.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, cast

import attrs

from durox.core.errors import LockLost, ProviderError
from durox.core.items import OrchestrationItem
from durox.core.options import lock_renewal_interval
from durox.core.turn import AbandonTurn, AckTurn, decide_turn, needs_full_history
from durox.drivers import _hub
from durox.drivers._cache import CachedState
from durox.drivers._parts import ACK_RETRIES, RuntimeParts

__all__ = ["TurnRunner"]

log = logging.getLogger("durox.runtime")
orchestration_log = logging.getLogger("durox.orchestration")

_TRACE_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_DECIDE_CRASH_DELAY_MS = 1000
_MIN_BUSY_DELAY: float = 0.005  # back-off floor while visible work belongs to a locked instance


class TurnRunner:
    """Runs orchestration turns for one runtime. Thread-safe: every slot shares it."""

    def __init__(self, parts: RuntimeParts) -> None:
        self.parts = parts
        self.provider = parts.provider
        self.registry = parts.registry
        self.options = parts.options
        self.cache = parts.cache
        self.metrics = parts.metrics
        self.timers = parts.timers
        self._busy_idles = 0
        self._orch_renew_every = lock_renewal_interval(parts.options.orchestrator_lock_timeout)

    def run_orchestration_once(self) -> float | None:
        """Fetch and run one turn. ``None``: work was done, loop at once; else idle seconds to wait.

        Never raises: a dispatcher slot must survive anything one item does.
        """
        if self.parts.stopped:
            return float(self.options.poll_interval)  # past the shutdown deadline: take nothing new
        try:
            return self._run_orchestration_once()
        except Exception:
            log.exception("orchestration dispatcher error (a durox bug); continuing")
            return 1.0

    def _run_orchestration_once(self) -> float | None:
        taken: dict[str, Any] = {}
        known = self._known_history(taken) if self.cache.enabled else None
        try:
            item = self.provider.fetch_orchestration_item(
                lock_timeout=self.options.orchestrator_lock_timeout, known_history=known
            )
        except ProviderError as exc:
            for state in taken.values():
                self.cache.put(state)
            return float(self.parts.fetch_failed("orchestration", exc))
        self.parts.fetch_errors["orchestration"] = 0
        if item is None:
            for state in taken.values():
                self.cache.put(state)
            return self._orchestrator_idle_delay()
        cached = taken.pop(item.instance, None)
        for state in taken.values():  # consulted for instances the fetch did not return
            self.cache.put(state)
        self._busy_idles = 0
        self._turn(item, cached)
        return None

    def _known_history(self, taken: dict[str, Any]) -> Callable[[str, int], int]:
        def known(instance: str, execution_id: int) -> int:
            # Pop the state now: from here until the ack this turn owns it, and
            # no eviction by another slot can strand a tail-only fetch.
            state = taken.get(instance) or self.cache.take(instance)
            if state is None:
                return 0
            if state.execution_id != execution_id:
                return 0  # stale: another execution started elsewhere; dropped
            taken[instance] = state
            return int(state.history_len)

        return known

    def _orchestrator_idle_delay(self) -> float:
        poll = float(self.options.poll_interval)
        try:
            due = self.provider.next_orchestrator_visible_ms()
        except ProviderError:
            return poll
        if due is None:
            self._busy_idles = 0
            return poll
        delta = float(due - self.parts.now_ms()) / 1000.0
        if delta > 0:
            self._busy_idles = 0
            return min(poll, delta)
        # Visible work we could not lock: its instance is busy elsewhere. Back off
        # exponentially rather than spin until that lock is released.
        self._busy_idles += 1
        return min(poll, _MIN_BUSY_DELAY * 2.0 ** min(self._busy_idles, 10))

    def _turn(self, item: OrchestrationItem, cached: Any) -> None:
        lease = self.timers.every(
            self._orch_renew_every, lambda: self._renew_orchestration(item.lock_token)
        )
        try:
            hit = (
                cached is not None
                and cached.execution_id == item.execution_id
                and cached.history_len == item.history_len
            )
            self.metrics.add("cache_hits" if hit else "cache_misses")
            if needs_full_history(item, cached):
                # A tail we cannot continue (the state went stale in between): read it all.
                try:
                    events = self.provider.read_history(item.instance, item.execution_id)
                except ProviderError as exc:
                    log.warning("reading the history of %r failed: %s", item.instance, exc)
                    self._abandon_turn(item, 100)
                    return
                item = attrs.evolve(item, history=tuple(events), history_offset=0)
                cached = None
            try:
                decision = decide_turn(
                    item,
                    self.registry,
                    options=self.options,
                    now_ms=self.parts.now_ms(),
                    entropy=os.urandom(16),
                    cached=cached,
                )
            except Exception:
                log.exception(
                    "deciding a turn of %r failed (a durox bug); retrying later", item.instance
                )
                self._abandon_turn(item, _DECIDE_CRASH_DELAY_MS)
                return
            if self.parts.hard_stopped:
                self._abandon_turn(item, 0)
                return
            if isinstance(decision, AbandonTurn):
                self.metrics.add("orchestration_abandons")
                log.warning(
                    "instance %r: %s; retrying in %.1fs (attempt %d)",
                    item.instance,
                    decision.reason,
                    decision.delay_ms / 1000,
                    item.attempt_count,
                )
                self._abandon_turn(item, decision.delay_ms)
                return
            if self._ack_turn(item, decision):
                self._after_ack(item, decision)
        finally:
            lease.cancel()

    def _renew_orchestration(self, token: str) -> bool:
        try:
            self.provider.renew_orchestration_lock(
                token, lock_timeout=self.options.orchestrator_lock_timeout
            )
        except LockLost:
            return False  # the ack will find out and drop the turn
        except ProviderError as exc:
            log.warning("renewing an orchestration lock failed: %s", exc)
        return True

    def _abandon_turn(self, item: OrchestrationItem, delay_ms: int) -> None:
        self.cache.evict(item.instance)
        try:
            self.provider.abandon_orchestration_item(item.lock_token, delay_ms=delay_ms)
        except LockLost:
            log.debug("abandon of %r: lock already gone", item.instance)
        except ProviderError as exc:
            log.warning("abandon of %r failed (%s); its lock will expire", item.instance, exc)

    def _ack_turn(self, item: OrchestrationItem, decision: AckTurn) -> bool:
        for attempt in range(ACK_RETRIES + 1):
            try:
                self.provider.ack_orchestration_item(item.lock_token, decision.commit)
                return True
            except LockLost as exc:
                self.metrics.add("lock_lost")
                log.warning(
                    "turn of %r dropped: %s (another worker will redo it)", item.instance, exc
                )
                return False
            except ProviderError as exc:
                if exc.retryable and attempt < ACK_RETRIES:
                    self.metrics.add("ack_retries")
                    time.sleep(0.01 * 2**attempt)
                    continue
                log.error(
                    "ack of a turn of %r failed: %s; retrying the turn later", item.instance, exc
                )
                self._abandon_turn(item, _DECIDE_CRASH_DELAY_MS)
                return False
            except Exception:
                # The provider refused the commit as invalid: a durox bug, not the user's.
                log.exception("the provider refused the commit of a turn of %r", item.instance)
                self._abandon_turn(item, _DECIDE_CRASH_DELAY_MS)
                return False
        return False  # pragma: no cover - the loop always returns

    def _after_ack(self, item: OrchestrationItem, decision: AckTurn) -> None:
        commit = decision.commit
        if decision.state is not None:
            self.cache.put(cast(CachedState, decision.state))
        if commit.worker_items or commit.orchestrator_items:
            _hub.work_enqueued(
                self.provider,
                orchestrator=len({item.message.instance for item in commit.orchestrator_items}),
                worker=len(commit.worker_items),
            )
        if commit.cancelled_activities:
            _hub.activities_cancelled(self.provider, commit.cancelled_activities)
        for trace in decision.traces:
            orchestration_log.log(
                _TRACE_LEVELS.get(trace.level, logging.INFO),
                "[%s/%s] %s",
                trace.instance,
                trace.execution_id,
                trace.message,
                extra={
                    "instance_id": trace.instance,
                    "execution_id": trace.execution_id,
                    "orchestration_name": trace.orchestration_name,
                    "orchestration_version": trace.orchestration_version,
                },
            )
        self._count_turn(item, decision)
        _hub.state_changed(
            self.provider, item.instance
        )  # last: a woken client sees the metrics too

    def _count_turn(self, item: OrchestrationItem, decision: AckTurn) -> None:
        self.metrics.add("orchestration_turns")
        outcome = decision.outcome
        name = decision.commit.orchestration_name
        if outcome == "completed":
            self.metrics.add("orchestrations_completed")
            log.info("orchestration %r (%s) completed", item.instance, name)
        elif outcome == "continued_as_new":
            self.metrics.add("orchestrations_continued_as_new")
            log.info("orchestration %r (%s) continued as new", item.instance, name)
        elif outcome == "failed":
            self.metrics.add("orchestrations_failed")
            details = decision.failure
            if details is not None:
                self.metrics.failure(details.category)
            message = details.display_message() if details else "unknown failure"
            if decision.poisoned:
                self.metrics.add("orchestrations_poisoned")
                log.error("orchestration %r (%s) poisoned: %s", item.instance, name, message)
            else:
                log.warning("orchestration %r (%s) failed: %s", item.instance, name, message)
        elif outcome == "discarded":
            log.debug("messages for finished instance %r discarded", item.instance)
