"""Every exception durox raises (see :mod:`durox.core.errors`)."""

from durox.core.errors import (
    ActivityFailed as ActivityFailed,
    DuroxError as DuroxError,
    DuroxInternalError as DuroxInternalError,
    ErrorDetails as ErrorDetails,
    InstanceAlreadyExists as InstanceAlreadyExists,
    InstanceNotFound as InstanceNotFound,
    InvalidArgument as InvalidArgument,
    LockLost as LockLost,
    NondeterminismError as NondeterminismError,
    PayloadError as PayloadError,
    ProviderClosed as ProviderClosed,
    ProviderError as ProviderError,
    SubOrchestrationFailed as SubOrchestrationFailed,
    WaitTimeout as WaitTimeout,
)

__all__ = [
    "ActivityFailed",
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
