"""ActivityContext: what an activity function receives as its first argument.

Framework-free on purpose (the facade ``durox`` re-exports it): the driver
that runs the activity plugs in how to *await* cancellation on its loop.

Cancellation is cooperative. It is signalled when the orchestration gives up
on the activity (a ``select`` loser, the orchestration finished, failed,
continued as new or was cancelled), when the activity's lock is lost, or
when the runtime shuts down and the activity did not finish in time. The
activity then has ``activity_cancellation_grace_period`` seconds to return;
its result is dropped either way. After the grace period the runtime stops
waiting: an ``async def`` activity's task is cancelled; a ``def`` activity's
thread cannot be killed, so the runtime abandons it (the thread runs on until
the function returns, and whatever it returns is ignored).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import Any

__all__ = ["ActivityContext", "Cancellation"]

log = logging.getLogger("durox.activity")

AsyncWaiter = Callable[["Cancellation"], Awaitable[None]]


class Cancellation:
    """A one-shot, thread-safe cancellation signal.

    Returned by :meth:`ActivityContext.cancelled`. Use it the way your
    activity runs:

    * blocking code (``def`` activities, any driver): ``ctx.cancelled().wait(timeout)``
      returns ``True`` as soon as cancellation is signalled, ``False`` on timeout;
    * ``async def`` activities: ``await ctx.cancelled()`` returns once cancelled
      (race it against your work, e.g. in a trio nursery or ``asyncio.wait``).
    """

    def __init__(self, async_waiter: AsyncWaiter | None = None) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] = []
        self._async_waiter = async_waiter
        self.reason: str | None = None

    def set(self, reason: str) -> bool:
        """Signal cancellation; returns True the first time only."""
        with self._lock:
            if self._event.is_set():
                return False
            self.reason = reason
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a waiter whose loop has ended must not break the signal
                log.debug("cancellation callback failed", exc_info=True)
        return True

    def is_set(self) -> bool:
        """True once cancellation was signalled."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled (True) or ``timeout`` seconds pass (False)."""
        return self._event.wait(timeout)

    def add_callback(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` (on the signalling thread) when cancelled; at once if already cancelled."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def __await__(self) -> Generator[Any, None, None]:
        if self._async_waiter is None:
            raise TypeError(
                "this activity runs in a thread: use ctx.cancelled().wait(timeout) instead of awaiting it"
            )
        return self._async_waiter(self).__await__()


class ActivityContext:
    """Facts about the running activity, cooperative cancellation, tracing and a client.

    Attributes: ``instance_id``, ``execution_id``, ``orchestration_name``,
    ``orchestration_version``, ``activity_name``, ``activity_id`` (the
    ``ActivityScheduled`` event id), ``attempt`` (delivery attempt, 1 first),
    ``session_id``, ``tag``, ``worker_id``.
    """

    __slots__ = (
        "_cancellation",
        "_client",
        "_client_factory",
        "activity_id",
        "activity_name",
        "attempt",
        "execution_id",
        "instance_id",
        "orchestration_name",
        "orchestration_version",
        "session_id",
        "tag",
        "worker_id",
    )

    def __init__(
        self,
        *,
        instance_id: str,
        execution_id: int,
        orchestration_name: str,
        orchestration_version: str,
        activity_name: str,
        activity_id: int,
        attempt: int,
        session_id: str | None,
        tag: str | None,
        worker_id: str,
        cancellation: Cancellation,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.orchestration_name = orchestration_name
        self.orchestration_version = orchestration_version
        self.activity_name = activity_name
        self.activity_id = activity_id
        self.attempt = attempt
        self.session_id = session_id
        self.tag = tag
        self.worker_id = worker_id
        self._cancellation = cancellation
        self._client_factory = client_factory
        self._client: Any = None

    def __repr__(self) -> str:
        return (
            f"ActivityContext(instance_id={self.instance_id!r}, activity_name={self.activity_name!r}, "
            f"activity_id={self.activity_id}, attempt={self.attempt})"
        )

    # -- cancellation -------------------------------------------------------------

    def is_cancelled(self) -> bool:
        """True once the runtime asked this activity to stop (its result will be dropped)."""
        return self._cancellation.is_set()

    def cancelled(self) -> Cancellation:
        """The cancellation signal: ``await`` it (async activities) or ``.wait(timeout)`` on it."""
        return self._cancellation

    # -- client -------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """A client on the runtime's provider, e.g. to start orchestrations from an activity.

        Blocking (``durox.drivers.threads.Client``) for ``def`` activities; the
        driver's async client for ``async def`` activities.
        """
        if self._client is None:
            if self._client_factory is None:
                raise RuntimeError("this ActivityContext has no client")
            self._client = self._client_factory()
        return self._client

    # -- tracing --------------------------------------------------------------------

    def trace_debug(self, message: str) -> None:
        """Log ``message`` at DEBUG on the ``durox.activity`` logger, with correlation fields."""
        self._trace(logging.DEBUG, message)

    def trace_info(self, message: str) -> None:
        """Log ``message`` at INFO on the ``durox.activity`` logger."""
        self._trace(logging.INFO, message)

    def trace_warn(self, message: str) -> None:
        """Log ``message`` at WARNING on the ``durox.activity`` logger."""
        self._trace(logging.WARNING, message)

    def trace_error(self, message: str) -> None:
        """Log ``message`` at ERROR on the ``durox.activity`` logger."""
        self._trace(logging.ERROR, message)

    def _trace(self, level: int, message: str) -> None:
        if log.isEnabledFor(level):
            log.log(
                level,
                "[%s/%s %s#%s] %s",
                self.instance_id,
                self.execution_id,
                self.activity_name,
                self.activity_id,
                message,
                extra={
                    "instance_id": self.instance_id,
                    "execution_id": self.execution_id,
                    "orchestration_name": self.orchestration_name,
                    "orchestration_version": self.orchestration_version,
                    "activity_name": self.activity_name,
                    "activity_id": self.activity_id,
                    "worker_id": self.worker_id,
                },
            )
