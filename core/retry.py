"""Retry policies for activities: pure arithmetic, run as ordinary orchestration logic.

A retried activity is nothing special to the runtime: every attempt is its own
``ActivityScheduled`` event, every backoff and timeout its own timer, so a
retry replays exactly like hand-written code.

>>> policy = RetryPolicy(max_attempts=4, backoff=Backoff.exponential(1.0, multiplier=2.0, max=5.0))
>>> [policy.backoff.delay_for_attempt(a) for a in (1, 2, 3, 4)]
[1.0, 2.0, 4.0, 5.0]
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Literal, Union

import attrs

from durox.core.errors import InvalidArgument

__all__ = ["Backoff", "RetryPolicy", "seconds"]

BackoffKind = Literal["none", "fixed", "linear", "exponential"]


def seconds(value: Union[float, timedelta], what: str = "delay") -> float:
    """A non-negative number of seconds from a float or a ``timedelta``."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or math.isinf(value)
    ):
        raise InvalidArgument(f"{what} must be a number of seconds or a timedelta, got {value!r}")
    if value < 0:
        raise InvalidArgument(f"{what} must not be negative, got {value!r}")
    return float(value)


@attrs.frozen
class Backoff:
    """How long to wait before retry number ``attempt`` (1 = after the first failure)."""

    kind: BackoffKind
    base: float = 0.0
    multiplier: float = 2.0
    max: float = math.inf

    @classmethod
    def none(cls) -> Backoff:
        """Retry at once."""
        return cls("none")

    @classmethod
    def fixed(cls, delay: Union[float, timedelta]) -> Backoff:
        """Wait ``delay`` seconds before every retry."""
        return cls("fixed", seconds(delay))

    @classmethod
    def linear(
        cls, base: Union[float, timedelta], max: Union[float, timedelta] = math.inf
    ) -> Backoff:
        """Wait ``base * attempt`` seconds, at most ``max``."""
        return cls("linear", seconds(base, "base"), max=_cap(max))

    @classmethod
    def exponential(
        cls,
        base: Union[float, timedelta],
        multiplier: float = 2.0,
        max: Union[float, timedelta] = 300.0,
    ) -> Backoff:
        """Wait ``base * multiplier ** (attempt - 1)`` seconds, at most ``max``."""
        if (
            isinstance(multiplier, bool)
            or not isinstance(multiplier, (int, float))
            or not multiplier >= 1
        ):
            raise InvalidArgument(f"multiplier must be a number >= 1, got {multiplier!r}")
        return cls("exponential", seconds(base, "base"), float(multiplier), _cap(max))

    def delay_for_attempt(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        if self.kind == "none":
            return 0.0
        if self.kind == "fixed":
            return self.base
        if self.kind == "linear":
            return min(self.base * attempt, self.max)
        try:
            return min(self.base * self.multiplier ** (attempt - 1), self.max)
        except OverflowError:  # far past any cap: the cap it is
            return self.max


def _cap(value: Union[float, timedelta]) -> float:
    return math.inf if value == math.inf else seconds(value, "max")


def _optional_seconds(value: Union[float, timedelta, None]) -> float | None:
    return None if value is None else seconds(value, "timeout")


def _default_backoff() -> Backoff:
    return Backoff.exponential(0.1, multiplier=2.0, max=30.0)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Retry an activity up to ``max_attempts`` times in all.

    * ``timeout``: each attempt may take at most this long; a slow attempt is
      cancelled and counts as a failure (retried if attempts remain).
    * ``total_timeout``: all attempts and backoffs together may take at most
      this long; then the activity fails without further retries.
    * ``backoff``: the wait between attempts (exponential from 0.1 s by default).
    """

    max_attempts: int = 3
    timeout: float | None = attrs.field(default=None, converter=_optional_seconds)
    total_timeout: float | None = attrs.field(default=None, converter=_optional_seconds)
    backoff: Backoff = attrs.field(factory=_default_backoff)

    def __attrs_post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise InvalidArgument(
                f"RetryPolicy.max_attempts must be a whole number >= 1, got {self.max_attempts!r}"
            )
        if not isinstance(self.backoff, Backoff):
            raise InvalidArgument("RetryPolicy.backoff must be a Backoff (Backoff.fixed(1.0), ...)")
