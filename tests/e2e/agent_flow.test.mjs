// Acceptance test of the Agents issue with the official socket.io-client (see PROTOCOL.md):
// one visitor on /chat and two agents on /agent go through bot → queue → accept (and a lost
// accept race) → chat both ways → transfer → release to the bot → queue again → resolve → reopen.
//
//   SOCKETSVC_URL=http://127.0.0.1:8080 SOCKETSVC_SECRET=... node --test tests/e2e/agent_flow.test.mjs
//
// Agent JWTs (HS256, claims sub/name/role/exp) are minted here with the service's secret. The story
// runs twice: with the visitor on the client's default transports, and on long-polling only.
import assert from "node:assert/strict";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
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
const SECRET = process.env.SOCKETSVC_SECRET ?? "";
if (!SECRET) {
  throw new Error("SOCKETSVC_SECRET is not set: the agent tokens are signed with the service's secret");
}

const WAIT_MS = 10_000;
const ACK_MS = 10_000;

const VISITOR_TRANSPORTS = [
  ["default transports (polling, then upgrade)", undefined],
  ["polling only", ["polling"]],
];

const b64url = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** An HS256 JWT signed with SOCKETSVC_SECRET. */
function signJwt(claims, secret = SECRET) {
  const head = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url(claims)}`;
  const signature = createHmac("sha256", secret).update(head).digest("base64url");
  return `${head}.${signature}`;
}

function agentToken(id, name, ttlSeconds = 3600) {
  return signJwt({ sub: id, name, role: "agent", exp: Math.floor(Date.now() / 1000) + ttlSeconds });
}

/**
 * A socket on `namespace` that records every event it receives, in order, from before it connects.
 * `waitFor(pred, what, {since})` resolves with the first recorded event at index >= since (past or
 * future) matching `pred`; `mark()` is the index of the next event to arrive.
 */
function openSocket(namespace, { transports, auth, ready } = {}) {
  // An agent of our own, so that destroy() can drop the long-poll GET the server holds open after a
  // polling client has said goodbye.
  const agent = new http.Agent({ keepAlive: false });
  const options = { forceNew: true, reconnection: false, autoConnect: false, timeout: WAIT_MS, agent };
  if (transports) options.transports = transports;
  if (auth !== undefined) options.auth = auth;
  const socket = io(`${BASE_URL}${namespace}`, options);
  const events = [];
  const waiters = new Set();
  const record = (name, args) => {
    const index = events.length;
    const ev = { name, data: args[0], index };
    events.push(ev);
    for (const w of [...waiters]) {
      if (index >= w.since && w.pred(ev)) {
        waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve(ev.data);
      }
    }
  };
  socket.onAny((name, ...args) => record(name, args));
  socket.on("connect_error", (err) => record("connect_error", [err]));
  socket.on("disconnect", (reason) => record("disconnect", [reason]));

  const client = {
    socket,
    events,
    mark: () => events.length,
    of: (name, since = 0) => events.filter((e) => e.name === name && e.index >= since).map((e) => e.data),
    waitFor(pred, what, { since = 0, ms = WAIT_MS } = {}) {
      const found = events.find((e) => e.index >= since && pred(e));
      if (found) return Promise.resolve(found.data);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve, since };
        w.timer = setTimeout(() => {
          waiters.delete(w);
          const seen = events.map((e) => `#${e.index} ${e.name} ${JSON.stringify(e.data)}`).join("\n  ");
          reject(
            new Error(
              `${namespace}: timed out after ${ms} ms waiting for ${what} (events from #${since}); received:\n  ${seen || "(nothing)"}`,
            ),
          );
        }, ms);
        waiters.add(w);
      });
    },
    /** The first `name` event (from `since`) whose payload matches `pred`. */
    waitEvent(name, pred, what, opts) {
      return client.waitFor((e) => e.name === name && pred(e.data), what, opts);
    },
    async connect() {
      socket.connect();
      const first = await client.waitFor(
        (e) => e.name === ready || e.name === "connect_error",
        `the '${ready}' event after connecting`,
      );
      if (first instanceof Error) {
        throw new Error(`connect_error: ${first.message} (data: ${JSON.stringify(first.data ?? null)})`);
      }
      return first;
    },
    /** Connect, expecting a refusal: resolves with the connect_error. */
    async refused() {
      socket.connect();
      const first = await client.waitFor(
        (e) => e.name === "connect_error" || e.name === ready || e.name === "connect",
        "a connect_error",
      );
      assert.ok(first instanceof Error, `expected a connect_error, got ${JSON.stringify(first)}`);
      return first;
    },
    emit(event, payload) {
      return socket.timeout(ACK_MS).emitWithAck(event, payload);
    },
    close() {
      socket.close();
    },
    destroy() {
      socket.close();
      agent.destroy();
    },
  };
  return client;
}

function assertMessageShape(msg, conversationId) {
  assert.equal(typeof msg, "object");
  assert.equal(typeof msg.id, "string", "message.id is a string");
  assert.equal(msg.conversation_id, conversationId, "message.conversation_id");
  assert.ok(Number.isInteger(msg.seq) && msg.seq >= 1, `message.seq is a positive integer: ${msg.seq}`);
  assert.ok(["visitor", "bot", "agent", "system"].includes(msg.sender?.role), `sender.role ${msg.sender?.role}`);
  assert.equal(typeof msg.sender.id, "string", "sender.id is a string");
  assert.equal(typeof msg.sender.name, "string", "sender.name is a string");
  assert.equal(typeof msg.text, "string", "message.text is a string");
  assert.ok(!Number.isNaN(Date.parse(msg.created_at)), `created_at parses: ${msg.created_at}`);
}

const okAck = (ack, what) => assert.equal(ack?.ok, true, `${what}: ack ${JSON.stringify(ack)}`);
const seqsOf = (msgs) => msgs.map((m) => m.seq);

async function agentFlow(t, visitorTransports) {
  const suffix = `${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
  const A = { id: `agent-a-${suffix}`, name: `Alice ${suffix}` };
  const B = { id: `agent-b-${suffix}`, name: `Bob ${suffix}` };

  const sockets = [];
  const open = (namespace, opts) => {
    const s = openSocket(namespace, opts);
    sockets.push(s);
    return s;
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

  let visitor;
  let session;
  let cid;
  let alice;
  let bob;
  let lastSeq; // the highest seq known so far
  let mark; // visitor event index before the step's action

  await step("two agents connect and get their queue and assigned snapshots", async () => {
    alice = open("/agent", { auth: { token: agentToken(A.id, A.name) }, ready: "assigned" });
    bob = open("/agent", { auth: { token: agentToken(B.id, B.name) }, ready: "assigned" });
    for (const a of [alice, bob]) {
      const assigned = await a.connect();
      assert.deepEqual(assigned, { conversations: [] }, "a new agent has no assigned conversations");
      const [queue] = a.of("queue");
      assert.ok(queue && Array.isArray(queue.conversations), `queue snapshot: ${JSON.stringify(queue)}`);
    }
  });

  await step("a visitor token is refused on /agent with 'unauthorized'", async () => {
    const probe = open("/chat", { transports: visitorTransports, ready: "session" });
    const probeSession = await probe.connect();
    probe.close();
    const intruder = open("/agent", { auth: { token: probeSession.visitor_token }, ready: "assigned" });
    const err = await intruder.refused();
    assert.equal(err.data?.code, "unauthorized", `connect_error data: ${JSON.stringify(err.data ?? null)}`);
    assert.equal(typeof err.data.message, "string", "connect_error data.message is a string");
  });

  await step("the visitor talks to the bot: greeting seq 1, a question answered", async () => {
    visitor = open("/chat", { transports: visitorTransports, ready: "session" });
    session = await visitor.connect();
    cid = session.conversation_id;
    assert.equal(typeof cid, "string");
    assert.equal(session.state, "bot");
    const greeting = await visitor.waitEvent("message", (m) => m.seq === 1, "the greeting (seq 1)");
    assertMessageShape(greeting, cid);
    assert.equal(greeting.sender.role, "bot");

    const ack = await visitor.emit("message", { client_id: randomUUID(), text: "what is socketsvc" });
    okAck(ack, "visitor message");
    assert.equal(ack.message.seq, 2);
    const answer = await visitor.waitEvent(
      "message",
      (m) => m.sender.role === "bot" && m.seq > 2,
      "the bot's answer",
    );
    assertMessageShape(answer, cid);
    assert.equal(answer.seq, 3);
    assert.match(answer.text, /socketsvc/);
    lastSeq = answer.seq;
    if (visitorTransports) {
      assert.equal(visitor.socket.io.engine.transport.name, visitorTransports[0], "the forced transport is used");
    }
  });

  await step("handoff: the visitor is queued with a position, both agents see it queued", async () => {
    mark = visitor.mark();
    const ack = await visitor.emit("handoff", { reason: "I want a human" });
    assert.deepEqual(ack, { ok: true, state: "queued" }, `handoff ack: ${JSON.stringify(ack)}`);
    const state = await visitor.waitEvent("state", (s) => s.state === "queued", "state queued", { since: mark });
    assert.equal(state.conversation_id, cid);
    assert.ok(
      Number.isInteger(state.queue_position) && state.queue_position >= 1,
      `queue_position: ${JSON.stringify(state)}`,
    );
    const system = await visitor.waitEvent("message", (m) => m.sender.role === "system", "a system message", {
      since: mark,
    });
    assertMessageShape(system, cid);
    assert.equal(system.seq, lastSeq + 1);
    if (state.queue_position === 1) assert.match(system.text, /next in line/);
    lastSeq = system.seq;
    for (const [label, a] of [["A", alice], ["B", bob]]) {
      const summary = await a.waitEvent(
        "conversation",
        (c) => c.conversation_id === cid && c.state === "queued",
        `agent ${label}: a queued 'conversation' summary`,
      );
      assert.equal(summary.visitor?.id, session.visitor_id, "summary.visitor.id");
      assert.equal(typeof summary.visitor.name, "string", "summary.visitor.name");
      assert.ok(!Number.isNaN(Date.parse(summary.waiting_since)), `waiting_since: ${summary.waiting_since}`);
    }
  });

  await step("agent A's accept wins; agent B's accept gets 'conflict'", async () => {
    mark = visitor.mark();
    const ack = await alice.emit("accept", { conversation_id: cid });
    okAck(ack, "A accept");
    assert.equal(ack.conversation.conversation_id, cid);
    assert.equal(ack.conversation.state, "assigned");
    assert.deepEqual(ack.conversation.agent, { id: A.id, name: A.name });
    assert.ok(Array.isArray(ack.messages), "accept returns the history");
    const seqs = seqsOf(ack.messages);
    assert.deepEqual(seqs, seqs.map((_, i) => i + 1), `history seqs contiguous from 1: ${seqs.join(",")}`);
    for (const m of ack.messages) assertMessageShape(m, cid);
    assert.ok(seqs.length >= lastSeq, `history holds everything so far (${seqs.length} >= ${lastSeq})`);
    lastSeq = seqs[seqs.length - 1];

    const lost = await bob.emit("accept", { conversation_id: cid });
    assert.equal(lost?.ok, false, `B accept: ${JSON.stringify(lost)}`);
    assert.equal(lost.error?.code, "conflict", `B accept: ${JSON.stringify(lost)}`);
    assert.equal(typeof lost.error.message, "string");
  });

  await step("the visitor sees agent A assigned and 'A joined the chat.'", async () => {
    const state = await visitor.waitEvent("state", (s) => s.state === "assigned", "state assigned", { since: mark });
    assert.equal(state.conversation_id, cid);
    assert.deepEqual(state.agent, { id: A.id, name: A.name });
    const joined = await visitor.waitEvent(
      "message",
      (m) => m.sender.role === "system" && m.text === `${A.name} joined the chat.`,
      `the system message '${A.name} joined the chat.'`,
      { since: mark },
    );
    assert.equal(joined.seq, lastSeq, "the join message is the last one of the accept history");
  });

  await step("messages both ways", async () => {
    const aMark = alice.mark();
    const vClient = randomUUID();
    const sent = await visitor.emit("message", { client_id: vClient, text: "my order is late" });
    okAck(sent, "visitor message");
    assert.equal(sent.message.seq, lastSeq + 1, "the visitor's seq continues");
    assert.equal(sent.message.sender.role, "visitor");
    const atA = await alice.waitEvent("message", (m) => m.client_id === vClient, "A receives the visitor's message", {
      since: aMark,
    });
    assert.deepEqual(atA, sent.message, "A receives the acked message");

    mark = visitor.mark();
    const aClient = randomUUID();
    const reply = await alice.emit("message", { conversation_id: cid, client_id: aClient, text: "Let me check." });
    okAck(reply, "A message");
    assert.equal(reply.message.seq, sent.message.seq + 1, "A's seq continues");
    assert.deepEqual(reply.message.sender, { role: "agent", id: A.id, name: A.name });
    const atVisitor = await visitor.waitEvent("message", (m) => m.client_id === aClient, "the visitor receives A's message", {
      since: mark,
    });
    assert.deepEqual(atVisitor, reply.message);
    lastSeq = reply.message.seq;
    assert.equal(
      bob.of("message").filter((m) => m.conversation_id === cid).length,
      0,
      "B, who lost the race, receives none of the conversation's messages",
    );
  });

  await step("typing both ways", async () => {
    mark = visitor.mark();
    assert.deepEqual(await alice.emit("typing", { conversation_id: cid, typing: true }), { ok: true });
    const atVisitor = await visitor.waitEvent(
      "typing",
      (e) => e.sender?.role === "agent" && e.typing === true,
      "the visitor receives A typing",
      { since: mark },
    );
    assert.equal(atVisitor.conversation_id, cid);
    assert.equal(atVisitor.sender.id, A.id);

    const aMark = alice.mark();
    assert.deepEqual(await visitor.emit("typing", { typing: true }), { ok: true });
    const atA = await alice.waitEvent(
      "typing",
      (e) => e.sender?.role === "visitor" && e.typing === true,
      "A receives the visitor typing",
      { since: aMark },
    );
    assert.equal(atA.conversation_id, cid);
    assert.equal(atA.sender.id, session.visitor_id);
  });

  await step("read receipts both ways", async () => {
    const aMark = alice.mark();
    assert.deepEqual(await visitor.emit("read", { seq: lastSeq }), { ok: true });
    const atA = await alice.waitEvent("read", (r) => r.reader?.role === "visitor", "A receives the visitor's read", {
      since: aMark,
    });
    assert.deepEqual(atA, { conversation_id: cid, reader: { role: "visitor", id: session.visitor_id }, seq: lastSeq });

    mark = visitor.mark();
    assert.deepEqual(await alice.emit("read", { conversation_id: cid, seq: lastSeq - 1 }), { ok: true });
    const atVisitor = await visitor.waitEvent("read", (r) => r.reader?.role === "agent", "the visitor receives A's read", {
      since: mark,
    });
    assert.deepEqual(atVisitor, { conversation_id: cid, reader: { role: "agent", id: A.id }, seq: lastSeq - 1 });
  });

  await step("A transfers to B: B gets the summary, the visitor sees B, A is forbidden", async () => {
    mark = visitor.mark();
    const bMark = bob.mark();
    const ack = await alice.emit("transfer", { conversation_id: cid, agent_id: B.id });
    okAck(ack, "transfer");
    assert.equal(ack.conversation.conversation_id, cid);
    assert.equal(ack.conversation.state, "assigned");
    assert.deepEqual(ack.conversation.agent, { id: B.id, name: B.name });
    const summary = await bob.waitEvent(
      "conversation",
      (c) => c.conversation_id === cid && c.agent?.id === B.id,
      "B receives the transferred conversation",
      { since: bMark },
    );
    assert.equal(summary.state, "assigned");
    assert.deepEqual(summary.agent, { id: B.id, name: B.name });
    const state = await visitor.waitEvent("state", (s) => s.agent?.id === B.id, "state with agent B", { since: mark });
    assert.equal(state.state, "assigned");
    assert.deepEqual(state.agent, { id: B.id, name: B.name });

    const denied = await alice.emit("message", { conversation_id: cid, client_id: randomUUID(), text: "still here?" });
    assert.equal(denied?.ok, false, `A message after transfer: ${JSON.stringify(denied)}`);
    assert.equal(denied.error?.code, "forbidden", `A message after transfer: ${JSON.stringify(denied)}`);

    const sent = await visitor.emit("message", { client_id: randomUUID(), text: "thanks Bob" });
    okAck(sent, "visitor message");
    const atB = await bob.waitEvent("message", (m) => m.seq === sent.message.seq, "B receives the visitor's message", {
      since: bMark,
    });
    assert.deepEqual(atB, sent.message);
    lastSeq = sent.message.seq;
  });

  await step("B releases to the bot: state bot, the bot answers again", async () => {
    mark = visitor.mark();
    const ack = await bob.emit("release", { conversation_id: cid, to: "bot" });
    okAck(ack, "release");
    assert.equal(ack.conversation.conversation_id, cid);
    assert.equal(ack.conversation.state, "bot");
    const state = await visitor.waitEvent("state", (s) => s.state === "bot", "state bot", { since: mark });
    assert.equal(state.conversation_id, cid);
    assert.equal(state.agent, undefined, "no agent in state bot");

    mark = visitor.mark();
    const sent = await visitor.emit("message", { client_id: randomUUID(), text: "how do I run the tests" });
    okAck(sent, "visitor message");
    assert.ok(sent.message.seq > lastSeq, `seq continues: ${sent.message.seq} > ${lastSeq}`);
    const answer = await visitor.waitEvent(
      "message",
      (m) => m.sender.role === "bot" && m.seq > sent.message.seq,
      "the bot's answer after the release",
      { since: mark },
    );
    assert.equal(answer.seq, sent.message.seq + 1);
    assert.match(answer.text, /make test/);
    lastSeq = answer.seq;
  });

  await step("handoff again, B accepts and resolves: the visitor sees 'resolved'", async () => {
    mark = visitor.mark();
    const bMark = bob.mark();
    assert.deepEqual(await visitor.emit("handoff", {}), { ok: true, state: "queued" });
    await visitor.waitEvent("state", (s) => s.state === "queued", "state queued again", { since: mark });
    await bob.waitEvent(
      "conversation",
      (c) => c.conversation_id === cid && c.state === "queued",
      "B sees the conversation queued again",
      { since: bMark },
    );
    const accepted = await bob.emit("accept", { conversation_id: cid });
    okAck(accepted, "B accept");
    assert.deepEqual(accepted.conversation.agent, { id: B.id, name: B.name });
    const seqs = seqsOf(accepted.messages);
    assert.deepEqual(seqs, seqs.map((_, i) => i + 1), `history seqs contiguous from 1: ${seqs.join(",")}`);
    await visitor.waitEvent("state", (s) => s.state === "assigned" && s.agent?.id === B.id, "state assigned to B", {
      since: mark,
    });

    const resolved = await bob.emit("resolve", { conversation_id: cid });
    okAck(resolved, "resolve");
    assert.equal(resolved.conversation.conversation_id, cid);
    assert.equal(resolved.conversation.state, "resolved");
    const state = await visitor.waitEvent("state", (s) => s.state === "resolved", "state resolved", { since: mark });
    assert.equal(state.conversation_id, cid);
  });

  await step("the visitor writes again: same conversation, seq continues, back to the bot", async () => {
    const synced = await visitor.emit("sync", { after_seq: 0 });
    okAck(synced, "sync");
    assert.equal(synced.state, "resolved");
    const seqs = seqsOf(synced.messages);
    assert.deepEqual(seqs, seqs.map((_, i) => i + 1), `all seqs contiguous from 1: ${seqs.join(",")}`);
    assert.equal(synced.last_seq, seqs[seqs.length - 1]);

    mark = visitor.mark();
    const sent = await visitor.emit("message", { client_id: randomUUID(), text: "one more question: what is socketsvc" });
    okAck(sent, "visitor message after resolve");
    assert.equal(sent.message.seq, synced.last_seq + 1, "seq = previous last_seq + 1");
    assert.equal(sent.message.conversation_id, cid, "the same conversation is reopened");
    const state = await visitor.waitEvent("state", (s) => s.state === "bot", "state back to bot", { since: mark });
    assert.equal(state.conversation_id, cid);
    const answer = await visitor.waitEvent(
      "message",
      (m) => m.sender.role === "bot" && m.seq > sent.message.seq,
      "the bot's answer after reopening",
      { since: mark },
    );
    assert.equal(answer.conversation_id, cid);
    assert.match(answer.text, /socketsvc/);
  });
}

test("/agent flow with socket.io-client", { timeout: 150_000 }, async (t) => {
  for (const [label, transports] of VISITOR_TRANSPORTS) {
    await t.test(`visitor over ${label}`, { timeout: 70_000 }, (st) => agentFlow(st, transports));
  }
});
