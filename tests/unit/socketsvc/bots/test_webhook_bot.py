"""The webhook bot's pure parts: signing and verification, the body, the answers it accepts and
the backoff. Its HTTP side (retries, timeouts, fallbacks) runs against a real server in
tests/integration/bots/test_webhook_bot.py."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from socketsvc.bots.webhook_bot import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Answer,
    Malformed,
    backoff,
    encode,
    parse_answer,
    retry_after,
    sign,
    signed_headers,
    verify,
)

SECRET = "whsec-unit-test-0123456789"
NOW = 1_780_000_000


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = encode({"event": "message.created", "id": "d1", "message": {"text": "héllo"}})
    expected = hmac.new(SECRET.encode(), str(NOW).encode() + b"." + body, hashlib.sha256)
    assert sign(SECRET, NOW, body) == "sha256=" + expected.hexdigest()
    assert sign(SECRET, str(NOW), body) == sign(SECRET, NOW, body)
    # A fixed vector, so that a change of the scheme cannot go unnoticed by the receivers.
    assert sign("secret", 1, b"{}") == (
        "sha256=" + hmac.new(b"secret", b"1.{}", hashlib.sha256).hexdigest()
    )


def test_signed_headers_verify_and_tampering_does_not() -> None:
    body = encode({"event": "message.created", "id": "d1"})
    headers = signed_headers(SECRET, "d1", body, attempt=2, now=NOW)
    assert headers["Content-Type"] == "application/json"
    assert headers[TIMESTAMP_HEADER] == str(NOW) and headers[DELIVERY_HEADER] == "d1"
    assert headers["X-Socketsvc-Attempt"] == "2"
    signature, timestamp = headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
    assert verify(SECRET, timestamp, body, signature, now=NOW + 10)
    assert not verify("another-secret-entirely", timestamp, body, signature, now=NOW)
    assert not verify(SECRET, timestamp, body + b" ", signature, now=NOW)
    assert not verify(SECRET, str(NOW + 1), body, signature, now=NOW)  # the timestamp is signed
    assert not verify(SECRET, timestamp, body, signature, now=NOW + 301)  # too old: a replay
    assert not verify(SECRET, timestamp, body, signature, now=NOW - 301)
    assert not verify(SECRET, None, body, signature, now=NOW)
    assert not verify(SECRET, "12e3", body, signature, now=NOW)
    assert not verify(SECRET, timestamp, body, signature.upper(), now=NOW)


def test_the_body_is_compact_utf8_json() -> None:
    body = encode({"b": "ünïcode", "a": [1, 2]})
    assert body == '{"b":"ünïcode","a":[1,2]}'.encode()
    assert json.loads(body) == {"b": "ünïcode", "a": [1, 2]}


@pytest.mark.parametrize(
    ("status", "body", "answer"),
    [
        (200, b'{"reply": "Hi!"}', Answer(("Hi!",))),
        (200, b'{"reply": "  Hi!  "}', Answer(("Hi!",))),
        (200, b'{"replies": ["One", {"text": "Two"}, "  "]}', Answer(("One", "Two"))),
        (200, b'{"reply": "A", "replies": ["B"]}', Answer(("A", "B"))),
        (200, b'{"handoff": true}', Answer(handoff=True)),
        (
            201,
            b'{"reply": "Passing you on", "handoff": {"reason": "refund", "summary": "Order 42"}}',
            Answer(("Passing you on",), True, "refund", "Order 42"),
        ),
        (200, b'{"handoff": false, "reply": "x"}', Answer(("x",))),
        (200, b"", Answer()),
        (200, b"{}", Answer()),
        (200, b'{"something": "else"}', Answer()),
        (202, b"anything at all", Answer()),
        (204, b"", Answer()),
    ],
)
def test_answers(status: int, body: bytes, answer: Answer) -> None:
    assert parse_answer(status, body) == answer


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "not JSON"),
        (b'["reply"]', "not a JSON object"),
        (b'{"reply": 42}', "not a string"),
        (b'{"replies": "one"}', "not a list"),
        (b'{"replies": [{"txt": "x"}]}', "not a string"),
        (b'{"handoff": "yes"}', "not true or an object"),
        (b'{"handoff": {"reason": 1}}', "must be strings"),
        (json.dumps({"replies": ["x"] * 11}).encode(), "over 10 replies"),
        (json.dumps({"reply": "x" * 16001}).encode(), "over 16000 characters"),
        (b" " * 70000, None),  # blank: nothing to say, however long
    ],
)
def test_malformed_answers(body: bytes, why: str | None) -> None:
    if why is None:
        assert parse_answer(200, body) == Answer()
        return
    with pytest.raises(Malformed, match=why):
        parse_answer(200, body)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    assert [backoff(n, lambda: 1.0) for n in (1, 2, 3)] == [
        BACKOFF_BASE,
        2 * BACKOFF_BASE,
        4 * BACKOFF_BASE,
    ]
    assert [backoff(n, lambda: 0.0) for n in (1, 2, 3)] == [
        BACKOFF_BASE / 2,
        BACKOFF_BASE,
        2 * BACKOFF_BASE,
    ]
    assert backoff(30, lambda: 1.0) == BACKOFF_CAP
    spread = {round(backoff(3), 6) for _ in range(50)}
    assert len(spread) > 10 and all(BACKOFF_BASE * 2 <= d <= BACKOFF_BASE * 4 for d in spread)


def test_retry_after_takes_seconds_only() -> None:
    assert retry_after("3") == 3.0 and retry_after(" 0 ") == 0.0
    assert retry_after(None) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert retry_after("-1") is None and retry_after("1.5") is None
