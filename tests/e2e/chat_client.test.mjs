// End-to-end check of the /chat namespace with the official socket.io-client (see PROTOCOL.md).
//
//   SOCKETSVC_URL=http://127.0.0.1:8080 node --test tests/e2e/chat_client.test.mjs
//
// Runs the same visitor story over the client's default transports (polling, then upgrade to
// WebSocket), over WebSocket only and over long-polling only.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { test } from "node:test";

import { io } from "socket.io-client";

const BASE_URL = (process.env.SOCKETSVC_URL ?? "").replace(/\/+$/, "");
if (!BASE_URL) {
  throw new Error(
    "SOCKETSVC_URL is not set: point it at a running socketsvc, e.g. SOCKETSVC_URL=http://127.0.0.1:8080",
  );
}

const WAIT_MS = 10_000;
const ACK_MS = 10_000;

const TRANSPORTS = [
  ["default transports (polling, then upgrade)", undefined],
  ["websocket only", ["websocket"]],
  ["polling only", ["polling"]],
];

/**
 * A /chat socket that records every event it receives, in order, from before it connects.
 * `waitFor(pred)` resolves with the first recorded event (past or future) matching `pred`.
 */
function openChat({ transports, token } = {}) {
  // An agent of our own, so that close() can drop the long-poll GET the server holds open after a
  // polling client has said goodbye (python-engineio answers it only at ping_interval+ping_timeout).
  const agent = new http.Agent({ keepAlive: false });
  const options = { forceNew: true, reconnection: false, autoConnect: false, timeout: WAIT_MS, agent };
  if (transports) options.transports = transports;
  if (token !== undefined) options.auth = { visitor_token: token };
  const socket = io(`${BASE_URL}/chat`, options);
  const events = [];
  const waiters = new Set();
  const record = (name, args) => {
    const ev = { name, data: args[0] };
    events.push(ev);
    for (const w of [...waiters]) {
      if (w.pred(ev)) {
        waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve(ev.data);
      }
    }
  };
  socket.onAny((name, ...args) => record(name, args));
  socket.on("connect_error", (err) => record("connect_error", [err]));
  socket.on("disconnect", (reason) => record("disconnect", [reason]));

  const chat = {
    socket,
    events,
    /** All `message` payloads received so far, in arrival order. */
    messages: () => events.filter((e) => e.name === "message").map((e) => e.data),
    waitFor(pred, what, ms = WAIT_MS) {
      const found = events.find(pred);
      if (found) return Promise.resolve(found.data);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        w.timer = setTimeout(() => {
          waiters.delete(w);
          const seen = events.map((e) => `${e.name} ${JSON.stringify(e.data)}`).join("\n  ");
          reject(new Error(`timed out after ${ms} ms waiting for ${what}; received:\n  ${seen || "(nothing)"}`));
        }, ms);
        waiters.add(w);
      });
    },
    waitForEvent(name, what = `a '${name}' event`, ms) {
      return chat.waitFor((e) => e.name === name, what, ms);
    },
    waitForMessage(pred, what, ms) {
      return chat.waitFor((e) => e.name === "message" && pred(e.data), what, ms);
    },
    async connect() {
      socket.connect();
      const first = await chat.waitFor(
        (e) => e.name === "session" || e.name === "connect_error",
        "the 'session' event after connecting",
      );
      if (first instanceof Error) {
        throw new Error(`connect_error: ${first.message} (data: ${JSON.stringify(first.data ?? null)})`);
      }
      return first;
    },
    emit(event, payload) {
      return socket.timeout(ACK_MS).emitWithAck(event, payload);
    },
    /** Disconnect cleanly (the server sees the visitor leave). */
    close() {
      socket.close();
    },
    /** Then drop whatever HTTP connection is left, so the test process can exit. */
    destroy() {
      socket.close();
      agent.destroy();
    },
  };
  return chat;
}

function assertMessageShape(msg, { conversationId }) {
  assert.equal(typeof msg, "object");
  assert.equal(typeof msg.id, "string", "message.id is a string");
  assert.ok(msg.id.length > 0, "message.id is not empty");
  assert.equal(msg.conversation_id, conversationId, "message.conversation_id");
  assert.ok(Number.isInteger(msg.seq) && msg.seq >= 1, `message.seq is a positive integer: ${msg.seq}`);
  assert.ok(msg.client_id === null || typeof msg.client_id === "string", "message.client_id is string|null");
  assert.equal(typeof msg.sender, "object");
  assert.ok(["visitor", "bot", "agent", "system"].includes(msg.sender.role), `sender.role ${msg.sender.role}`);
  assert.equal(typeof msg.sender.id, "string", "sender.id is a string");
  assert.equal(typeof msg.sender.name, "string", "sender.name is a string");
  assert.equal(typeof msg.text, "string", "message.text is a string");
  assert.equal(typeof msg.created_at, "string", "message.created_at is a string");
  assert.ok(!Number.isNaN(Date.parse(msg.created_at)), `created_at parses: ${msg.created_at}`);
}

function assertSessionShape(session) {
  assert.equal(typeof session, "object");
  assert.equal(typeof session.visitor_token, "string", "session.visitor_token is a string");
  assert.ok(session.visitor_token.length > 0, "session.visitor_token is not empty");
  assert.equal(typeof session.visitor_id, "string", "session.visitor_id is a string");
  assert.equal(typeof session.conversation_id, "string", "session.conversation_id is a string");
  assert.ok(Number.isInteger(session.last_seq), `session.last_seq is an integer: ${session.last_seq}`);
}

const seqsOf = (msgs) => msgs.map((m) => m.seq);

for (const [label, transports] of TRANSPORTS) {
  test(`/chat visitor story over ${label}`, { timeout: 90_000 }, async (t) => {
    const sockets = [];
    const open = (opts) => {
      const chat = openChat({ transports, ...opts });
      sockets.push(chat);
      return chat;
    };
    t.after(async () => {
      for (const s of sockets) s.close();
      await sleep(300); // let the disconnect and close packets reach the server
      for (const s of sockets) s.destroy();
    });

    // Steps share state; once one fails the rest are skipped rather than failing confusingly.
    let broken = null;
    const step = (name, fn) =>
      t.test(name, async (st) => {
        if (broken) {
          st.skip(`earlier step failed: ${broken}`);
          return;
        }
        try {
          await fn(st);
        } catch (err) {
          broken = name;
          throw err;
        }
      });

    let first; // the first visitor socket
    let session;
    let ack1;
    let clientId1;
    let missed; // messages stored while the first socket was away
    let lastSeq;
    const question = "what is socketsvc";

    await step("a new visitor gets a session and the bot's greeting, unasked", async () => {
      first = open();
      session = await first.connect();
      assertSessionShape(session);
      assert.equal(session.state, "bot", "a new conversation starts in state 'bot'");
      const greeting = await first.waitForMessage((m) => m.seq === 1, "the greeting (seq 1)");
      assertMessageShape(greeting, { conversationId: session.conversation_id });
      assert.equal(greeting.sender.role, "bot", "the greeting comes from the bot");
      assert.ok(greeting.text.trim().length > 0, "the greeting has text");
      assert.ok([0, 1].includes(session.last_seq), `session.last_seq of a new conversation: ${session.last_seq}`);

      const engine = first.socket.io.engine;
      if (transports) {
        assert.equal(engine.transport.name, transports[0], "the forced transport is used");
      } else {
        // Client defaults: long-polling first, then the upgrade to WebSocket.
        const deadline = Date.now() + WAIT_MS;
        while (engine.transport.name !== "websocket" && Date.now() < deadline) await sleep(50);
        assert.equal(engine.transport.name, "websocket", "the connection upgraded from polling to websocket");
      }
    });

    await step("a message is acked with seq 2 and the bot answers with seq 3", async () => {
      clientId1 = randomUUID();
      ack1 = await first.emit("message", { client_id: clientId1, text: question });
      assert.equal(ack1.ok, true, `ack: ${JSON.stringify(ack1)}`);
      assertMessageShape(ack1.message, { conversationId: session.conversation_id });
      assert.equal(ack1.message.seq, 2);
      assert.equal(ack1.message.client_id, clientId1);
      assert.equal(ack1.message.sender.role, "visitor");
      assert.equal(ack1.message.sender.id, session.visitor_id, "the visitor's message is sent as the visitor");
      assert.equal(ack1.message.text, question);

      const echoed = await first.waitForMessage((m) => m.seq === 2, "the visitor's own message as a 'message' event");
      assert.deepEqual(echoed, ack1.message, "the broadcast equals the acked message");
      const reply = await first.waitForMessage((m) => m.seq === 3, "the bot's reply (seq 3)");
      assertMessageShape(reply, { conversationId: session.conversation_id });
      assert.equal(reply.sender.role, "bot");
      assert.equal(reply.client_id, null, "the bot's reply has no client_id");
    });

    await step("re-sending the same client_id returns the same ack and stores nothing", async () => {
      const ack2 = await first.emit("message", { client_id: clientId1, text: question });
      assert.deepEqual(ack2, ack1, "a retry gets the first ack again");
      await sleep(500);
      const msgs = first.messages();
      assert.equal(msgs.filter((m) => m.seq === 2).length, 1, "exactly one 'message' event for seq 2");
      assert.equal(msgs.filter((m) => m.client_id === clientId1).length, 1, "exactly one for that client_id");
      assert.deepEqual(seqsOf(msgs), [1, 2, 3], "nothing new was stored or broadcast by the retry");
    });

    await step("a second socket with the token resumes the conversation and sends two messages", async () => {
      first.close();
      const second = open({ token: session.visitor_token });
      const s2 = await second.connect();
      assertSessionShape(s2);
      assert.equal(s2.visitor_id, session.visitor_id, "same visitor");
      assert.equal(s2.conversation_id, session.conversation_id, "same conversation");
      assert.equal(s2.last_seq, 3, "last_seq counts the greeting, the question and the answer");
      assert.equal(s2.state, "bot");
      await sleep(300);
      assert.deepEqual(second.messages(), [], "a resumed conversation gets no new greeting");

      const a4 = await second.emit("message", { client_id: randomUUID(), text: "how do I run the tests" });
      assert.equal(a4.ok, true, `ack: ${JSON.stringify(a4)}`);
      assert.equal(a4.message.seq, 4);
      const a5 = await second.emit("message", { client_id: randomUUID(), text: "which transports are supported" });
      assert.equal(a5.ok, true, `ack: ${JSON.stringify(a5)}`);
      assert.ok(a5.message.seq >= 5, `second message seq ${a5.message.seq} follows 4`);

      // The bot answers each of the two messages.
      const botAfter = (seq) => (m) => m.sender.role === "bot" && m.seq > seq;
      await second.waitForMessage(botAfter(4), "the bot's answer to seq 4");
      await second.waitForMessage(botAfter(a5.message.seq), `the bot's answer to seq ${a5.message.seq}`);
      await sleep(300); // let anything else in flight arrive

      const got = second.messages();
      const seqs = seqsOf(got);
      for (let i = 1; i < seqs.length; i++) {
        assert.ok(seqs[i] > seqs[i - 1], `seq numbers arrive strictly increasing: ${seqs.join(",")}`);
      }
      assert.equal(seqs[0], 4, `the first broadcast after resuming is seq 4: ${seqs.join(",")}`);
      assert.deepEqual(seqs, seqs.map((_, i) => 4 + i), `seqs contiguous from 4: ${seqs.join(",")}`);
      assert.ok(got.filter((m) => m.sender.role === "bot").length >= 2, "two bot answers");
      for (const m of got) assertMessageShape(m, { conversationId: session.conversation_id });
      assert.deepEqual(got.find((m) => m.seq === 4), a4.message, "broadcast of seq 4 equals its ack");
      missed = got;
      lastSeq = seqs[seqs.length - 1];
      second.close();
    });

    await step("the first visitor reconnects and sync returns exactly what it missed", async () => {
      first = open({ token: session.visitor_token });
      const s3 = await first.connect();
      assert.equal(s3.visitor_id, session.visitor_id);
      assert.equal(s3.conversation_id, session.conversation_id);
      assert.equal(s3.last_seq, lastSeq, "session.last_seq is the highest stored seq");
      const res = await first.emit("sync", { after_seq: 3 });
      assert.equal(res.ok, true, `ack: ${JSON.stringify(res)}`);
      assert.ok(Array.isArray(res.messages), "sync returns a messages array");
      const seqs = seqsOf(res.messages);
      assert.deepEqual(seqs, seqs.map((_, i) => 4 + i), `contiguous from 4, no duplicates: ${seqs.join(",")}`);
      assert.equal(res.last_seq, lastSeq, "sync's last_seq is the highest seq");
      assert.equal(seqs[seqs.length - 1], res.last_seq, "the last synced message is last_seq");
      assert.deepEqual(res.messages, missed, "sync returns the same messages that were broadcast");
      assert.equal(res.state, "bot");
      await sleep(200);
      assert.deepEqual(first.messages(), [], "no greeting on resuming");
    });

    await step("invalid payloads are refused with 'invalid' and 'too_large'", async () => {
      const missing = await first.emit("message", { client_id: randomUUID() });
      assert.equal(missing.ok, false, `ack: ${JSON.stringify(missing)}`);
      assert.equal(missing.error?.code, "invalid", `ack: ${JSON.stringify(missing)}`);
      assert.equal(typeof missing.error.message, "string");
      assert.ok(missing.error.fields && "text" in missing.error.fields, `fields names 'text': ${JSON.stringify(missing)}`);

      const huge = await first.emit("message", { client_id: randomUUID(), text: "x".repeat(4001) });
      assert.equal(huge.ok, false, `ack: ${JSON.stringify(huge).slice(0, 300)}`);
      assert.equal(huge.error?.code, "too_large", `ack: ${JSON.stringify(huge).slice(0, 300)}`);

      const after = await first.emit("sync", { after_seq: lastSeq });
      assert.equal(after.ok, true);
      assert.deepEqual(after.messages, [], "refused messages are not stored");
      assert.equal(after.last_seq, lastSeq);
    });
  });
}
