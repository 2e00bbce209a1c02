// Batches of emits with the official socket.io-client (see docs/protocol.md, "Transport").
//
//   SOCKETSVC_URL=http://127.0.0.1:8080 node --test tests/e2e/polling_batches.test.mjs
//
// On long-polling the client sends every packet queued since its last POST in one payload: a
// burst of emits, or the emits buffered while it was disconnected, flushed on reconnect. Each one
// must be acked once, stored once, with seqs in send order; python-engineio on its own dropped any
// payload of more than 16 packets. Runs over long-polling only, over the default transports
// (polling, then upgrade) and over the default transports with a WebSocket that opens 1 s late
// (over a slow network the upgrade takes longer than the first answers over polling; on loopback
// it is done before the namespace has connected, so the default transports send no batch), each
// case on a fresh connection (each has its own event budget).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http from "node:http";
import { once } from "node:events";
import { test } from "node:test";

import { transports as engineTransports } from "engine.io-client";
import { io } from "socket.io-client";

const BASE_URL = (process.env.SOCKETSVC_URL ?? "").replace(/\/+$/, "");
if (!BASE_URL) {
  throw new Error(
    "SOCKETSVC_URL is not set: point it at a running socketsvc, e.g. SOCKETSVC_URL=http://127.0.0.1:8080",
  );
}

const WAIT_MS = 10_000;
const ACK_MS = 20_000;

/** The client's WebSocket transport, opening its connection a second late. */
class SlowWebSocket extends engineTransports.websocket {
  doOpen() {
    setTimeout(() => super.doOpen(), 1000);
  }
}

// [label, transports option, whether the emits must go out in polling batches]
const TRANSPORTS = [
  ["polling only", ["polling"], true],
  ["default transports (polling, then upgrade)", undefined, false],
  ["default transports with a slow WebSocket upgrade", [engineTransports.polling, SlowWebSocket], true],
];

/**
 * A /chat socket that resumes its visitor on every reconnect (auth is the latest `session` token)
 * and records the size of each batch of packets its engine writes, per transport.
 */
function openChat({ transports, reconnection = false }) {
  const agent = new http.Agent({ keepAlive: false });
  let token = null;
  const options = {
    forceNew: true,
    autoConnect: false,
    timeout: WAIT_MS,
    agent,
    reconnection,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    auth: (cb) => cb(token ? { visitor_token: token } : {}),
  };
  if (transports) options.transports = transports;
  const socket = io(`${BASE_URL}/chat`, options);
  const sessions = [];
  const batches = [];
  socket.on("session", (session) => {
    sessions.push(session);
    token = session.visitor_token;
  });
  // Each (re)opened engine: after a flush, its write buffer holds the batch just written.
  socket.io.on("open", () => {
    const engine = socket.io.engine;
    engine.on("flush", () => batches.push([engine.transport.name, engine.writeBuffer.length]));
  });
  return {
    socket,
    sessions,
    batches,
    async connect() {
      const next = sessions.length + 1;
      socket.connect();
      await waitFor(() => sessions.length >= next, "the 'session' event");
      return sessions[next - 1];
    },
    emit(event, payload) {
      return socket.timeout(ACK_MS).emitWithAck(event, payload);
    },
    /** The largest batch written over long-polling. */
    largestPollingBatch: () => Math.max(0, ...batches.filter(([t]) => t === "polling").map(([, n]) => n)),
    close() {
      socket.close();
      agent.destroy();
    },
  };
}

async function waitFor(pred, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `count` message emits back to back, none awaited; resolves with [client_ids, acks]. */
function burst(chat, count, label) {
  const ids = Array.from({ length: count }, () => randomUUID());
  const acks = Promise.allSettled(ids.map((id, i) => chat.emit("message", { client_id: id, text: `${label} ${i}` })));
  return [ids, acks];
}

/** Every emit acked ok, with its own client_id; seqs contiguous in send order; each stored once. */
async function assertAllStoredInOrder(chat, ids, settled) {
  const failed = settled.filter((s) => s.status !== "fulfilled" || s.value?.ok !== true);
  assert.equal(
    failed.length,
    0,
    `${failed.length} of ${ids.length} emits not acked ok, e.g. ${failed
      .slice(0, 3)
      .map((s) => (s.status === "fulfilled" ? JSON.stringify(s.value) : String(s.reason)))
      .join("; ")}`,
  );
  const acks = settled.map((s) => s.value.message);
  assert.deepEqual(acks.map((m) => m.client_id), ids, "each ack is for its own emit");
  const seqs = acks.map((m) => m.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + i), `seqs contiguous in send order: ${seqs.join(",")}`);

  const synced = await chat.emit("sync", { after_seq: 0, limit: 500 });
  assert.equal(synced.ok, true, `sync: ${JSON.stringify(synced).slice(0, 300)}`);
  const mine = synced.messages.filter((m) => m.sender.role === "visitor");
  assert.deepEqual(mine.map((m) => m.client_id), ids, "stored once each, in send order");
  assert.deepEqual(mine.map((m) => m.seq), seqs, "stored with the acked seqs");
}

for (const [label, transports, batched] of TRANSPORTS) {
  test(`200 emits back to back over ${label}: all acked, stored once, in order`, { timeout: 90_000 }, async (t) => {
    const chat = openChat({ transports });
    t.after(() => chat.close());
    chat.socket.connect();
    await once(chat.socket, "connect");
    // Emitted as the namespace connects: over long-polling unless the upgrade is already done.
    // The handoff keeps the bot quiet, so the visitor's seqs are contiguous.
    const carrier = chat.socket.io.engine.transport.name;
    const handoff = chat.emit("handoff", {});
    const [ids, acks] = burst(chat, 200, "burst");
    assert.equal((await handoff).ok, true);
    await assertAllStoredInOrder(chat, ids, await acks);
    t.diagnostic(`emitted over ${carrier}; largest polling batch ${chat.largestPollingBatch()} packets`);
    if (batched) assert.ok(chat.largestPollingBatch() > 16, `batches: ${JSON.stringify(chat.batches)}`);
  });

  test(`100 emits made while disconnected over ${label}: flushed on reconnect, all stored once, in order`, { timeout: 90_000 }, async (t) => {
    const chat = openChat({ transports, reconnection: true });
    t.after(() => chat.close());
    const first = await chat.connect();
    assert.equal((await chat.emit("handoff", {})).ok, true);

    // The transport drops; the client reconnects by itself, with the token of the first session.
    const disconnected = once(chat.socket, "disconnect");
    chat.socket.io.engine.close();
    await disconnected;
    assert.equal(chat.socket.connected, false);
    const [ids, acks] = burst(chat, 100, "offline");
    const settled = await acks;
    await waitFor(() => chat.sessions.length >= 2, "the 'session' event of the reconnection");
    assert.equal(chat.sessions.length, 2, "reconnected once");
    const resumed = chat.sessions[1];
    assert.equal(resumed.conversation_id, first.conversation_id, "the same conversation");
    assert.equal(resumed.visitor_id, first.visitor_id, "the same visitor");
    await assertAllStoredInOrder(chat, ids, settled);
    t.diagnostic(`largest polling batch ${chat.largestPollingBatch()} packets`);
    if (batched) assert.ok(chat.largestPollingBatch() > 16, `batches: ${JSON.stringify(chat.batches)}`);
  });
}
