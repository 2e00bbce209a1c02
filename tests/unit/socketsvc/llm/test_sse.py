"""The server-sent events parser, on the cases of the WHATWG event-stream format."""

from __future__ import annotations

import pytest

from socketsvc.llm.sse import Event, SSEParser, events


def parse(*chunks: bytes) -> list[Event]:
    parser = SSEParser()
    found = [e for chunk in chunks for e in parser.feed(chunk)]
    return found + parser.close()


def test_openai_style_stream():
    body = b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n'
    assert [e.data for e in parse(body)] == ['{"a": 1}', '{"b": 2}', "[DONE]"]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(newline: bytes):
    body = newline.join([b"data: one", b"", b"data: two", b"", b""])
    assert [e.data for e in parse(body)] == ["one", "two"]


def test_chunks_split_anywhere_even_inside_crlf_and_utf8():
    body = "data: héllo wörld\r\n\r\ndata: ✓\r\n\r\n".encode()
    whole = parse(body)
    for cut in range(1, len(body)):
        assert parse(body[:cut], body[cut:]) == whole, cut
    assert [e.data for e in whole] == ["héllo wörld", "✓"]
    assert [e.data for e in parse(*(body[i : i + 1] for i in range(len(body))))] == [
        "héllo wörld",
        "✓",
    ]


def test_multiline_data_comments_fields_and_spaces():
    body = (
        b": keep-alive comment\n"
        b"event: update\nid: 7\ndata: first\ndata:second\ndata:  two spaces\nretry: 10\n\n"
        b"data\n\n"
        b"unknown: x\n\n"
    )
    first, empty = parse(body)
    assert first == Event(data="first\nsecond\n two spaces", event="update", id="7")
    assert empty == Event(data="", event="message", id="7")  # `data` alone: an empty value


def test_unterminated_last_event_is_dropped_and_bom_skipped():
    assert [e.data for e in parse(b"\xef\xbb\xbfdata: a\n\ndata: cut off")] == ["a"]


async def test_events_over_an_async_byte_stream():
    async def chunks():
        for piece in (b"data: x", b"\n\nda", b"ta: y\n", b"\n"):
            yield piece

    assert [e.data async for e in events(chunks())] == ["x", "y"]
