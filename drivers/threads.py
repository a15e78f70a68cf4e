"""The threads driver: a blocking Runtime and Client, no event loop needed.

>>> # with Runtime(provider, registry) as rt:
>>> #     client = Client(provider)
>>> #     client.start_orchestration("inst-1", "HelloWorld", "World")
>>> #     client.wait_for_orchestration("inst-1", timeout=5)

Each orchestration slot and each worker slot is a thread. A ``def`` activity
runs on its worker slot's thread; an ``async def`` activity runs on that
slot's private asyncio event loop. Cancellation: ``ctx.is_cancelled()``, or
``ctx.cancelled().wait(timeout)`` (a blocking wait that returns ``True`` once
cancelled); ``await ctx.cancelled()`` inside ``async def`` activities. When a
cancelled ``def`` activity ignores the signal past the grace period the
runtime stops waiting for it, drops its result and starts a fresh slot thread
in its place (a thread cannot be killed; the old one ends when the function
returns).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from durox.core.codec import DEFAULT_MAX_PAYLOAD_BYTES
from durox.core.options import RuntimeOptions
from durox.core.registry import Registry
from durox.drivers._client_core import ClientCore
from durox.drivers._metrics import RuntimeMetrics
from durox.drivers._steps import WAKE_ALL, ActivityJob, RuntimeCore
from durox.drivers.asyncio import wait_cancelled
from durox.providers.base import Provider

__all__ = ["Client", "Runtime"]


class Client(ClientCore):  # type: ignore[misc, unused-ignore]
    """The blocking client. Every method of :class:`~durox.drivers._client_core.ClientCore`."""

    def __init__(
        self, provider: Provider, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> None:
        super().__init__(provider, max_payload_bytes=max_payload_bytes)


class _Wake:
    """Wakes idle slots of a pool (thread-safe; a notify is never lost).

    ``generation`` counts notifies: a slot reads it before fetching and skips
    its sleep if it changed meanwhile, so work that arrives during a fetch
    that found nothing is not missed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.generation = 0

    def notify(self, count: int = WAKE_ALL) -> None:
        """Wake up to ``count`` sleeping slots."""
        with self._cond:
            self.generation += 1
            self._cond.notify(count)

    def wait(self, seen: int, timeout: float) -> None:
        """Sleep up to ``timeout`` unless a notify happened since ``seen`` was read."""
        with self._cond:
            if self.generation == seen and timeout > 0:
                self._cond.wait(timeout)


class Runtime:
    """Runs orchestrations and activities on threads until shut down.

    ``with Runtime(provider, registry, options=...) as rt:`` starts the
    dispatchers and shuts down on exit; or call :meth:`start` and
    :meth:`shutdown` yourself.
    """

    def __init__(
        self, provider: Provider, registry: Registry, *, options: RuntimeOptions | None = None
    ) -> None:
        self.options = options if options is not None else RuntimeOptions()
        self._orch_wake = _Wake()
        self._work_wake = _Wake()
        self._core = RuntimeCore(
            provider,
            registry,
            self.options,
            driver="threads",
            wake_orchestrator=self._orch_wake.notify,
            wake_worker=self._work_wake.notify,
            sync_client_factory=lambda: Client(
                provider, max_payload_bytes=self.options.max_payload_bytes
            ),
            async_client_factory=self._asyncio_client,
            async_waiter=wait_cancelled,
        )
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self._started = False
        self._stopped = False

    def _asyncio_client(self) -> Any:
        from durox.drivers.asyncio import Client as AsyncioClient

        return AsyncioClient(self._core.provider, max_payload_bytes=self.options.max_payload_bytes)

    @property
    def runtime_id(self) -> str:
        """A short random id of this runtime (in logs and worker ids)."""
        return str(self._core.runtime_id)

    def metrics(self) -> RuntimeMetrics:
        """A frozen snapshot of this runtime's counters."""
        return self._core.snapshot()

    def __enter__(self) -> Runtime:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def start(self) -> None:
        """Start the dispatcher threads."""
        if self._started:
            raise RuntimeError("this Runtime was started already; create a new one")
        self._started = True
        self._core.start()
        for index in range(self.options.orchestration_concurrency):
            self._spawn(self._orchestration_loop, f"durox-orch-{index}")
        if self.options.worker_tag_filter.mode != "none":
            for index in range(self.options.worker_concurrency):
                self._spawn(self._worker_loop, f"durox-work-{index}")

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(
            target=target, args=args, name=f"{name}-{self._core.runtime_id}", daemon=True
        )
        with self._threads_lock:
            self._threads.append(thread)
        thread.start()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop fetching, let in-flight work finish, then stop.

        Turns and activities already running get ``timeout`` seconds
        (``None``: the activity cancellation grace period) to finish and
        commit; activities still running then are cancelled and put back in
        the queue for another run, and their results dropped.
        """
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._orch_wake.notify()
        self._work_wake.notify()
        budget = (
            self.options.activity_cancellation_grace_period
            if timeout is None
            else max(timeout, 0.0)
        )
        deadline = time.monotonic() + budget
        if not self._join_all(deadline):
            self._core.hard_stop()
            # Turns only need to notice the hard stop and abandon; give them a moment.
            self._join_all(time.monotonic() + max(1.0, self.options.orchestrator_lock_timeout))
        self._core.close()

    def _join_all(self, deadline: float) -> bool:
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is threading.current_thread() or getattr(thread, "durox_abandoned", False):
                continue  # an abandoned thread stays with its activity: never wait for it
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._threads_lock:
            return not any(
                t.is_alive() and not getattr(t, "durox_abandoned", False) for t in self._threads
            )

    # -- loops -------------------------------------------------------------------------------

    def _orchestration_loop(self) -> None:
        while not self._stopping.is_set():
            seen = self._orch_wake.generation
            delay = self._core.run_orchestration_once()
            if delay is not None and not self._stopping.is_set():
                self._orch_wake.wait(seen, delay)

    def _worker_loop(self) -> None:
        me = threading.current_thread()
        loop: asyncio.AbstractEventLoop | None = None
        try:
            while not self._stopping.is_set() and not getattr(me, "durox_abandoned", False):
                seen = self._work_wake.generation
                got = self._core.fetch_activity()
                if isinstance(got, float):
                    if not self._stopping.is_set():
                        self._work_wake.wait(seen, got)
                    continue
                if got is None:
                    continue
                if got.definition.is_async:
                    if loop is None:
                        loop = asyncio.new_event_loop()
                    self._run_async(got, loop)
                else:
                    self._run_sync(got, me)
        finally:
            if loop is not None:
                loop.close()

    def _run_sync(self, job: ActivityJob, me: threading.Thread) -> None:
        def abandon_slot() -> None:
            # The function ignored cancellation past its grace period: this
            # thread stays with it; a fresh thread takes over the slot.
            me.durox_abandoned = True  # type: ignore[attr-defined]
            if not self._stopping.is_set():
                self._spawn(self._worker_loop, "durox-work-replacement")

        job.set_abort_handler(abandon_slot)
        self._core.run_sync_activity(job)

    def _run_async(self, job: ActivityJob, loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(job.definition.fn(job.context, job.input))
        job.set_abort_handler(lambda: loop.call_soon_threadsafe(task.cancel))
        try:
            value = loop.run_until_complete(task)
        except asyncio.CancelledError:
            if not job.aborted:
                self._core.fail_activity(job, RuntimeError("activity task was cancelled"))
        except Exception as exc:
            self._core.fail_activity(job, exc)
        else:
            self._core.complete_activity(job, value)
