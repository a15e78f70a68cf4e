"""What a turn decided about its execution: keep going, or how it ended.

These are imperative on purpose (``Complete``, not ``Completed``): they are
decisions of one turn, distinct from the statuses clients read.
"""

from __future__ import annotations

from typing import Union

import attrs

from durox.core.errors import ErrorDetails

__all__ = ["Complete", "Continue", "ContinueAsNew", "Fail", "Outcome"]


@attrs.frozen
class Continue:
    """The orchestration waits for more work to complete."""


@attrs.frozen(kw_only=True)
class Complete:
    """The orchestration returned ``output`` (JSON text)."""

    output: str


@attrs.frozen(kw_only=True)
class Fail:
    """The orchestration failed (or was cancelled, or diverged from its history)."""

    details: ErrorDetails


@attrs.frozen(kw_only=True)
class ContinueAsNew:
    """The execution ends; a new one starts with ``input`` (and ``version``, if pinned)."""

    input: str
    version: str | None = None


Outcome = Union[Continue, Complete, Fail, ContinueAsNew]
