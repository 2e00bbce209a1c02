"""`schemas.load`: every client payload is validated into a dict or refused with a precise error."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import Schema

from socketsvc.domain.errors import Invalid, TooLarge
from socketsvc.transport import schemas


def ok(schema: Schema, payload: Any) -> dict[str, Any]:
    return schemas.load(schema, (payload,))


def invalid(schema: Schema, *args: Any) -> dict[str, Any]:
    """The `fields` of the `Invalid` that loading `args` raises (never `TooLarge`)."""
    with pytest.raises(Invalid) as raised:
        schemas.load(schema, args)
    assert type(raised.value) is Invalid
    assert raised.value.code == "invalid"
    assert raised.value.fields
    return raised.value.fields


# valid payloads ---------------------------------------------------------------------------


def test_chat_message_trims_text_and_keeps_client_id() -> None:
    assert ok(schemas.ChatMessage(), {"client_id": "c-1", "text": "  hello\n"}) == {
        "client_id": "c-1",
        "text": "hello",
    }


def test_chat_message_client_id_defaults_to_none() -> None:
    assert ok(schemas.ChatMessage(), {"text": "hi"}) == {"client_id": None, "text": "hi"}
    assert ok(schemas.ChatMessage(), {"text": "hi", "client_id": None}) == {
        "client_id": None,
        "text": "hi",
    }


def test_chat_message_inner_whitespace_is_kept() -> None:
    assert ok(schemas.ChatMessage(), {"text": " a  b\nc "})["text"] == "a  b\nc"


def test_chat_message_length_limits_apply_after_trimming() -> None:
    schema = schemas.ChatMessage(max_text=5)
    assert ok(schema, {"text": "   12345   "})["text"] == "12345"
    assert ok(schema, {"text": "1"})["text"] == "1"
    assert ok(schemas.ChatMessage(), {"text": "x" * 4000})["text"] == "x" * 4000
    assert ok(schemas.ChatMessage(), {"text": "x", "client_id": "i" * 128})["client_id"] == (
        "i" * 128
    )


def test_max_text_is_per_schema_instance() -> None:
    short = schemas.ChatMessage(max_text=3)
    default = schemas.ChatMessage()
    with pytest.raises(TooLarge):
        ok(short, {"text": "abcd"})
    assert ok(default, {"text": "abcd"})["text"] == "abcd"
    with pytest.raises(TooLarge):
        ok(short, {"text": "abcd"})


@pytest.mark.parametrize("value", [True, False])
def test_typing(value: bool) -> None:
    assert ok(schemas.Typing(), {"typing": value}) == {"typing": value}


@pytest.mark.parametrize("seq", [0, 1, 2**31 - 1])
def test_read(seq: int) -> None:
    assert ok(schemas.Read(), {"seq": seq}) == {"seq": seq}


def test_sync_limit_defaults_to_100() -> None:
    assert ok(schemas.Sync(), {"after_seq": 7}) == {"after_seq": 7, "limit": 100}


@pytest.mark.parametrize("limit", [1, 500])
def test_sync_limit_bounds(limit: int) -> None:
    assert ok(schemas.Sync(), {"after_seq": 0, "limit": limit}) == {"after_seq": 0, "limit": limit}


def test_handoff_reason_is_optional() -> None:
    assert ok(schemas.Handoff(), {}) == {"reason": None}
    assert ok(schemas.Handoff(), {"reason": None}) == {"reason": None}
    assert ok(schemas.Handoff(), {"reason": "r" * 500}) == {"reason": "r" * 500}


# errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "payload", "field"),
    [
        (schemas.ChatMessage(), {}, "text"),
        (schemas.ChatMessage(), {"client_id": "c"}, "text"),
        (schemas.Typing(), {}, "typing"),
        (schemas.Read(), {}, "seq"),
        (schemas.Sync(), {"limit": 5}, "after_seq"),
    ],
)
def test_missing_required_field(schema: Schema, payload: dict[str, Any], field: str) -> None:
    fields = invalid(schema, payload)
    assert fields == {field: ["Missing data for required field."]}


@pytest.mark.parametrize(
    ("schema", "payload", "field"),
    [
        (schemas.ChatMessage(), {"text": 5}, "text"),
        (schemas.ChatMessage(), {"text": ["hi"]}, "text"),
        (schemas.ChatMessage(), {"text": None}, "text"),
        (schemas.ChatMessage(), {"text": True}, "text"),
        (schemas.ChatMessage(), {"text": "hi", "client_id": 5}, "client_id"),
        (schemas.ChatMessage(), {"text": "hi", "client_id": {"a": 1}}, "client_id"),
        # ints (and strings) as booleans
        (schemas.Typing(), {"typing": 1}, "typing"),
        (schemas.Typing(), {"typing": 0}, "typing"),
        (schemas.Typing(), {"typing": "true"}, "typing"),
        (schemas.Typing(), {"typing": None}, "typing"),
        # booleans, floats and strings as ints
        (schemas.Read(), {"seq": True}, "seq"),
        (schemas.Read(), {"seq": False}, "seq"),
        (schemas.Read(), {"seq": 1.0}, "seq"),
        (schemas.Read(), {"seq": 2.5}, "seq"),
        (schemas.Read(), {"seq": "3"}, "seq"),
        (schemas.Read(), {"seq": None}, "seq"),
        (schemas.Sync(), {"after_seq": True}, "after_seq"),
        (schemas.Sync(), {"after_seq": "0"}, "after_seq"),
        (schemas.Sync(), {"after_seq": 0, "limit": True}, "limit"),
        (schemas.Sync(), {"after_seq": 0, "limit": 10.0}, "limit"),
        (schemas.Sync(), {"after_seq": 0, "limit": None}, "limit"),
        (schemas.Handoff(), {"reason": 5}, "reason"),
        (schemas.Handoff(), {"reason": False}, "reason"),
    ],
)
def test_wrong_type(schema: Schema, payload: dict[str, Any], field: str) -> None:
    fields = invalid(schema, payload)
    assert list(fields) == [field]


@pytest.mark.parametrize(
    ("schema", "payload", "field"),
    [
        (schemas.Read(), {"seq": -1}, "seq"),
        (schemas.Read(), {"seq": 2**31}, "seq"),
        (schemas.Sync(), {"after_seq": -5}, "after_seq"),
        (schemas.Sync(), {"after_seq": 0, "limit": 0}, "limit"),
        (schemas.Sync(), {"after_seq": 0, "limit": 501}, "limit"),
    ],
)
def test_out_of_range(schema: Schema, payload: dict[str, Any], field: str) -> None:
    assert list(invalid(schema, payload)) == [field]


@pytest.mark.parametrize(
    ("schema", "payload"),
    [
        (schemas.ChatMessage(), {"text": "hi", "conversation_id": "c1"}),
        (schemas.Typing(), {"typing": True, "extra": 1}),
        (schemas.Read(), {"seq": 1, "conversation_id": "c1"}),
        (schemas.Sync(), {"after_seq": 0, "offset": 3}),
        (schemas.Handoff(), {"why": "please"}),
    ],
)
def test_unknown_field(schema: Schema, payload: dict[str, Any]) -> None:
    known = set(schema.fields)
    unknown = (set(payload) - known).pop()
    assert invalid(schema, payload) == {unknown: ["Unknown field."]}


@pytest.mark.parametrize("text", ["", " ", "\n\t  "])
def test_empty_text(text: str) -> None:
    assert invalid(schemas.ChatMessage(), {"text": text}) == {"text": ["Must not be empty."]}


def test_empty_client_id() -> None:
    assert list(invalid(schemas.ChatMessage(), {"text": "hi", "client_id": ""})) == ["client_id"]


def test_over_long_text_alone_is_too_large() -> None:
    with pytest.raises(TooLarge) as raised:
        ok(schemas.ChatMessage(max_text=5), {"text": "123456", "client_id": "c"})
    assert raised.value.code == "too_large"
    assert raised.value.fields == {"text": ["Longer than the maximum of 5 characters."]}


def test_over_long_text_at_the_default_limit_is_too_large() -> None:
    with pytest.raises(TooLarge) as raised:
        ok(schemas.ChatMessage(), {"text": "x" * 4001})
    assert raised.value.fields == {"text": ["Longer than the maximum of 4000 characters."]}


@pytest.mark.parametrize(
    ("extra", "other_field"),
    [
        ({"client_id": ""}, "client_id"),
        ({"client_id": 7}, "client_id"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_over_long_text_with_another_problem_is_invalid(
    extra: dict[str, Any], other_field: str
) -> None:
    fields = invalid(schemas.ChatMessage(max_text=5), {"text": "123456", **extra})
    assert set(fields) == {"text", other_field}
    assert fields["text"] == ["Longer than the maximum of 5 characters."]


@pytest.mark.parametrize(
    ("schema", "payload", "field"),
    [
        (schemas.ChatMessage(), {"text": "hi", "client_id": "c" * 129}, "client_id"),
        (schemas.Handoff(), {"reason": "r" * 501}, "reason"),
    ],
)
def test_over_long_non_text_field_is_invalid(
    schema: Schema, payload: dict[str, Any], field: str
) -> None:
    assert list(invalid(schema, payload)) == [field]


# payload shape ----------------------------------------------------------------------------

SHAPE_ERROR = {"_schema": ["Expected one object as the event's payload."]}


@pytest.mark.parametrize(
    "schema",
    [schemas.ChatMessage(), schemas.Typing(), schemas.Read(), schemas.Sync(), schemas.Handoff()],
)
@pytest.mark.parametrize("payload", [None, "hello", 5, True, [], [{"text": "hi"}]])
def test_non_object_payload(schema: Schema, payload: Any) -> None:
    assert invalid(schema, payload) == SHAPE_ERROR


@pytest.mark.parametrize(
    "args",
    [(), ({"typing": True}, {"typing": True}), ({"typing": True}, "extra")],
    ids=["no-args", "two-objects", "object-and-string"],
)
def test_wrong_arity(args: tuple[Any, ...]) -> None:
    with pytest.raises(Invalid) as raised:
        schemas.load(schemas.Typing(), args)
    assert raised.value.fields == SHAPE_ERROR
    assert raised.value.message == "payload must be one JSON object"


def test_error_to_dict_carries_code_and_fields() -> None:
    with pytest.raises(Invalid) as raised:
        ok(schemas.Read(), {"seq": "x"})
    assert raised.value.to_dict() == {
        "code": "invalid",
        "message": "payload failed validation",
        "fields": {"seq": ["Not a valid integer."]},
    }


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"text": "a\x00b"}, "text"),
        ({"text": "\ud800 lone surrogate"}, "text"),
        ({"client_id": "\udfff", "text": "ok"}, "client_id"),
    ],
)
def test_strings_a_database_cannot_store_are_invalid(payload, field):
    with pytest.raises(Invalid) as caught:
        schemas.load(schemas.ChatMessage(), (payload,))
    assert field in (caught.value.fields or {})
