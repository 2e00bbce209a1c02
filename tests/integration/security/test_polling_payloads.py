"""Long-polling payloads as socket.io-client sends them: every packet queued since its last POST,
in one body (packets separated by \\x1e).

python-engineio refuses a payload of more than 16 packets (logs a traceback, answers 200 and drops
the batch); `LeanSocket.handle_post_request` bounds a payload by bytes instead, decodes it whole
before dispatching any packet, and fails the transport (HTTP 400, session closed) on a payload it
cannot decode. Here, over raw Engine.IO long-polling against the real app:

- legitimate payloads of 1..1000 packets are processed whole: every event is answered exactly once,
  messages are stored once with seqs in send order;
- a body that arrives in pieces, or without a Content-Length (chunked), is read whole;
- undecodable payloads (hypothesis-generated) get HTTP 400, close the session, store nothing and
  log one line; a body shorter than its Content-Length is refused the same way;
- once a payload's packets have closed the session, the rest are not dispatched;
- the CPU time of one request at the byte limit stays far below a second (figures printed).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from socketsvc.app import MAX_HTTP_BUFFER
from socketsvc.keys import SIO, STORE
from socketsvc.storage import tables
from tests.conftest import AppServer
from tests.integration.security.test_raw_packets import NOOP, PROBE, RawPolling, WellBehaved
from tests.support.chat_client import ChatClient

SEP = "\x1e"
CPU_BOUND = 1.0
"""Seconds of process CPU (server and test client together) one POST may take: generous."""
MAX_EVENTS = 220
"""Events in one mixed payload at most: past the 200-event burst, but fewer than 30 over it (30
refusals in a row would disconnect the namespace); the rest of a larger payload is pongs."""
HANDOFF_ACK = 99_999
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


# -- helpers ----------------------------------------------------------------------------------


def event(ack: int, name: str, data: Any) -> str:
    return f"42/chat,{ack}" + json.dumps([name, data], separators=(",", ":"))


def message(ack: int, client_id: str) -> str:
    return event(ack, "message", {"client_id": client_id, "text": f"batched {client_id}"})


def acks_in(packets: list[str]) -> dict[int, list[dict[str, Any]]]:
    """Ack id -> every ack the server sent with that id."""
    found: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
    for packet in packets:
        if packet.startswith("43/chat,"):
            rest = packet[len("43/chat,") :]
            start = rest.index("[")
            found[int(rest[:start])].append(json.loads(rest[start:])[0])
    return dict(found)


@contextlib.asynccontextmanager
async def chat_session(server: AppServer) -> AsyncIterator[tuple[RawPolling, dict[str, Any]]]:
    """A raw long-polling /chat session (a GET always pending) and its `session` event."""
    async with aiohttp.ClientSession() as http:
        poll = RawPolling(server.url)
        await poll.open(http)
        try:
            while not (packet := await poll._next()).startswith('42/chat,["session",'):
                pass
            yield poll, json.loads(packet[len("42/chat,") :])[1]
        finally:
            await poll.close()


async def until_probe(poll: RawPolling) -> list[str]:
    """Everything the server sent before answering a probe (it answers after what was queued)."""
    assert await poll.post(PROBE) == 200
    got: list[str] = []
    while (packet := await poll._next()) != NOOP:
        assert packet not in ("1", RawPolling.CLOSED), f"the session was closed; got {got[-3:]}"
        got.append(packet)
    return got


async def until_closed(poll: RawPolling) -> list[str]:
    """What the pending GETs delivered until the session ended (CLOSE, or a 400)."""
    got: list[str] = []
    while (packet := await poll._next()) != RawPolling.CLOSED:
        got.append(packet)
    return got


async def session_is_gone(poll: RawPolling) -> bool:
    """Both a POST and a GET with the session's sid are refused."""
    async with poll.http.post(poll.endpoint, data="3") as post:
        await post.read()
    async with poll.http.get(poll.endpoint) as get:
        await get.read()
    return post.status == 400 and get.status == 400


async def stored(server: AppServer, conversation_id: str) -> list[tuple[str | None, int]]:
    """(client_id, seq) of the conversation's visitor messages, by seq."""
    m = tables.messages.c
    query = (
        sa.select(m.client_id, m.seq)
        .where(m.conversation_id == conversation_id, m.sender_role == "visitor")
        .order_by(m.seq)
    )
    async with server.app[STORE].engine.connect() as conn:
        return [(row.client_id, row.seq) for row in await conn.execute(query)]


async def hand_off(poll: RawPolling) -> None:
    """Queue the conversation, so the bot stays quiet and visitor seqs are contiguous."""
    assert await poll.post(event(HANDOFF_ACK, "handoff", {})) == 200
    assert acks_in(await until_probe(poll))[HANDOFF_ACK][0]["ok"] is True


async def timed_post(poll: RawPolling, body: str | bytes) -> tuple[int, float]:
    started = time.process_time()
    status = await poll.post(body)
    return status, time.process_time() - started


def mixed(count: int, tag: str) -> tuple[list[str], list[tuple[int, str, str | None]]]:
    """`count` packets: every fourth a pong, the others events with ack ids (messages with unique
    client_ids, a typing or read now and then), and pongs only past MAX_EVENTS events.
    Returns the packets and the events sent: (ack id, event, client_id)."""
    packets: list[str] = []
    sent: list[tuple[int, str, str | None]] = []
    for i in range(count):
        n = len(sent)
        if i % 4 == 3 or n >= MAX_EVENTS:
            packets.append("3")
        elif n % 50 == 10:  # 5 in 220: the typing burst
            packets.append(event(n + 1, "typing", {"typing": n % 100 == 10}))
            sent.append((n + 1, "typing", None))
        elif n % 50 == 20:
            packets.append(event(n + 1, "read", {"seq": 1}))
            sent.append((n + 1, "read", None))
        else:
            client_id = f"{tag}-{n}"
            packets.append(message(n + 1, client_id))
            sent.append((n + 1, "message", client_id))
    return packets, sent


# -- legitimate payloads ----------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 16, 17, 50, 200, 1000])
async def test_every_packet_of_a_legitimate_payload_is_processed(
    app_server: AppServer, count: int
) -> None:
    async with chat_session(app_server) as (poll, session):
        await hand_off(poll)
        packets, sent = mixed(count, uuid.uuid4().hex[:8])
        body = SEP.join(packets)
        status, cpu = await timed_post(poll, body)
        acks = acks_in(await until_probe(poll))
    print(
        f"\n{count} packets ({len(sent)} events, {len(body.encode())} bytes): "
        f"HTTP {status}, {cpu * 1000:.1f} ms CPU"
    )
    assert status == 200
    missing = [ack for ack, _, _ in sent if ack not in acks]
    assert not missing, f"{len(missing)} of {len(sent)} events never answered, e.g. {missing[:5]}"
    assert sorted(acks) == [ack for ack, _, _ in sent], "acks for ids that were not sent"
    assert all(len(answers) == 1 for answers in acks.values()), "an event answered twice"
    within_budget = len(sent) < 200  # the handoff took one event of the 200-event burst
    accepted = []
    for ack, name, client_id in sent:
        answer = acks[ack][0]
        if not answer["ok"]:
            assert not within_budget, (name, answer)
            assert answer["error"]["code"] == "rate_limited", (name, answer)
            continue
        if name == "message":
            assert answer["message"]["client_id"] == client_id
            accepted.append((client_id, answer["message"]["seq"]))
    assert sum(acks[ack][0]["ok"] for ack, _, _ in sent) >= min(len(sent), 199)
    seqs = [seq for _, seq in accepted]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seqs not in send order"
    assert await stored(app_server, session["conversation_id"]) == accepted
    assert cpu < CPU_BOUND


@sqlite_only
async def test_a_body_that_arrives_in_pieces_is_read_whole(app_server: AppServer) -> None:
    """aiohttp's `read(n)` returns what has arrived; python-engineio took that for the body."""
    async with chat_session(app_server) as (poll, session):
        await hand_off(poll)
        client_ids = [f"piece-{i}" for i in range(10)]
        body = SEP.join(message(i + 1, c) for i, c in enumerate(client_ids)).encode()
        half = len(body) // 2
        status = await raw_post(poll, [body[:half], body[half:]], len(body))
        acks = acks_in(await until_probe(poll))
    assert status == 200
    assert sorted(acks) == list(range(1, 11)) and all(a[0]["ok"] for a in acks.values())
    assert [c for c, _ in await stored(app_server, session["conversation_id"])] == client_ids


@sqlite_only
async def test_a_chunked_body_without_content_length_is_read_whole(app_server: AppServer) -> None:
    """python-engineio read `CONTENT_LENGTH or 0` bytes: a chunked body was silently ignored."""

    async def chunks(body: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    async with chat_session(app_server) as (poll, session):
        await hand_off(poll)
        client_ids = [f"chunk-{i}" for i in range(20)]
        body = SEP.join(message(i + 1, c) for i, c in enumerate(client_ids)).encode()
        async with poll.http.post(poll.endpoint, data=chunks(body)) as response:
            await response.read()
        acks = acks_in(await until_probe(poll))
        assert response.status == 200
        assert sorted(acks) == list(range(1, 21))
        assert [c for c, _ in await stored(app_server, session["conversation_id"])] == client_ids
        big = b"3" + b"\x1e3" * (MAX_HTTP_BUFFER // 2)  # one byte over the limit
        async with poll.http.post(poll.endpoint, data=chunks(big)) as response:
            await response.read()
        assert response.status == 400
        await until_closed(poll)
        assert await session_is_gone(poll)


async def raw_post(
    poll: RawPolling, parts: list[bytes], content_length: int, eof: bool = False
) -> int | None:
    """POST `parts` to the session over a raw connection, 0.3 s apart; `eof` half-closes after
    the last. The status, or None when the server closed the connection without one."""
    url = urlsplit(poll.endpoint)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(
            f"POST {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {content_length}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(0.3)
            writer.write(part)
            await writer.drain()
        if eof:
            writer.write_eof()
        line = await asyncio.wait_for(reader.readline(), 10)
        return int(line.split()[1]) if line else None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


# -- refused payloads -------------------------------------------------------------------------


def refusals(caplog: pytest.LogCaptureFixture, sid: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if sid in r.getMessage() and "payload" in r.getMessage()]


async def assert_refused(
    server: AppServer,
    poll: RawPolling,
    session: dict[str, Any],
    status: int | None,
    caplog: pytest.LogCaptureFixture,
    what: str,
) -> None:
    assert status in (400, None), f"{what}: HTTP {status}"
    delivered = await until_closed(poll)
    assert not acks_in(delivered), f"{what}: packets of a refused payload were answered"
    assert await session_is_gone(poll), f"{what}: the session is still open"
    assert await stored(server, session["conversation_id"]) == [], f"{what}: something stored"
    lines = refusals(caplog, poll.sid)
    assert len(lines) == 1, f"{what}: {[r.getMessage() for r in lines]}"
    assert lines[0].levelno in (logging.INFO, logging.WARNING) and not lines[0].exc_info


def _inserted(packet: str, junk: bytes, at: int) -> bytes:
    raw = packet.encode()
    at %= len(raw) + 1
    return raw[:at] + junk + raw[at:]


def _bad_base64(data: bytes, junk: str, at: int) -> bytes:
    encoded = base64.b64encode(data).decode()
    at %= len(encoded) + 1
    return ("b" + encoded[:at] + junk + encoded[at:]).encode()


BAD_TYPE = st.characters(codec="utf-8").filter(
    lambda c: c not in "1345b" + SEP and not (c.isdecimal() and int(c) in (1, 3, 4, 5))
)
"""A first character that is no packet type a client sends (PONG, MESSAGE, UPGRADE, CLOSE) and
not the `b` of a base64 binary packet: OPEN, PING, NOOP, 7, 8, 9, anything else."""
DEFECTS = st.one_of(
    st.builds(  # invalid UTF-8 within a packet
        _inserted,
        st.just(message(7, "utf8")),
        st.sampled_from([b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88"]),
        st.integers(0, 100),
    ),
    st.builds(  # a packet type clients do not send
        lambda first, rest: (first + rest).encode(),
        BAD_TYPE,
        st.text(st.characters(codec="utf-8", exclude_characters=SEP), max_size=40),
    ),
    st.just(b""),  # an empty packet: separators side by side, leading or trailing
    st.builds(  # base64 that a strict decoder refuses (python's b64decode skips junk)
        _bad_base64, st.binary(max_size=40), st.sampled_from("!*.-~ %\u00e9"), st.integers(0, 80)
    ),
    st.integers(0, 20).map(lambda n: ("b" + "QUJD" * n + "Q").encode()),  # a bad length
    st.integers(1100, 20_000).map(  # JSON nested deeper than the decoder's recursion limit
        lambda n: ("4" + "[" * n + "]" * n).encode()
    ),
)


def garbage_bodies(examples: int) -> list[tuple[int, int, bytes]]:
    """(valid packets before, after, defect): drawn by hypothesis, replayed by the test."""
    drawn: list[tuple[int, int, bytes]] = []

    @settings(
        max_examples=examples,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(before=st.integers(0, 20), after=st.integers(0, 20), defect=DEFECTS)
    def draw(before: int, after: int, defect: bytes) -> None:
        drawn.append((before, after, defect))

    draw()
    return drawn


@pytest.mark.slow  # about 2 s
async def test_undecodable_payloads_fail_the_transport_and_change_nothing(
    start_app: Any, clients: list[ChatClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = await start_app()
    good = WellBehaved(server, clients)
    await good.connect()
    cases: list[tuple[str, bytes]] = [
        ("over the byte limit: pongs", ("3" + "\x1e3" * (MAX_HTTP_BUFFER // 2)).encode()),
        (
            "over the byte limit: messages",
            SEP.join(message(i, f"o{i}") for i in range(1200)).encode(),
        ),
        (
            "16 messages then a NOOP",
            (SEP.join(message(i, f"s{i}") for i in range(16)) + SEP + "6").encode(),
        ),
        (
            "5 messages then a NOOP",
            (SEP.join(message(i, f"n{i}") for i in range(5)) + SEP + "6").encode(),
        ),
        ("non-utf-8 body", b"\xff\xfe\xfd" * 50),
        ("separators only", SEP.encode() * 10),
    ]
    for before, after, defect in garbage_bodies(60):
        packets = [message(i + 1, f"g{i}").encode() for i in range(before)]
        packets += [defect] + [message(i + 50, f"h{i}").encode() for i in range(after)]
        cases.append((f"{before} + {defect[:24]!r} + {after}", b"\x1e".join(packets)))
    problems: list[str] = []
    worst = 0.0
    for i, (what, body) in enumerate(cases):
        async with chat_session(server) as (poll, session):
            status, cpu = await timed_post(poll, body)
            worst = max(worst, cpu)
            try:
                await assert_refused(server, poll, session, status, caplog, what)
                assert cpu < CPU_BOUND, f"{what}: {cpu:.3f} s CPU"
            except AssertionError as exc:
                problems.append(str(exc).splitlines()[0])
        if i % 20 == 19:
            await good.check()
    await good.check()
    tracebacks = [
        r.getMessage()
        for r in caplog.records
        if r.exc_info or (r.levelno >= logging.ERROR and "Invalid session" not in r.getMessage())
    ]
    print(f"\n{len(cases)} undecodable payloads; the slowest took {worst * 1000:.1f} ms CPU")
    assert not problems, f"{len(problems)} of {len(cases)} not refused as they should:\n" + (
        "\n".join(problems[:30])
    )
    assert not tracebacks, tracebacks[:5]


@sqlite_only
async def test_a_body_shorter_than_its_content_length_is_refused(
    app_server: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with chat_session(app_server) as (poll, session):
        body = SEP.join(message(i + 1, f"short-{i}") for i in range(5)).encode()
        status = await raw_post(poll, [body], len(body) + 20, eof=True)
        await assert_refused(app_server, poll, session, status, caplog, "short body")


# -- a payload that closes its own session ----------------------------------------------------


@sqlite_only
@pytest.mark.parametrize(
    "closer",
    ['42/chat,2["message",', "1"],
    ids=["bad socket.io packet", "engine.io close"],
)
async def test_packets_after_the_session_closed_are_not_dispatched(
    app_server: AppServer, closer: str
) -> None:
    """A bad Socket.IO packet (SocketServer drops the session) or the client's own CLOSE ends the
    session; python-engineio went on dispatching the payload's packets to a closed session (a
    CONNECT then registered a namespace connection that nothing ever removes)."""
    sio = app_server.app[SIO]
    async with chat_session(app_server) as (poll, session):
        await hand_off(poll)
        body = SEP.join([message(1, "before"), closer, message(3, "after"), "41/chat,", "40/chat,"])
        status = await poll.post(body)
        delivered = await until_closed(poll)
        assert await session_is_gone(poll)
        eio_sid = poll.sid
    acks = acks_in(delivered)
    print(f"\nPOST -> {status}; answered {sorted(acks)}; delivered {delivered!r:.300}")
    assert status in (200, 400)
    assert [c for c, _ in await stored(app_server, session["conversation_id"])] == ["before"]
    assert sorted(acks) == [1]
    assert sio.manager.sid_from_eio_sid(eio_sid, "/chat") is None
    assert eio_sid not in sio.environ


# -- CPU per request at the byte limit --------------------------------------------------------


def fill(packet: str, limit: int = MAX_HTTP_BUFFER) -> str:
    """As many copies of `packet` as fit in `limit` bytes."""
    return SEP.join([packet] * ((limit + 1) // (len(packet.encode()) + 1)))


def fill_messages(limit: int = MAX_HTTP_BUFFER) -> str:
    packets: list[str] = []
    size = -1
    while size + len(packet := message(len(packets) + 1, f"c-{len(packets):05d}")) + 1 <= limit:
        packets.append(packet)
        size += len(packet) + 1
    return SEP.join(packets)


@pytest.mark.slow  # about 2 s of CPU measurement
@pytest.mark.timeout(300)
async def test_cpu_per_request_at_the_byte_limit(start_app: Any) -> None:
    """One POST of MAX_HTTP_BUFFER bytes: process CPU (server and test client) per kind."""
    server = await start_app()
    valid = fill_messages()
    cases: list[tuple[str, str | bytes, set[int]]] = [
        ("valid message events (budget: 200 events)", valid, {200}),
        ("garbage: random bytes", bytes(range(256)) * (MAX_HTTP_BUFFER // 256), {400}),
        ("garbage: valid events, the last one bad", valid[: valid.rindex(SEP) + 1] + "6", {400}),
        ("garbage: one deeply nested packet", "4" + "[" * (MAX_HTTP_BUFFER - 1), {400}),
        ("garbage: bad base64", "b" + "QUJD" * (MAX_HTTP_BUFFER // 4 - 1) + "!", {400}),
        ("tiny packets: pongs '3'", fill("3"), {200}),
        ("tiny packets: empty messages '4'", fill("4"), {200}),
        ("tiny packets: NOOPs '6'", fill("6"), {400}),
        ("tiny packets: CONNECT '40/chat,'", fill("40/chat,"), {200}),
        ("tiny events: typing without ack", fill('42/chat,["typing",{"typing":true}]'), {200}),
    ]
    rows = []
    for what, body, statuses in cases:
        size = len(body.encode() if isinstance(body, str) else body)
        assert size <= MAX_HTTP_BUFFER
        async with chat_session(server) as (poll, _):
            await hand_off(poll)  # no bot replies running meanwhile
            status, cpu = await timed_post(poll, body)
        rows.append((what, size, status, cpu))
        assert status in statuses, (what, status)
    print(f"\n{'payload at the byte limit':45} {'bytes':>6} {'HTTP':>4} {'CPU ms':>7}")
    for what, size, status, cpu in rows:
        print(f"{what:45} {size:6} {status:4} {cpu * 1000:7.1f}")
    for what, _, _, cpu in rows:
        assert cpu < CPU_BOUND, (what, cpu)
