"""The codec: every record round-trips, formats are versioned, payloads are limited."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durox.core import codec, history, messages
from durox.core.errors import ErrorDetails, PayloadError

RECORD_TYPES: list[type] = [
    *history.EVENT_TYPES,
    *messages.ORCHESTRATOR_MESSAGE_TYPES,
    messages.ExecuteActivity,
]


def test_every_kind_is_covered() -> None:
    assert len(history.EVENT_TYPES) == 27
    assert {t.__name__ for t in RECORD_TYPES} >= {"ExecuteActivity", "CancelInstance", "TimerFired"}


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=15)
@given(data=st.data())
def test_round_trip(record_type: type, data: st.DataObject) -> None:
    record = data.draw(st.from_type(record_type))
    text = codec.dumps_record(record)
    stored = json.loads(text)
    assert (stored["v"], stored["type"]) == (codec.FORMAT_VERSION, record_type.__name__)
    loaded = (
        codec.loads_event(text)
        if record_type in history.EVENT_TYPES
        else codec.loads_work_item(text)
    )
    assert loaded == record
    assert type(loaded) is record_type


@settings(max_examples=30)
@given(details=st.from_type(ErrorDetails))
def test_error_details_round_trip(details: ErrorDetails) -> None:
    assert codec.loads_error(codec.dumps_record(details)) == details


def test_format_is_compact_tagged_json() -> None:
    event = history.TimerCreated(event_id=2, timestamp_ms=5, fire_at_ms=9)
    text = codec.dumps_record(event)
    assert " " not in text
    assert json.loads(text) == {
        "v": 1,
        "type": "TimerCreated",
        "event_id": 2,
        "timestamp_ms": 5,
        "fire_at_ms": 9,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"v":2,"type":"TimerCreated","event_id":2,"timestamp_ms":5,"fire_at_ms":9}',
            "format version 2",
        ),
        (
            '{"type":"TimerCreated","event_id":2,"timestamp_ms":5,"fire_at_ms":9}',
            "format version None",
        ),
        ("not json", "not valid JSON"),
        ("[1,2]", "must be a JSON object"),
        ('{"v":1,"type":"NoSuchEvent","event_id":1}', "cannot read the value"),
        (
            '{"v":1,"type":"TimerCreated","event_id":"two","timestamp_ms":5}',
            "cannot read the value",
        ),
    ],
    ids=["newer-version", "no-version", "not-json", "not-object", "unknown-type", "bad-fields"],
)
def test_unreadable_records_raise_payload_error(text: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        codec.loads_event(text)


def test_events_and_work_items_are_not_confused() -> None:
    event_text = codec.dumps_record(history.KeyValuesCleared(event_id=1, timestamp_ms=0))
    with pytest.raises(PayloadError):
        codec.loads_work_item(event_text)


@attrs.frozen
class Inner:
    n: int


@dataclasses.dataclass
class Outer:
    name: str
    inner: Inner
    tags: list[str]


def test_payloads_unstructure_attrs_and_dataclasses_anywhere() -> None:
    value = {"items": [Outer("a", Inner(1), ["t"])], "plain": (1, 2)}
    text = codec.encode_payload(value)
    assert text == '{"items":[{"name":"a","inner":{"n":1},"tags":["t"]}],"plain":[1,2]}'
    assert codec.decode_payload('{"name":"a","inner":{"n":1},"tags":["t"]}', Outer) == Outer(
        "a", Inner(1), ["t"]
    )


def test_payload_size_limit_counts_utf8_bytes() -> None:
    assert codec.encode_payload("é" * 4, max_bytes=10) == '"éééé"'  # 8 + 2 bytes
    with pytest.raises(PayloadError, match="11 bytes of JSON, over the limit of 10 bytes"):
        codec.encode_payload("é" * 4 + "x", max_bytes=10, what="thing")
    with pytest.raises(PayloadError, match="over the limit"):
        codec.validate_json_text('"' + "x" * 20 + '"', max_bytes=10)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1, 2}, object(), b"bytes"])
def test_unserializable_payloads_raise(value: Any) -> None:
    with pytest.raises(PayloadError, match="not JSON-serializable"):
        codec.encode_payload(value)


def test_decode_errors() -> None:
    with pytest.raises(PayloadError, match="not valid JSON"):
        codec.decode_payload("{")
    with pytest.raises(PayloadError, match="cannot read the value as int"):
        codec.decode_payload('"x"', int)
    assert codec.decode_payload('{"a":1}', Any) == {"a": 1}


def test_validate_json_text() -> None:
    assert codec.validate_json_text('{"a":1}') == '{"a":1}'
    with pytest.raises(PayloadError, match="must be JSON text"):
        codec.validate_json_text(5)
    with pytest.raises(PayloadError, match="not valid JSON"):
        codec.validate_json_text("{a}")


@settings(max_examples=50)
@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=10,
    )
)
def test_json_payloads_round_trip(value: Any) -> None:
    assert codec.decode_payload(codec.encode_payload(value)) == value
