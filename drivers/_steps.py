"""Everything the three drivers share: one orchestration turn, one activity, housekeeping.

A driver owns loops, concurrency slots, wake-ups, cancellation and shutdown;
:class:`RuntimeCore` owns the rest, as plain synchronous methods that a
driver calls on a thread (the provider is synchronous):

* :meth:`RuntimeCore.run_orchestration_once` — fetch a locked instance,
  decide the turn (:func:`durox.core.turn.decide_turn`), ack or abandon it,
  keep the sticky cache, count, log and wake whoever the commit concerns;
* :meth:`RuntimeCore.fetch_activity` — fetch a locked activity and settle
  everything that needs no user code (poison, unregistered, system calls,
  session capacity); returns an :class:`ActivityJob` when user code must run;
* :meth:`RuntimeCore.complete_activity` / :meth:`RuntimeCore.fail_activity`
  — ack what the function returned or raised;
* lock renewal, session renewal, cancellation grace deadlines on the
  :class:`~durox.drivers._timers.Timers` thread.

No replay logic lives here: a turn's content is decided by core.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Literal, cast

import attrs

from durox.core import codec
from durox.core.activity import (
    AbandonActivity,
    FinishActivity,
    ReadKvValue,
    activity_raised,
    activity_returned,
    prepare_activity,
)
from durox.core.commit import ActivityRef
from durox.core.errors import InvalidArgument, LockLost, ProviderClosed, ProviderError
from durox.core.items import ActivityItem, OrchestrationItem
from durox.core.messages import ActivityResult
from durox.core.options import RuntimeOptions, lock_renewal_interval
from durox.core.registry import ActivityDefinition, Registry
from durox.core.turn import AbandonTurn, AckTurn, decide_turn, needs_full_history
from durox.drivers import _hub
from durox.drivers._activity import ActivityContext, AsyncWaiter, Cancellation
from durox.drivers._cache import CachedState, StickyCache
from durox.drivers._metrics import Metrics, RuntimeMetrics
from durox.drivers._timers import TimerHandle, Timers
from durox.providers.base import Provider, SessionClaim

__all__ = ["WAKE_ALL", "ActivityJob", "RuntimeCore", "check_runtime_arguments"]

WAKE_ALL = 1 << 30
"""Wake count meaning every idle slot (shutdown, notifications from other processes)."""

log = logging.getLogger("durox.runtime")
orchestration_log = logging.getLogger("durox.orchestration")

_TRACE_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_ACK_RETRIES = 5  # retryable storage errors on ack: 10, 20, 40, 80, 160 ms (Duroxide's schedule)
_SESSION_RACE_DELAY_MS = 100
_DECIDE_CRASH_DELAY_MS = 1000
_MIN_BUSY_DELAY: float = 0.005  # back-off floor while visible work belongs to a locked instance


class ActivityJob:
    """One activity whose user function is running (or about to run) on this runtime.

    The driver runs ``definition.fn(context, input)`` and reports the outcome
    with :meth:`RuntimeCore.complete_activity` / :meth:`RuntimeCore.fail_activity`.
    If the runtime gives up on it (cancellation grace period over, shutdown
    deadline) it calls the driver's abort handler, set with
    :meth:`set_abort_handler`, so the driver stops waiting for it.
    """

    def __init__(
        self,
        item: ActivityItem,
        definition: ActivityDefinition,
        value: Any,
        cancellation: Cancellation,
    ) -> None:
        self.item = item
        self.definition = definition
        self.input = value
        self.cancellation = cancellation
        self.context: ActivityContext | None = None
        self.lease: TimerHandle | None = None
        self.grace: TimerHandle | None = None
        self.state: Literal["running", "finished", "aborted"] = "running"
        self._lock = threading.Lock()
        self._abort_handler: Callable[[], object] | None = None

    @property
    def ref(self) -> ActivityRef:
        """Which scheduled activity this is."""
        message = self.item.message
        return ActivityRef(
            instance=message.instance, execution_id=message.execution_id, id=message.id
        )

    @property
    def aborted(self) -> bool:
        """True once the runtime stopped waiting for this run."""
        return self.state == "aborted"

    def set_abort_handler(self, handler: Callable[[], object]) -> None:
        """Call ``handler()`` (from any thread) when the runtime aborts this run; at once if it already did."""
        with self._lock:
            if self.state != "aborted":
                self._abort_handler = handler
                return
        handler()

    def _settle(self, state: Literal["finished", "aborted"]) -> bool:
        """Move out of ``running`` exactly once; False if someone else already did."""
        with self._lock:
            if self.state != "running":
                return False
            self.state = state
            return True

    def _take_abort_handler(self) -> Callable[[], object] | None:
        with self._lock:
            handler, self._abort_handler = self._abort_handler, None
            return handler


class _SessionTracker:
    """Distinct sessions with activities in flight on this runtime (bounded by max_sessions_per_runtime)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def full(self) -> bool:
        with self._lock:
            return len(self._counts) >= self.limit

    def acquire(self, session_id: str) -> bool:
        with self._lock:
            if session_id not in self._counts and len(self._counts) >= self.limit:
                return False
            self._counts[session_id] = self._counts.get(session_id, 0) + 1
            return True

    def release(self, session_id: str) -> None:
        with self._lock:
            left = self._counts.get(session_id, 0) - 1
            if left > 0:
                self._counts[session_id] = left
            else:
                self._counts.pop(session_id, None)


def check_runtime_arguments(provider: object, registry: object, options: object) -> None:
    """Refuse what a Runtime cannot run with, before anything starts."""
    if not isinstance(provider, Provider):
        raise InvalidArgument(f"Runtime needs a durox provider, got {type(provider).__name__}")
    if not isinstance(registry, Registry):
        raise InvalidArgument(f"Runtime needs a durox.Registry, got {type(registry).__name__}")
    if not isinstance(options, RuntimeOptions):
        raise InvalidArgument(
            f"options must be a durox.RuntimeOptions, got {type(options).__name__}"
        )


class RuntimeCore:
    """The framework-free part of a runtime. See the module docstring."""

    def __init__(
        self,
        provider: Provider,
        registry: Registry,
        options: RuntimeOptions,
        *,
        driver: str,
        wake_orchestrator: Callable[[int], None],
        wake_worker: Callable[[int], None],
        sync_client_factory: Callable[[], Any],
        async_client_factory: Callable[[], Any] | None = None,
        async_waiter: AsyncWaiter | None = None,
    ) -> None:
        check_runtime_arguments(provider, registry, options)
        self.provider = provider
        self.registry = registry
        self.options = options
        self.driver = driver
        self.runtime_id = uuid.uuid4().hex[:8]
        self.worker_id = options.worker_node_id or f"{driver}-{self.runtime_id}"
        self.cache = StickyCache(options.sticky_cache_size)
        self.metrics = Metrics()
        self.timers = Timers(f"durox-timers-{self.runtime_id}")
        self._wake_orchestrator = wake_orchestrator
        self._wake_worker = wake_worker
        self._sync_client_factory = sync_client_factory
        self._async_client_factory = async_client_factory
        self._async_waiter = async_waiter
        self._sessions = _SessionTracker(options.max_sessions_per_runtime)
        self._jobs: set[ActivityJob] = set()
        self._jobs_lock = threading.Lock()
        self._hard_stop = False
        self._closed = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._fetch_errors = {"orchestration": 0, "activity": 0}
        self._busy_idles = 0
        self._worker_retry_at: float | None = None
        self._orch_renew_every = lock_renewal_interval(options.orchestrator_lock_timeout)
        self._work_renew_every = lock_renewal_interval(options.worker_lock_timeout)
        try:
            provider.now_ms()
            self._provider_clock = True
        except NotImplementedError:
            self._provider_clock = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start background jobs and listen for in-process wake-ups."""
        self.timers.start()
        if self.options.worker_tag_filter.mode != "none":
            self.timers.every(
                lock_renewal_interval(self.options.session_lock_timeout), self._renew_sessions
            )
            self.timers.every(self.options.session_lock_timeout, self._cleanup_sessions)
        self._unsubscribe = _hub.subscribe(self.provider, self)
        wait_for_work = getattr(self.provider, "wait_for_work", None)
        if callable(wait_for_work):
            # One watcher per queue, so a notification wakes only the pool it concerns.
            watchers: list[tuple[str | None, Callable[[int], None]]] = [
                ("orchestrator", self._wake_orchestrator)
            ]
            if self.options.worker_tag_filter.mode != "none":
                watchers.append(("worker", self._wake_worker))
            for queue, wake in watchers:
                threading.Thread(
                    target=self._watch_external_work,
                    args=(wait_for_work, queue, wake),
                    name=f"durox-notify-{queue}-{self.runtime_id}",
                    daemon=True,
                ).start()
        log.info(
            "durox runtime %s (%s driver) started on provider %s: %d orchestration slots, %d worker slots",
            self.runtime_id,
            self.driver,
            getattr(self.provider, "name", type(self.provider).__name__),
            self.options.orchestration_concurrency,
            self.options.worker_concurrency,
        )

    def hard_stop(self) -> None:
        """Shutdown deadline passed: turns still deciding are abandoned, running activities requeued."""
        self._hard_stop = True
        with self._jobs_lock:
            jobs = list(self._jobs)
        for job in jobs:
            self.abort_activity(job, reason="runtime shut down", requeue=True)

    def close(self) -> None:
        """Stop background jobs and forget cached states (after the driver's loops ended)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.timers.stop()
        self.cache.clear()
        log.info("durox runtime %s stopped", self.runtime_id)

    def snapshot(self) -> RuntimeMetrics:
        """Frozen counters."""
        return self.metrics.snapshot()

    def running_jobs(self) -> list[ActivityJob]:
        """Activities whose code runs now."""
        with self._jobs_lock:
            return list(self._jobs)

    # -- hub listener ------------------------------------------------------------------------

    def wake_orchestrator(self, count: int) -> None:
        """Hub callback: ``count`` orchestrator messages appeared."""
        self._wake_orchestrator(count)

    def wake_worker(self, count: int) -> None:
        """Hub callback: ``count`` activities appeared."""
        self._wake_worker(count)

    def cancel_activities(self, refs: Iterable[ActivityRef]) -> None:
        """Hub callback: a commit cancelled these activities; signal the ones running here now."""
        wanted = set(refs)
        for job in self.running_jobs():
            if job.ref in wanted:
                self._signal_cancel(job, "cancelled by its orchestration")

    def _watch_external_work(
        self, wait_for_work: Callable[..., bool], queue: str | None, wake: Callable[[int], None]
    ) -> None:
        # PostgreSQL LISTEN/NOTIFY: wakes dispatchers for work other processes wrote.
        while not self._closed.is_set():
            try:
                if wait_for_work(self.options.poll_interval, queue=queue):
                    # Unknown amount of work from elsewhere: every idle slot looks.
                    wake(WAKE_ALL)
            except ProviderClosed:
                return
            except Exception:
                log.warning(
                    "waiting for provider notifications failed; relying on polling", exc_info=True
                )
                self._closed.wait(1.0)

    # -- clocks ---------------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The provider's clock when it has one (tests inject clocks), else the wall clock."""
        if self._provider_clock:
            return int(self.provider.now_ms())
        return int(time.time() * 1000)

    def _fetch_failed(
        self, side: Literal["orchestration", "activity"], exc: ProviderError
    ) -> float:
        count = self._fetch_errors[side] = self._fetch_errors[side] + 1
        if isinstance(exc, ProviderClosed):
            log.error("%s fetch: the provider is closed; stop the runtime", side)
            return 1.0
        delay = min(0.1 * 2**count, 3.0) if exc.retryable else 0.1
        log.warning("%s fetch failed (%s); retrying in %.1fs", side, exc, delay)
        return delay

    # -- orchestration turns -------------------------------------------------------------------------

    def run_orchestration_once(self) -> float | None:
        """Fetch and run one turn. ``None``: work was done, loop at once; else idle seconds to wait.

        Never raises: a dispatcher slot must survive anything one item does.
        """
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
            return self._fetch_failed("orchestration", exc)
        self._fetch_errors["orchestration"] = 0
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
        delta = float(due - self.now_ms()) / 1000.0
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
                    now_ms=self.now_ms(),
                    entropy=os.urandom(16),
                    cached=cached,
                )
            except Exception:
                log.exception(
                    "deciding a turn of %r failed (a durox bug); retrying later", item.instance
                )
                self._abandon_turn(item, _DECIDE_CRASH_DELAY_MS)
                return
            if self._hard_stop:
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
        for attempt in range(_ACK_RETRIES + 1):
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
                if exc.retryable and attempt < _ACK_RETRIES:
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

    # -- activities ----------------------------------------------------------------------------------

    def fetch_activity(self) -> ActivityJob | float | None:
        """Fetch one activity and settle it if no user code is needed.

        Returns an :class:`ActivityJob` to run, ``None`` when something was
        done (loop at once), or idle seconds to wait. Never raises.
        """
        try:
            return self._fetch_activity()
        except Exception:
            log.exception("worker dispatcher error (a durox bug); continuing")
            return 1.0

    def _fetch_activity(self) -> ActivityJob | float | None:
        session = None
        if not self._sessions.full():
            session = SessionClaim(
                owner_id=self.worker_id, lock_timeout=self.options.session_lock_timeout
            )
        try:
            item = self.provider.fetch_work_item(
                lock_timeout=self.options.worker_lock_timeout,
                tag_filter=self.options.worker_tag_filter,
                session=session,
            )
        except ProviderError as exc:
            return self._fetch_failed("activity", exc)
        self._fetch_errors["activity"] = 0
        if item is None:
            return self._worker_idle_delay()
        message = item.message
        if message.session_id is not None and not self._sessions.acquire(message.session_id):
            # Two slots raced past the capacity check: put it back, no attempt counted.
            self.metrics.add("activity_abandons")
            self._abandon_activity(item, _SESSION_RACE_DELAY_MS, ignore_attempt=True)
            return None
        try:
            return self._plan_activity(item)
        except BaseException:
            if message.session_id is not None:
                self._sessions.release(message.session_id)
            raise

    def _plan_activity(self, item: ActivityItem) -> ActivityJob | None:
        message = item.message
        plan = prepare_activity(item, self.registry, self.options)
        if isinstance(plan, AbandonActivity):
            self._release_session(item)
            self.metrics.add("activity_abandons")
            log.warning(
                "activity %r of %r: %s; retrying in %.1fs (attempt %d)",
                message.name,
                message.instance,
                plan.reason,
                plan.delay_ms / 1000,
                item.attempt_count,
            )
            self._abandon_activity(item, plan.delay_ms)
            retry_at = time.monotonic() + plan.delay_ms / 1000
            if self._worker_retry_at is None or retry_at < self._worker_retry_at:
                self._worker_retry_at = retry_at
            return None
        if isinstance(plan, FinishActivity):
            self._release_session(item)
            if plan.poisoned:
                self.metrics.add("activities_poisoned")
                log.error(
                    "activity %r of %r poisoned after %d attempts",
                    message.name,
                    message.instance,
                    item.attempt_count - 1,
                )
            if self._ack_activity(item, plan.result):
                _hub.work_enqueued(self.provider, orchestrator=1)
            return None
        if isinstance(plan, ReadKvValue):
            self._release_session(item)
            try:
                text = self.provider.get_kv_value(plan.instance, plan.key)
                value = None if text is None else codec.decode_payload(text)
                result = activity_returned(
                    message,
                    value,
                    attempt=item.attempt_count,
                    max_payload_bytes=self.options.max_payload_bytes,
                )
            except ProviderError as exc:
                log.warning("reading KV %r of %r failed: %s", plan.key, plan.instance, exc)
                self._abandon_activity(item, 100)
                return None
            except Exception as exc:
                result = activity_raised(message, exc, attempt=item.attempt_count)
            if self._ack_activity(item, result):
                _hub.work_enqueued(self.provider, orchestrator=1)
            return None
        job = ActivityJob(item, plan.definition, plan.input, Cancellation(self._async_waiter))
        factory = self._async_client_factory if plan.definition.is_async else None
        job.context = ActivityContext(
            instance_id=message.instance,
            execution_id=message.execution_id,
            orchestration_name=message.orchestration_name,
            orchestration_version=message.orchestration_version,
            activity_name=message.name,
            activity_id=message.id,
            attempt=item.attempt_count,
            session_id=message.session_id,
            tag=message.tag,
            worker_id=self.worker_id,
            cancellation=job.cancellation,
            client_factory=factory or self._sync_client_factory,
        )
        with self._jobs_lock:
            self._jobs.add(job)
        job.lease = self.timers.every(self._work_renew_every, lambda: self._renew_activity(job))
        log.debug(
            "activity %r#%d of %r started (attempt %d)",
            message.name,
            message.id,
            message.instance,
            item.attempt_count,
        )
        return job

    def _worker_idle_delay(self) -> float:
        delay = float(self.options.poll_interval)
        if self._worker_retry_at is not None:
            remaining = self._worker_retry_at - time.monotonic()
            if remaining <= 0:
                self._worker_retry_at = None
                return 0.0
            delay = min(delay, remaining)
        return delay

    def _renew_activity(self, job: ActivityJob) -> bool:
        if job.state != "running":
            return False
        try:
            self.provider.renew_work_item_lock(
                job.item.lock_token, lock_timeout=self.options.worker_lock_timeout
            )
        except LockLost:
            # The row is gone (cancelled) or the lock expired: either way stop.
            self._signal_cancel(job, "activity lock lost (cancelled or expired)")
            return False
        except ProviderError as exc:
            log.warning("renewing the lock of activity %r failed: %s", job.item.message.name, exc)
        return True

    def _signal_cancel(self, job: ActivityJob, reason: str) -> None:
        if job.state != "running" or not job.cancellation.set(reason):
            return
        log.info(
            "activity %r#%d of %r cancelled (%s); grace period %.1fs",
            job.item.message.name,
            job.item.message.id,
            job.item.message.instance,
            reason,
            self.options.activity_cancellation_grace_period,
        )
        job.grace = self.timers.after(
            self.options.activity_cancellation_grace_period,
            lambda: self.abort_activity(job, reason="grace period over", requeue=False),
        )

    def fetch_and_run(self, on_job: Callable[[ActivityJob], None]) -> ActivityJob | float | None:
        """:meth:`fetch_activity`, and when it yields a ``def`` activity, run it here too.

        One thread hop for fetch, function and ack: ``on_job(job)`` is called
        first so the driver can set the job's abort handler. Returns what
        :meth:`fetch_activity` returned, except a ``def`` job, which comes back
        as ``None`` (done).
        """
        got = self.fetch_activity()
        if isinstance(got, ActivityJob) and not got.definition.is_async:
            on_job(got)
            self.run_sync_activity(got)
            return None
        return got

    def run_sync_activity(self, job: ActivityJob) -> None:
        """Call a ``def`` activity on the current thread and ack its outcome (one thread hop)."""
        if job.aborted:
            return  # given up on before it even started (shutdown deadline)
        try:
            value = job.definition.fn(job.context, job.input)
        except Exception as exc:
            self.fail_activity(job, exc)
        else:
            self.complete_activity(job, value)

    def complete_activity(self, job: ActivityJob, value: object) -> None:
        """The function returned ``value``: ack it (or drop it if the run was cancelled)."""
        self._finish(
            job,
            lambda: activity_returned(
                job.item.message,
                value,
                attempt=job.item.attempt_count,
                max_payload_bytes=self.options.max_payload_bytes,
            ),
        )

    def fail_activity(self, job: ActivityJob, exc: BaseException) -> None:
        """The function raised ``exc``: ack the failure (or drop it if the run was cancelled)."""
        self._finish(
            job, lambda: activity_raised(job.item.message, exc, attempt=job.item.attempt_count)
        )

    def _finish(self, job: ActivityJob, result: Callable[[], ActivityResult]) -> None:
        if not job._settle("finished"):
            log.debug("late result of aborted activity %r dropped", job.item.message.name)
            return
        self._forget(job)
        if job.cancellation.is_set():
            self.metrics.add("activities_cancelled")
            self._drop_activity(job.item)
            return
        activity_result = result()
        if self._ack_activity(job.item, activity_result):
            if activity_result.error is None:
                self.metrics.add("activities_completed")
            else:
                self.metrics.add("activities_failed")
                self.metrics.failure(activity_result.error.category)
            _hub.work_enqueued(self.provider, orchestrator=1)

    def abort_activity(self, job: ActivityJob, *, reason: str, requeue: bool) -> None:
        """Stop waiting for ``job``: drop its result; ``requeue`` puts the work back for another run."""
        if not job._settle("aborted"):
            return
        self._forget(job)
        job.cancellation.set(reason)
        self.metrics.add("activities_cancelled")
        log.warning(
            "activity %r#%d of %r abandoned: %s",
            job.item.message.name,
            job.item.message.id,
            job.item.message.instance,
            reason,
        )
        if requeue:
            self._abandon_activity(job.item, 0)
        else:
            self._drop_activity(job.item)
        handler = job._take_abort_handler()
        if handler is not None:
            handler()

    def _forget(self, job: ActivityJob) -> None:
        if job.lease is not None:
            job.lease.cancel()
        if job.grace is not None:
            job.grace.cancel()
        with self._jobs_lock:
            self._jobs.discard(job)
        self._release_session(job.item)

    def _release_session(self, item: ActivityItem) -> None:
        if item.message.session_id is not None:
            self._sessions.release(item.message.session_id)

    def _ack_activity(self, item: ActivityItem, result: ActivityResult) -> bool:
        for attempt in range(_ACK_RETRIES + 1):
            try:
                self.provider.ack_work_item(item.lock_token, result)
            except LockLost:
                # Cancelled by its orchestration or lock expired: at-least-once means
                # someone else owns this run now; a late result is simply dropped.
                self.metrics.add("lock_lost")
                log.debug(
                    "result of activity %r#%d dropped: lock lost",
                    item.message.name,
                    item.message.id,
                )
                return False
            except ProviderError as exc:
                if exc.retryable and attempt < _ACK_RETRIES:
                    self.metrics.add("ack_retries")
                    time.sleep(0.01 * 2**attempt)
                    continue
                log.error(
                    "ack of activity %r failed: %s; it will run again", item.message.name, exc
                )
                self._abandon_activity(item, 100)
                return False
            except Exception:
                log.exception("the provider refused the result of activity %r", item.message.name)
                self._abandon_activity(item, 1000)
                return False
            return True
        return False  # pragma: no cover

    def _drop_activity(self, item: ActivityItem) -> None:
        try:
            self.provider.ack_work_item(item.lock_token, None)
        except LockLost:
            pass  # the usual case: the cancelling commit deleted the row already
        except ProviderError as exc:
            log.debug("dropping cancelled activity %r failed: %s", item.message.name, exc)

    def _abandon_activity(
        self, item: ActivityItem, delay_ms: int, *, ignore_attempt: bool = False
    ) -> None:
        try:
            self.provider.abandon_work_item(
                item.lock_token, delay_ms=delay_ms, ignore_attempt=ignore_attempt
            )
        except LockLost:
            log.debug("abandon of activity %r: lock already gone", item.message.name)
        except ProviderError as exc:
            log.warning(
                "abandon of activity %r failed (%s); its lock will expire", item.message.name, exc
            )
        if delay_ms == 0:
            _hub.work_enqueued(self.provider, worker=1)

    # -- sessions ---------------------------------------------------------------------------------

    def _renew_sessions(self) -> bool:
        if self._closed.is_set():
            return False
        try:
            self.provider.renew_session_locks(
                [self.worker_id],
                lock_timeout=self.options.session_lock_timeout,
                idle_timeout=self.options.session_idle_timeout,
            )
        except ProviderError as exc:
            log.warning("renewing session locks failed: %s", exc)
        return True

    def _cleanup_sessions(self) -> bool:
        if self._closed.is_set():
            return False
        try:
            removed = self.provider.cleanup_orphaned_sessions()
            if removed:
                log.debug("removed %d orphaned sessions", removed)
        except ProviderError as exc:
            log.warning("cleaning up sessions failed: %s", exc)
        return True
