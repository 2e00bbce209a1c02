"""One marshmallow schema per client event. Unknown fields are rejected (marshmallow's RAISE)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from socketsvc.domain.errors import Invalid, TooLarge

TOO_LONG = "Longer than the maximum of {max} characters."
MAX_ID = 128


class SafeString(fields.String):
    """A string that every database can store: valid Unicode (no lone surrogates), no NUL."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("Must not contain NUL characters.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("Not valid Unicode text.") from None
        return text


class Text(SafeString):
    """A string trimmed of surrounding whitespace, 1..max_length characters after trimming."""

    def __init__(self, max_length: int = 4000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise ValidationError("Must not be empty.")
        if len(text) > self.max_length:
            raise ValidationError(TOO_LONG.format(max=self.max_length))
        return text


class StrictBoolean(fields.Boolean):
    """Only JSON true/false; no "yes", 1 or "true"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("Not a valid boolean.")
        return value


class StrictInteger(fields.Integer):
    """Only JSON integers; no strings, floats or booleans."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("Not a valid integer.")
        return int(super()._deserialize(value, attr, data, **kwargs))


def _id(**kwargs: Any) -> fields.String:
    return SafeString(validate=validate.Length(min=1, max=MAX_ID), **kwargs)


def _seq(**kwargs: Any) -> fields.Integer:
    return StrictInteger(validate=validate.Range(min=0, max=2**31 - 1), **kwargs)


class TextSchema(Schema):
    """Base for schemas with a `text` field whose limit is a setting."""

    def __init__(self, max_text: int = 4000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        text = self.fields.get("text")
        if isinstance(text, Text):
            text.max_length = max_text


class ChatMessage(TextSchema):
    client_id = _id(allow_none=True, load_default=None)
    text = Text(required=True)


class Typing(Schema):
    typing = StrictBoolean(required=True)


class Read(Schema):
    seq = _seq(required=True)


class Sync(Schema):
    after_seq = _seq(required=True)
    limit = StrictInteger(validate=validate.Range(min=1, max=500), load_default=100)


class Handoff(Schema):
    reason = SafeString(validate=validate.Length(max=500), load_default=None, allow_none=True)


def load(schema: Schema, args: tuple[Any, ...]) -> dict[str, Any]:
    """Validate an event's arguments (exactly one object) into a dict.

    Raises `Invalid` naming the fields, or `TooLarge` when only over-long text is wrong.
    """
    if len(args) != 1 or not (type(args[0]) is dict or isinstance(args[0], Mapping)):
        raise Invalid(
            "payload must be one JSON object",
            {"_schema": ["Expected one object as the event's payload."]},
        )
    try:
        result: dict[str, Any] = schema.load(args[0])
    except ValidationError as exc:
        messages = exc.normalized_messages()  # type: ignore[no-untyped-call]
        if messages and all(_is_too_long(v) for v in messages.values()):
            raise TooLarge("text is too long", messages) from None
        raise Invalid("payload failed validation", messages) from None
    return result


def _is_too_long(messages: Any) -> bool:
    return isinstance(messages, list) and any(
        isinstance(m, str) and m.startswith("Longer than the maximum") for m in messages
    )


class AgentAccept(Schema):
    conversation_id = _id(required=True)


class AgentMessage(TextSchema):
    conversation_id = _id(required=True)
    client_id = _id(allow_none=True, load_default=None)
    text = Text(required=True)


class AgentTyping(Schema):
    conversation_id = _id(required=True)
    typing = StrictBoolean(required=True)


class AgentRead(Schema):
    conversation_id = _id(required=True)
    seq = _seq(required=True)


class AgentSync(Schema):
    conversation_id = _id(required=True)
    after_seq = _seq(required=True)
    limit = StrictInteger(validate=validate.Range(min=1, max=500), load_default=100)


class AgentTransfer(Schema):
    conversation_id = _id(required=True)
    agent_id = _id(required=True)


class AgentRelease(Schema):
    conversation_id = _id(required=True)
    to = fields.String(required=True, validate=validate.OneOf(["queue", "bot"]))


class AgentResolve(Schema):
    conversation_id = _id(required=True)


class Availability(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["online", "away"]))


class BotMessage(TextSchema):
    delivery_id = _id(required=True)
    client_id = SafeString(
        validate=validate.Length(min=1, max=64), allow_none=True, load_default=None
    )
    text = Text(required=True)
    matched = StrictBoolean(load_default=True)
    offer_human = StrictBoolean(load_default=False)


class BotTyping(Schema):
    delivery_id = _id(required=True)
    typing = StrictBoolean(required=True)


class BotHandoff(Schema):
    delivery_id = _id(required=True)
    reason = SafeString(validate=validate.Length(max=200), load_default=None, allow_none=True)
    summary = SafeString(validate=validate.Length(max=1000), load_default=None, allow_none=True)


class BotDelivery(Schema):
    """`resolve` and `done`: only the delivery."""

    delivery_id = _id(required=True)
