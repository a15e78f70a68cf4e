"""Everything the three drivers share, composed: :class:`RuntimeCore`.

A driver owns loops, concurrency slots, wake-ups, cancellation and shutdown;
:class:`RuntimeCore` owns the rest, as plain synchronous methods that a
driver calls on a thread (the provider is synchronous):

* :meth:`RuntimeCore.run_orchestration_once` — one orchestration turn
  (:mod:`durox.drivers._turns`);
* :meth:`RuntimeCore.fetch_activity` / :meth:`RuntimeCore.fetch_and_run`,
  :meth:`RuntimeCore.complete_activity` / :meth:`RuntimeCore.fail_activity`
  — one activity (:mod:`durox.drivers._work`);
* lifecycle: background jobs on the :class:`~durox.drivers._timers.Timers`
  thread (lock and session renewal, grace deadlines), in-process wake-ups
  (:mod:`durox.drivers._hub`), PostgreSQL notifications, the shutdown deadline.

No replay logic lives here: a turn's content is decided by core.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from durox.core.commit import ActivityRef
from durox.core.errors import InvalidArgument, ProviderClosed
from durox.core.options import RuntimeOptions, lock_renewal_interval
from durox.core.registry import Registry
from durox.drivers import _hub
from durox.drivers._activity import AsyncWaiter
from durox.drivers._hub import WAKE_ALL
from durox.drivers._metrics import RuntimeMetrics
from durox.drivers._parts import RuntimeParts
from durox.drivers._turns import TurnRunner
from durox.drivers._work import ActivityJob, ActivityRunner, SessionTracker
from durox.providers.base import Provider

__all__ = ["WAKE_ALL", "ActivityJob", "RuntimeCore", "SessionTracker", "check_runtime_arguments"]

log = logging.getLogger("durox.runtime")


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
        self.options = options
        self.driver = driver
        self.runtime_id = uuid.uuid4().hex[:8]
        self.worker_id = options.worker_node_id or f"{driver}-{self.runtime_id}"
        self.parts = RuntimeParts(provider, registry, options, self.runtime_id)
        self.turns = TurnRunner(self.parts)
        self.work = ActivityRunner(
            self.parts,
            worker_id=self.worker_id,
            sync_client_factory=sync_client_factory,
            async_client_factory=async_client_factory,
            async_waiter=async_waiter,
        )
        self.timers = self.parts.timers
        self._wake_orchestrator = wake_orchestrator
        self._wake_worker = wake_worker
        self._unsubscribe: Callable[[], None] | None = None
        # The steps the driver loops call.
        self.run_orchestration_once = self.turns.run_orchestration_once
        self.fetch_activity = self.work.fetch_activity
        self.fetch_and_run = self.work.fetch_and_run
        self.run_sync_activity = self.work.run_sync_activity
        self.complete_activity = self.work.complete_activity
        self.fail_activity = self.work.fail_activity
        self.abort_activity = self.work.abort_activity
        self.running_jobs = self.work.running_jobs

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start background jobs and listen for in-process wake-ups."""
        self.timers.start()
        if self.options.worker_tag_filter.mode != "none":
            self.timers.every(
                lock_renewal_interval(self.options.session_lock_timeout), self.work._renew_sessions
            )
            self.timers.every(self.options.session_lock_timeout, self.work._cleanup_sessions)
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
        self.parts.hard_stopped = True
        self.work.abort_all("runtime shut down")

    def close(self) -> None:
        """Stop background jobs and forget cached states (after the driver's loops ended)."""
        if self.parts.closed.is_set():
            return
        self.parts.closed.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.timers.stop()
        self.parts.cache.clear()
        log.info("durox runtime %s stopped", self.runtime_id)

    def snapshot(self) -> RuntimeMetrics:
        """Frozen counters."""
        return self.parts.metrics.snapshot()

    # -- hub listener ------------------------------------------------------------------------

    def wake_orchestrator(self, count: int) -> None:
        """Hub callback: ``count`` orchestrator messages appeared."""
        self._wake_orchestrator(count)

    def wake_worker(self, count: int) -> None:
        """Hub callback: ``count`` activities appeared."""
        self._wake_worker(count)

    def cancel_activities(self, refs: Iterable[ActivityRef]) -> None:
        """Hub callback: a commit cancelled these activities; signal the ones running here now."""
        self.work.cancel_activities(refs)

    def _watch_external_work(
        self, wait_for_work: Callable[..., bool], queue: str | None, wake: Callable[[int], None]
    ) -> None:
        # PostgreSQL LISTEN/NOTIFY: wakes dispatchers for work other processes wrote.
        while not self.parts.closed.is_set():
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
                self.parts.closed.wait(1.0)
