"""The worker side of a runtime: fetch a locked activity, run it, ack its result.

:class:`ActivityRunner` settles everything that needs no user code (poison,
unregistered names, system calls, session capacity) and hands the driver an
:class:`ActivityJob` when a user function must run; the driver runs it its
own way (thread, event loop) and reports back. Lock renewal doubles as the
cancellation detector; a commit that cancels an activity running here
signals it at once; a cancelled run gets its grace period, then the runtime
stops waiting (the driver's abort handler) and drops its result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

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
from durox.core.errors import LockLost, ProviderError
from durox.core.items import ActivityItem
from durox.core.messages import ActivityResult
from durox.core.options import lock_renewal_interval
from durox.core.registry import ActivityDefinition
from durox.drivers import _hub
from durox.drivers._activity import ActivityContext, AsyncWaiter, Cancellation
from durox.drivers._parts import ACK_RETRIES, RuntimeParts
from durox.drivers._timers import TimerHandle
from durox.providers.base import SessionClaim

__all__ = ["ActivityJob", "ActivityRunner", "SessionTracker"]

log = logging.getLogger("durox.runtime")

_SESSION_RACE_DELAY_MS = 100


class ActivityJob:
    """One activity whose user function is running (or about to run) on this runtime.

    The driver runs ``definition.fn(context, input)`` and reports the outcome
    with :meth:`ActivityRunner.complete_activity` / :meth:`ActivityRunner.fail_activity`.
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


class SessionTracker:
    """Distinct sessions with activities in flight on this runtime (bounded by max_sessions_per_runtime)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def full(self) -> bool:
        """True when no new session may be taken (fetch only session-less work)."""
        with self._lock:
            return len(self._counts) >= self.limit

    def acquire(self, session_id: str) -> bool:
        """Count one more activity of ``session_id``; False if that would exceed the limit."""
        with self._lock:
            if session_id not in self._counts and len(self._counts) >= self.limit:
                return False
            self._counts[session_id] = self._counts.get(session_id, 0) + 1
            return True

    def release(self, session_id: str) -> None:
        """One activity of ``session_id`` ended."""
        with self._lock:
            left = self._counts.get(session_id, 0) - 1
            if left > 0:
                self._counts[session_id] = left
            else:
                self._counts.pop(session_id, None)


class ActivityRunner:
    """Runs activities for one runtime. Thread-safe: every worker slot shares it."""

    def __init__(
        self,
        parts: RuntimeParts,
        *,
        worker_id: str,
        sync_client_factory: Callable[[], Any],
        async_client_factory: Callable[[], Any] | None,
        async_waiter: AsyncWaiter | None,
    ) -> None:
        self.parts = parts
        self.provider = parts.provider
        self.registry = parts.registry
        self.options = parts.options
        self.metrics = parts.metrics
        self.timers = parts.timers
        self.worker_id = worker_id
        self._sync_client_factory = sync_client_factory
        self._async_client_factory = async_client_factory
        self._async_waiter = async_waiter
        self._sessions = SessionTracker(parts.options.max_sessions_per_runtime)
        self._jobs: set[ActivityJob] = set()
        self._jobs_lock = threading.Lock()
        self._worker_retry_at: float | None = None
        self._work_renew_every = lock_renewal_interval(parts.options.worker_lock_timeout)

    def abort_all(self, reason: str) -> None:
        """Give up on every running activity and put it back in the queue (shutdown deadline)."""
        for job in self.running_jobs():
            self.abort_activity(job, reason=reason, requeue=True)

    def fetch_activity(self) -> ActivityJob | float | None:
        """Fetch one activity and settle it if no user code is needed.

        Returns an :class:`ActivityJob` to run, ``None`` when something was
        done (loop at once), or idle seconds to wait. Never raises.
        """
        if self.parts.stopped:
            return float(self.options.poll_interval)  # past the shutdown deadline: take nothing new
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
            return float(self.parts.fetch_failed("activity", exc))
        self.parts.fetch_errors["activity"] = 0
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

    def cancel_activities(self, refs: Iterable[ActivityRef]) -> None:
        """Hub callback: a commit cancelled these activities; signal the ones running here now."""
        wanted = set(refs)
        for job in self.running_jobs():
            if job.ref in wanted:
                self._signal_cancel(job, "cancelled by its orchestration")

    def running_jobs(self) -> list[ActivityJob]:
        """Activities whose code runs now."""
        with self._jobs_lock:
            return list(self._jobs)

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
        for attempt in range(ACK_RETRIES + 1):
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
                if exc.retryable and attempt < ACK_RETRIES:
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

    def _renew_sessions(self) -> bool:
        if self.parts.closed.is_set():
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
        if self.parts.closed.is_set():
            return False
        try:
            removed = self.provider.cleanup_orphaned_sessions()
            if removed:
                log.debug("removed %d orphaned sessions", removed)
        except ProviderError as exc:
            log.warning("cleaning up sessions failed: %s", exc)
        return True
