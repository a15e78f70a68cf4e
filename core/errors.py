"""Every exception durox raises, and the failure record stored in history.

The tree says where a fault lies, the way trio and hypothesis do:

* raised *into* orchestration code at a ``yield``: :class:`ActivityFailed`,
  :class:`SubOrchestrationFailed`;
* the code diverged from its recorded history: :class:`NondeterminismError`;
* raised *to callers* who passed something wrong: :class:`InvalidArgument`,
  :class:`PayloadError`, :class:`InstanceAlreadyExists`, :class:`InstanceNotFound`;
* raised to callers when time or storage fails them: :class:`WaitTimeout`,
  :class:`ProviderError`, :class:`ProviderClosed`, :class:`LockLost`;
* a bug in durox itself: :class:`DuroxInternalError`.

:class:`ErrorDetails` is not an exception: it is the frozen value recorded in
history when an activity, a sub-orchestration or an orchestration fails.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = [
    "ActivityFailed",
    "Category",
    "DuroxError",
    "DuroxInternalError",
    "ErrorDetails",
    "InstanceAlreadyExists",
    "InstanceNotFound",
    "InvalidArgument",
    "LockLost",
    "NondeterminismError",
    "PayloadError",
    "ProviderClosed",
    "ProviderError",
    "SubOrchestrationFailed",
    "WaitTimeout",
]

Category = Literal["application", "configuration", "infrastructure"]


@attrs.frozen(kw_only=True)
class ErrorDetails:
    """Why something failed, as stored in history and shown to clients.

    ``category`` tells an operator what to do about it:

    * ``"application"``: the user's code failed (an exception, a cancellation,
      a limit); fix the input or the code;
    * ``"configuration"``: the code no longer matches its history
      (nondeterminism); deploy code that replays the old history;
    * ``"infrastructure"``: storage or the runtime failed, or a message was
      poisoned (an unregistered name, too many delivery attempts).

    ``kind`` is a finer, stable tag (``"activity_failed"``, ``"cancelled"``,
    ``"nondeterminism"``, ``"poison"``, ...). ``error_type`` is the Python
    exception class name when one caused the failure.

    >>> ErrorDetails(category="application", kind="cancelled", message="user asked").display_message()
    'canceled: user asked'
    """

    category: Category
    kind: str
    message: str
    error_type: str | None = None
    retryable: bool = False

    def display_message(self) -> str:
        """One readable line, as Duroxide prints it."""
        if self.kind == "cancelled":
            return f"canceled: {self.message}"
        if self.kind == "nondeterminism":
            return f"nondeterministic: {self.message}"
        if self.kind == "poison":
            return f"poison: {self.message}"
        if self.category == "infrastructure":
            return f"infrastructure: {self.message}"
        if self.error_type and not self.message.startswith(self.error_type):
            return f"{self.error_type}: {self.message}"
        return self.message

    @classmethod
    def from_exception(
        cls, exc: BaseException, *, kind: str = "orchestration_failed"
    ) -> ErrorDetails:
        """Record an uncaught exception from user code as an application failure."""
        if isinstance(exc, (ActivityFailed, SubOrchestrationFailed)):
            # Re-raised failures keep their original type and message.
            return ErrorDetails(
                category=exc.details.category if exc.details else "application",
                kind=exc.details.kind if exc.details else kind,
                message=exc.message,
                error_type=exc.error_type,
                retryable=False,
            )
        return cls(
            category="application",
            kind=kind,
            message=str(exc) or type(exc).__name__,
            error_type=type(exc).__name__,
        )


class DuroxError(Exception):
    """Base class of every exception durox raises."""


class _FailureError(DuroxError):
    """A failure of scheduled work, raised into orchestration code at its ``yield``."""

    def __init__(
        self, message: str, *, error_type: str | None = None, details: ErrorDetails | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.details = details

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, error_type={self.error_type!r})"


class ActivityFailed(_FailureError):
    """An activity failed (it raised, timed out, was poisoned or cancelled).

    Raised at the ``yield`` of the activity's task. ``message`` and
    ``error_type`` come from the activity's exception; ``details`` is the full
    :class:`ErrorDetails`; ``attempt`` is the delivery attempt that failed.
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        details: ErrorDetails | None = None,
        attempt: int | None = None,
    ) -> None:
        super().__init__(message, error_type=error_type, details=details)
        self.attempt = attempt


class SubOrchestrationFailed(_FailureError):
    """A child orchestration failed or was cancelled; raised at its ``yield``."""


class NondeterminismError(DuroxError):
    """The orchestration's code no longer produces the commands its history recorded.

    The orchestration is failed permanently (category ``"configuration"``); the
    message shows the history position and the expected vs produced commands.
    """


class InvalidArgument(DuroxError, ValueError):
    """A caller passed a value durox cannot accept (an empty id, a bad option...)."""


class PayloadError(DuroxError, ValueError):
    """A payload is not JSON-serializable, not valid JSON, or over the size limit."""


class InstanceAlreadyExists(DuroxError):
    """``start_orchestration`` was called with an instance id that already exists."""


class InstanceNotFound(DuroxError, LookupError):
    """No instance has that id."""


class WaitTimeout(DuroxError, TimeoutError):
    """A ``wait_for_*`` call ran out of time before the condition held."""


class ProviderError(DuroxError):
    """Storage failed. ``retryable`` says whether trying again may succeed."""

    def __init__(
        self, message: str, *, retryable: bool = False, operation: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.operation = operation


class LockLost(ProviderError):
    """A lock token is unknown or expired: another worker may own the item now.

    Never retryable: the work is redone by whoever holds the lock now.
    """

    def __init__(self, message: str, *, operation: str | None = None) -> None:
        super().__init__(message, retryable=False, operation=operation)


class ProviderClosed(ProviderError):
    """The provider was used after ``close()``."""

    def __init__(self, message: str = "the provider is closed; create a new one") -> None:
        super().__init__(message, retryable=False)


class DuroxInternalError(DuroxError):
    """A bug in durox itself. Please report it with the traceback."""
