"""Which activity tags a worker serves."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs

from durox.core.errors import InvalidArgument

__all__ = ["MAX_TAGS_PER_FILTER", "TagFilter"]

MAX_TAGS_PER_FILTER = 5
MAX_TAG_LENGTH = 256

Mode = Literal["default_only", "tags", "default_and", "any", "none"]


@attrs.frozen
class TagFilter:
    """Selects the activities a worker fetches, by the tag they were scheduled with.

    >>> TagFilter.default_only().matches(None), TagFilter.default_only().matches("gpu")
    (True, False)
    >>> TagFilter.default_and(["gpu"]).matches("gpu")
    True
    """

    mode: Mode
    names: tuple[str, ...] = ()

    @classmethod
    def default_only(cls) -> TagFilter:
        """Only untagged activities (the default)."""
        return cls("default_only")

    @classmethod
    def tags(cls, tags: Iterable[str]) -> TagFilter:
        """Only activities tagged with one of ``tags`` (1 to 5 tags)."""
        return cls("tags", _check_tags(tags))

    @classmethod
    def default_and(cls, tags: Iterable[str]) -> TagFilter:
        """Untagged activities and those tagged with one of ``tags``."""
        return cls("default_and", _check_tags(tags))

    @classmethod
    def any(cls) -> TagFilter:
        """Every activity, tagged or not."""
        return cls("any")

    @classmethod
    def none(cls) -> TagFilter:
        """No activity at all (an orchestration-only runtime)."""
        return cls("none")

    def matches(self, tag: str | None) -> bool:
        """Whether an activity scheduled with ``tag`` may be fetched."""
        if self.mode == "any":
            return True
        if self.mode == "none":
            return False
        if tag is None:
            return self.mode in ("default_only", "default_and")
        return self.mode in ("tags", "default_and") and tag in self.names


def _check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tags, str):
        raise InvalidArgument("tags must be a list of strings, not one string")
    unique = tuple(dict.fromkeys(tags))
    if not 1 <= len(unique) <= MAX_TAGS_PER_FILTER:
        raise InvalidArgument(
            f"a TagFilter takes 1 to {MAX_TAGS_PER_FILTER} distinct tags, got {len(unique)}"
        )
    for tag in unique:
        if not isinstance(tag, str) or not tag or len(tag) > MAX_TAG_LENGTH:
            raise InvalidArgument(
                f"tag {tag!r} must be a non-empty string of at most {MAX_TAG_LENGTH} characters"
            )
    return tuple(sorted(unique))
