"""What a client sees of an orchestration: ``Running``, ``Completed``, ``Failed`` or ``NotFound``.

Every status carries ``.status`` (its name, handy for printing and matching)
and the instance's ``custom_status`` with its ``custom_status_version`` (0
until the orchestration first sets one). Use ``isinstance`` or ``match``::

    match client.get_orchestration_status("order-1"):
        case Completed(output=output):
            print("done:", output)
        case Failed(details=details):
            print(details.category, details.display_message())

>>> Completed(output=3).status, NotFound().is_terminal
('Completed', False)
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Union

import attrs

from durox.core.errors import ErrorDetails

__all__ = ["Completed", "Failed", "NotFound", "OrchestrationStatus", "Running", "StatusName"]

StatusName = Literal["Running", "Completed", "Failed", "NotFound"]


@attrs.frozen(kw_only=True)
class Running:
    """The instance exists and has not finished (it may not have run its first turn yet)."""

    status: ClassVar[StatusName] = "Running"
    is_terminal: ClassVar[bool] = False
    custom_status: str | None = None
    custom_status_version: int = 0


@attrs.frozen
class Completed:
    """The orchestration returned ``output`` (decoded from JSON)."""

    status: ClassVar[StatusName] = "Completed"
    is_terminal: ClassVar[bool] = True
    output: Any = None
    custom_status: str | None = attrs.field(default=None, kw_only=True)
    custom_status_version: int = attrs.field(default=0, kw_only=True)


@attrs.frozen
class Failed:
    """The orchestration failed; ``details`` says why (``details.category``, ``details.display_message()``)."""

    status: ClassVar[StatusName] = "Failed"
    is_terminal: ClassVar[bool] = True
    details: ErrorDetails
    custom_status: str | None = attrs.field(default=None, kw_only=True)
    custom_status_version: int = attrs.field(default=0, kw_only=True)

    @property
    def error(self) -> str:
        """``details.display_message()``: one readable line."""
        return str(self.details.display_message())


@attrs.frozen(kw_only=True)
class NotFound:
    """No instance has that id."""

    status: ClassVar[StatusName] = "NotFound"
    is_terminal: ClassVar[bool] = False
    custom_status: str | None = None
    custom_status_version: int = 0


OrchestrationStatus = Union[Running, Completed, Failed, NotFound]
"""Any status a client can observe."""
