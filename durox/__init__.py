"""durox: durable orchestrations for Python.

Write workflows as plain generator functions; durox records every decision
in an event history, so a workflow survives crashes, restarts and deploys
and resumes by replaying that history.

>>> import durox
>>> registry = durox.Registry()
>>> @registry.activity("Greet")
... def greet(ctx: durox.ActivityContext, name: str) -> str:
...     return f"Hello, {name}!"
>>> @registry.orchestration("HelloWorld")
... def hello(ctx: durox.OrchestrationContext, name: str):
...     return (yield ctx.schedule_activity("Greet", name))

Run it with a driver (``durox.drivers.threads``, ``.asyncio`` or ``.trio``)
on a provider (``durox.providers.SqliteProvider("app.db")``, ...). This
module imports no driver, no provider and no concurrency framework.
"""

from durox.core.context import DurableFuture as DurableFuture
from durox.core.context import OrchestrationContext as OrchestrationContext
from durox.core.context import TaskCancelled as TaskCancelled
from durox.core.errors import ActivityFailed as ActivityFailed
from durox.core.errors import DuroxError as DuroxError
from durox.core.errors import DuroxInternalError as DuroxInternalError
from durox.core.errors import ErrorDetails as ErrorDetails
from durox.core.errors import InstanceAlreadyExists as InstanceAlreadyExists
from durox.core.errors import InstanceNotFound as InstanceNotFound
from durox.core.errors import InvalidArgument as InvalidArgument
from durox.core.errors import LockLost as LockLost
from durox.core.errors import NondeterminismError as NondeterminismError
from durox.core.errors import PayloadError as PayloadError
from durox.core.errors import ProviderClosed as ProviderClosed
from durox.core.errors import ProviderError as ProviderError
from durox.core.errors import SubOrchestrationFailed as SubOrchestrationFailed
from durox.core.errors import WaitTimeout as WaitTimeout
from durox.core.options import RuntimeOptions as RuntimeOptions
from durox.core.registry import Registry as Registry
from durox.core.retry import Backoff as Backoff
from durox.core.retry import RetryPolicy as RetryPolicy
from durox.core.status import Completed as Completed
from durox.core.status import Failed as Failed
from durox.core.status import NotFound as NotFound
from durox.core.status import OrchestrationStatus as OrchestrationStatus
from durox.core.status import Running as Running
from durox.core.tags import TagFilter as TagFilter
from durox.drivers._activity import ActivityContext as ActivityContext

__version__ = "0.1.0"

__all__ = [
    "ActivityContext",
    "ActivityFailed",
    "Backoff",
    "Completed",
    "DurableFuture",
    "DuroxError",
    "DuroxInternalError",
    "ErrorDetails",
    "Failed",
    "InstanceAlreadyExists",
    "InstanceNotFound",
    "InvalidArgument",
    "LockLost",
    "NondeterminismError",
    "NotFound",
    "OrchestrationContext",
    "OrchestrationStatus",
    "PayloadError",
    "ProviderClosed",
    "ProviderError",
    "Registry",
    "RetryPolicy",
    "Running",
    "RuntimeOptions",
    "SubOrchestrationFailed",
    "TagFilter",
    "TaskCancelled",
    "WaitTimeout",
]
