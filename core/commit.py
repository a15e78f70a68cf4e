"""A commit: exactly what a provider writes, atomically, to finish one turn.

The replay engine decides; this module only describes the decision in storage
terms. A provider applies a :class:`Commit` in one transaction (see
:meth:`durox.providers.Provider.ack_orchestration_item`) or not at all.
"""

from __future__ import annotations

from typing import Literal, Union

import attrs

from durox.core import history
from durox.core.messages import ExecuteActivity, OrchestratorMessage

__all__ = [
    "ActivityRef",
    "Commit",
    "ExecutionStatus",
    "KvOp",
    "OutgoingMessage",
]

ExecutionStatus = Literal["Running", "Completed", "Failed", "ContinuedAsNew"]
"""Status of one execution as stored by providers."""

KvOp = Union[history.KeyValueSet, history.KeyValueCleared, history.KeyValuesCleared]
"""A KV mutation, applied in order; these are the very events the turn recorded."""


@attrs.frozen(kw_only=True)
class OutgoingMessage:
    """A message for the orchestrator queue, invisible for ``delay_ms`` after the commit.

    Providers measure the delay from their own clock at commit time (the
    database clock for PostgreSQL), so timers never depend on a worker's clock.
    """

    message: OrchestratorMessage
    delay_ms: int = 0


@attrs.frozen(kw_only=True)
class ActivityRef:
    """Identifies one scheduled activity: the worker-queue row to delete on cancel."""

    instance: str
    execution_id: int
    id: int


@attrs.frozen(kw_only=True)
class Commit:
    """Everything one turn writes.

    * ``execution_id``: the execution the turn ran (a new one after continue_as_new:
      the provider creates its row and makes it the instance's current execution).
    * ``orchestration_name`` / ``orchestration_version`` / ``parent_instance``:
      instance metadata, stored when the execution starts.
    * ``new_events``: appended to that execution's history; event ids are unique
      per execution, and a clash rejects the whole commit.
    * ``worker_items``: activities to run; ``orchestrator_items``: messages to
      enqueue (timers delayed, child starts, results for a parent, cancels, the
      next execution). A ``StartOrchestration`` for an instance id with no row
      creates that row (a child or detached orchestration); an existing id is
      left as it is and the message is still delivered.
    * ``cancelled_activities``: worker-queue rows to delete (after the inserts,
      so an activity scheduled and cancelled in one turn leaves no row).
    * ``status`` / ``output``: the execution's new status, ``None`` to leave it.
      ``output`` is the result JSON for ``Completed``, the
      :class:`~durox.core.errors.ErrorDetails` record JSON for ``Failed``, the
      new input for ``ContinuedAsNew``.
    * ``custom_status_changed`` / ``custom_status``: when changed, store the
      value and increase the instance's custom status version by one.
    * ``kv_ops``: KV mutations of this execution, in order. When ``status`` is
      terminal the execution's KV changes become the baseline that the next
      execution's fetch sees.
    """

    instance: str
    execution_id: int
    orchestration_name: str
    orchestration_version: str
    parent_instance: str | None = None
    new_events: tuple[history.Event, ...] = ()
    worker_items: tuple[ExecuteActivity, ...] = ()
    orchestrator_items: tuple[OutgoingMessage, ...] = ()
    cancelled_activities: tuple[ActivityRef, ...] = ()
    status: ExecutionStatus | None = None
    output: str | None = None
    custom_status_changed: bool = False
    custom_status: str | None = None
    kv_ops: tuple[KvOp, ...] = ()

    @property
    def is_terminal(self) -> bool:
        """True when the commit ends its execution."""
        return self.status in ("Completed", "Failed", "ContinuedAsNew")
