"""Work items: the messages that travel through a provider's two queues.

The **orchestrator queue** holds everything that makes an instance take a
turn (a start, a completion, a timer, an event, a cancel); the provider locks
an instance and hands over all its visible messages at once. The **worker
queue** holds :class:`ExecuteActivity` items, locked one at a time.

Every message names the instance it is routed to as ``instance`` (for a
:class:`SubOrchestrationResult` that is the *parent*). Payloads are JSON text.
"""

from __future__ import annotations

from typing import Union

import attrs

from durox.core.errors import ErrorDetails
from durox.core.history import QueuedEvent

__all__ = [
    "ActivityResult",
    "CancelInstance",
    "ContinueAsNew",
    "ExecuteActivity",
    "ExternalRaised",
    "OrchestratorMessage",
    "QueueMessage",
    "StartOrchestration",
    "SubOrchestrationResult",
    "TimerDue",
    "WorkItem",
]


@attrs.frozen(kw_only=True)
class StartOrchestration:
    """Start ``instance`` running orchestration ``name``.

    ``version`` pins an exact registered version; ``None`` takes the latest.
    ``parent_*`` are set when a parent orchestration started this one as a
    sub-orchestration, so the child can report back to that exact execution.
    """

    instance: str
    name: str
    input: str
    version: str | None = None
    parent_instance: str | None = None
    parent_execution_id: int | None = None
    parent_id: int | None = None


@attrs.frozen(kw_only=True)
class ContinueAsNew:
    """Begin execution ``execution_id`` of ``instance`` (continue_as_new).

    Carries the parent link so a child that continues as new still reports to
    its parent, the queue messages left unconsumed, and the custom status.
    """

    instance: str
    execution_id: int
    name: str
    input: str
    version: str | None = None
    parent_instance: str | None = None
    parent_execution_id: int | None = None
    parent_id: int | None = None
    carry_forward: tuple[QueuedEvent, ...] = ()
    initial_custom_status: str | None = None


@attrs.frozen(kw_only=True)
class ExecuteActivity:
    """Run activity ``name`` for the execution that scheduled it at ``id``.

    ``orchestration_name``/``orchestration_version`` are copied here so a
    worker never has to read history to build its ``ActivityContext``.
    """

    instance: str
    execution_id: int
    id: int
    name: str
    input: str
    orchestration_name: str = ""
    orchestration_version: str = ""
    session_id: str | None = None
    tag: str | None = None


@attrs.frozen(kw_only=True)
class ActivityResult:
    """An activity finished: ``result`` (JSON text) on success, else ``error``."""

    instance: str
    execution_id: int
    id: int
    result: str | None = None
    error: ErrorDetails | None = None
    attempt: int = 1


@attrs.frozen(kw_only=True)
class TimerDue:
    """The timer created at ``id`` is due (enqueued invisible until ``fire_at_ms``)."""

    instance: str
    execution_id: int
    id: int
    fire_at_ms: int


@attrs.frozen(kw_only=True)
class ExternalRaised:
    """A client raised external event ``name`` (positional: Nth wait gets Nth raise)."""

    instance: str
    name: str
    data: str


@attrs.frozen(kw_only=True)
class QueueMessage:
    """A client enqueued ``data`` on the instance's event queue ``name`` (FIFO)."""

    instance: str
    name: str
    data: str


@attrs.frozen(kw_only=True)
class SubOrchestrationResult:
    """A child finished; routed to the parent ``instance`` and its execution.

    ``id`` is the parent's ``SubOrchestrationScheduled`` event id.
    """

    instance: str
    execution_id: int
    id: int
    child_instance: str
    result: str | None = None
    error: ErrorDetails | None = None


@attrs.frozen(kw_only=True)
class CancelInstance:
    """Cancel ``instance`` (and, through it, its children and activities)."""

    instance: str
    reason: str


OrchestratorMessage = Union[
    StartOrchestration,
    ContinueAsNew,
    ActivityResult,
    TimerDue,
    ExternalRaised,
    QueueMessage,
    SubOrchestrationResult,
    CancelInstance,
]
"""Any message of the orchestrator queue."""

WorkItem = Union[OrchestratorMessage, ExecuteActivity]
"""Any message of either queue."""

ORCHESTRATOR_MESSAGE_TYPES: tuple[type[OrchestratorMessage], ...] = OrchestratorMessage.__args__  # type: ignore[attr-defined]
