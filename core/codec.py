"""The one place that turns durox values into JSON text and back.

Two jobs, both at the edge of the system:

* **Records** — history events, work items, error details — become a JSON
  object tagged with its class name and a format version::

      {"v": 1, "type": "ActivityScheduled", "event_id": 2, "timestamp_ms": 0, ...}

  The tag names are the class names in :mod:`durox.core.history` and
  :mod:`durox.core.messages`; they are part of the stored format and never
  change meaning. A record written by a newer format version than this code
  knows is rejected with :class:`~durox.errors.PayloadError`.
* **Payloads** — orchestration and activity inputs and outputs — are any
  JSON-serializable value, or attrs / dataclass instances (unstructured with
  cattrs), stored as JSON text and limited in size.

>>> from durox.core import history
>>> text = dumps_record(history.TimerCreated(event_id=2, timestamp_ms=5, fire_at_ms=9))
>>> loads_event(text)
TimerCreated(event_id=2, timestamp_ms=5, fire_at_ms=9)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, TypeVar, cast

import attrs
import cattrs
from cattrs.strategies import configure_tagged_union

from durox.core import history, messages
from durox.core.errors import ErrorDetails, PayloadError

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "FORMAT_VERSION",
    "decode_payload",
    "dumps_record",
    "encode_payload",
    "loads_error",
    "loads_event",
    "loads_work_item",
    "structure",
    "unstructure",
]

FORMAT_VERSION = 1
"""Version of the stored record format; bump on any incompatible change."""

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
"""Default limit on one payload's JSON text, in UTF-8 bytes (1 MiB)."""

T = TypeVar("T")


def _tag(cls: type) -> str:
    return cls.__name__


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    configure_tagged_union(history.Event, converter, tag_generator=_tag, tag_name="type")
    configure_tagged_union(messages.WorkItem, converter, tag_generator=_tag, tag_name="type")
    return converter


_CONVERTER = _make_converter()


def unstructure(value: object) -> Any:
    """Turn attrs / dataclass values (deeply) into JSON-ready builtins."""
    return _CONVERTER.unstructure(value)


def structure(data: Any, cls: type[T]) -> T:
    """Build a ``cls`` from JSON-ready builtins; :class:`PayloadError` if they do not fit."""
    try:
        return _CONVERTER.structure(data, cls)
    except Exception as exc:  # cattrs raises several exception groups and TypeErrors
        raise PayloadError(
            f"cannot read the value as {_type_name(cls)}: {_describe(exc)}"
        ) from None


def dumps_record(record: history.Event | messages.WorkItem | ErrorDetails) -> str:
    """Serialize an event, a work item or error details as versioned JSON text."""
    if isinstance(record, ErrorDetails):
        data = _CONVERTER.unstructure(record)
    elif isinstance(record, history.EVENT_TYPES):
        data = _CONVERTER.unstructure(record, history.Event)
    else:
        data = _CONVERTER.unstructure(record, messages.WorkItem)
    return json.dumps({"v": FORMAT_VERSION, **data}, separators=(",", ":"), ensure_ascii=False)


def loads_event(text: str) -> history.Event:
    """Parse JSON text written by :func:`dumps_record` back into a history event."""
    return cast(history.Event, _load(text, history.Event))


def loads_work_item(text: str) -> messages.WorkItem:
    """Parse JSON text written by :func:`dumps_record` back into a work item."""
    return cast(messages.WorkItem, _load(text, messages.WorkItem))


def loads_error(text: str) -> ErrorDetails:
    """Parse JSON text written by :func:`dumps_record` back into :class:`ErrorDetails`."""
    return cast(ErrorDetails, _load(text, ErrorDetails))


def _load(text: str, cls: Any) -> object:
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"stored record is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"stored record must be a JSON object, got {type(data).__name__}")
    version = data.pop("v", None)
    if version != FORMAT_VERSION:
        raise PayloadError(
            f"stored record has format version {version!r}; this durox reads version {FORMAT_VERSION}"
        )
    return structure(data, cls)


# -- payloads -------------------------------------------------------------------


def encode_payload(
    value: object, *, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, what: str = "payload"
) -> str:
    """Serialize a user value to JSON text, enforcing the size limit.

    attrs and dataclass instances are unstructured first, so they may be
    nested anywhere inside lists and dicts.

    >>> encode_payload({"a": [1, 2]})
    '{"a":[1,2]}'
    """
    try:
        data = _CONVERTER.unstructure(value) if _needs_unstructure(value) else value
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"{what} is not JSON-serializable: {exc}") from None
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise PayloadError(f"{what} is {size} bytes of JSON, over the limit of {max_bytes} bytes")
    return text


def validate_json_text(
    text: str, *, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, what: str = "payload"
) -> str:
    """Check that ``text`` already is JSON text within the size limit; return it."""
    if not isinstance(text, str):
        raise PayloadError(f"{what} must be JSON text (str), got {type(text).__name__}")
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise PayloadError(f"{what} is {size} bytes of JSON, over the limit of {max_bytes} bytes")
    try:
        json.loads(text)
    except ValueError as exc:
        raise PayloadError(f"{what} is not valid JSON: {exc}") from None
    return text


def decode_payload(text: str, result_type: Any = None) -> Any:
    """Parse payload JSON text; structure it to ``result_type`` when one is given."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"stored payload is not valid JSON: {exc}") from None
    if result_type is None or result_type is Any:
        return data
    return structure(data, result_type)


def _needs_unstructure(value: object) -> bool:
    if attrs.has(type(value)) or dataclasses.is_dataclass(value):
        return True
    if isinstance(value, Mapping):
        return any(_needs_unstructure(v) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_needs_unstructure(v) for v in value)
    return False


def _type_name(cls: object) -> str:
    return getattr(cls, "__name__", None) or repr(cls)


def _describe(exc: BaseException) -> str:
    nested = getattr(exc, "exceptions", None)
    if isinstance(nested, (list, tuple)):  # an ExceptionGroup from cattrs
        return "; ".join(_describe(e) for e in nested)
    return f"{type(exc).__name__}: {exc}"
