"""A server-sent events parser (the `text/event-stream` format of the WHATWG HTML standard).

Small on purpose: the maintained SSE clients for aiohttp are EventSource clients (GET, automatic
reconnection, `Last-Event-ID`), while a chat completion is one POST whose response is the stream.
This parser only turns bytes into events; the caller owns the request.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """One dispatched event: its `event` type (default `message`), `data` and `id`."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Feed it chunks of bytes as they arrive; it returns the events they complete.

    Lines end with CRLF, LF or CR (even when a chunk splits a CRLF); `data:` lines of one event
    are joined with newlines; a blank line dispatches; `:` lines are comments; a field name
    without a colon has an empty value; one space after the colon is dropped; an event with no
    data is not dispatched; unknown fields are ignored.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._pending_cr = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._first = True

    def feed(self, chunk: bytes) -> list[Event]:
        """The events completed by `chunk`."""
        text = self._decoder.decode(chunk)
        if self._first and text:
            text = text.removeprefix("\ufeff")
            self._first = False
        return list(self._lines(text))

    def close(self) -> list[Event]:
        """End of stream: an unterminated last event is dropped, as the standard says."""
        self._decoder.decode(b"", final=True)
        return []

    def _lines(self, text: str) -> Iterator[Event]:
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = False
        self._buffer += text
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                return
            end, width = cut
            line = self._buffer[:end]
            if self._buffer[end] == "\r" and end + 1 == len(self._buffer):
                self._pending_cr = True  # maybe the first half of a CRLF split across chunks
            self._buffer = self._buffer[end + width :]
            event = self._line(line)
            if event is not None:
                yield event

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        return None

    def _dispatch(self) -> Event | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return Event(data="\n".join(data), event=event or "message", id=self._last_id)


def _line_end(buffer: str) -> tuple[int, int] | None:
    """Where the first line of `buffer` ends and how long its terminator is (None: no end yet)."""
    for i, ch in enumerate(buffer):
        if ch == "\n":
            return i, 1
        if ch == "\r":
            return (i, 2) if buffer[i + 1 : i + 2] == "\n" else (i, 1)
    return None


async def events(chunks: AsyncIterable[bytes]) -> AsyncIterator[Event]:
    """The events of a byte stream (e.g. `response.content.iter_any()`)."""
    parser = SSEParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.close():
        yield event
