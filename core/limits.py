"""Limits on ids, names and stored values, and the checks that enforce them."""

from __future__ import annotations

from durox.core.errors import InvalidArgument

__all__ = [
    "MAX_CARRY_FORWARD_EVENTS",
    "MAX_CUSTOM_STATUS_BYTES",
    "MAX_ID_LENGTH",
    "MAX_KV_KEYS",
    "MAX_KV_VALUE_BYTES",
    "check_id",
]

MAX_ID_LENGTH = 256
"""Instance ids, orchestration, activity, event and queue names: at most this many characters."""

MAX_KV_KEYS = 100
"""KV keys one instance may hold."""

MAX_KV_VALUE_BYTES = 16 * 1024
"""Size of one KV value's JSON text, in UTF-8 bytes."""

MAX_CUSTOM_STATUS_BYTES = 256 * 1024
"""Size of the custom status text, in UTF-8 bytes."""

MAX_CARRY_FORWARD_EVENTS = 20
"""Unconsumed queue messages carried into the next execution by continue_as_new."""


def check_id(value: object, what: str = "instance id") -> str:
    """Return ``value`` if it is a valid id or name, else raise :class:`InvalidArgument`.

    Valid: a non-empty ``str`` of at most 256 characters with no control
    characters (NUL, newline, tab...).

    >>> check_id("order-42")
    'order-42'
    """
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(
            f"{what} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}"
        )
    for index, char in enumerate(value):
        if ord(char) < 32 or ord(char) == 127:
            raise InvalidArgument(
                f"{what} {value[:40]!r} contains control character {char!r} at position {index}"
            )
    return value
