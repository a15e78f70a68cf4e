"""Every exception durox raises (see :mod:`durox.core.errors`)."""

from durox.core.errors import (
    ActivityFailed as ActivityFailed,
)
from durox.core.errors import (
    DuroxError as DuroxError,
)
from durox.core.errors import (
    DuroxInternalError as DuroxInternalError,
)
from durox.core.errors import (
    ErrorDetails as ErrorDetails,
)
from durox.core.errors import (
    InstanceAlreadyExists as InstanceAlreadyExists,
)
from durox.core.errors import (
    InstanceNotFound as InstanceNotFound,
)
from durox.core.errors import (
    InvalidArgument as InvalidArgument,
)
from durox.core.errors import (
    LockLost as LockLost,
)
from durox.core.errors import (
    NondeterminismError as NondeterminismError,
)
from durox.core.errors import (
    PayloadError as PayloadError,
)
from durox.core.errors import (
    ProviderClosed as ProviderClosed,
)
from durox.core.errors import (
    ProviderError as ProviderError,
)
from durox.core.errors import (
    SubOrchestrationFailed as SubOrchestrationFailed,
)
from durox.core.errors import (
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
