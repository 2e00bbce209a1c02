// The demo, end to end in headless Chromium: a visitor on the landing page's widget (/) and an
// agent on the console (/agent.html), in two browser contexts.
//
//   SOCKETSVC_URL=http://127.0.0.1:8080 SOCKETSVC_AGENT_TOKEN=$(socketsvc token agent --id ada --name Ada) \
//     node --test tests/e2e/demo_flow.test.mjs
//
// The agent signs in with SOCKETSVC_AGENT_TOKEN, or with the console's dev-mode button when
// SOCKETSVC_DEV_MODE=1 (the service runs with DEV_MODE=true); with both, the first run pastes the
// token and the second uses the button. Story: bot greeting → a question and the bot's answer →
// "Talk to a human" → queued, with an alert on the console → Accept → the visitor sees the agent's
// name → chat both ways, typing indicators and read marks seen on both screens → markup shown as
// text → Resolve → the visitor sees it resolved. Run twice: default transports, and
// ?transport=polling. Screenshots: artifacts/screenshots/demo-<run>-<step>.png.
import assert from "node:assert/strict";
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, test } from "node:test";

import { io } from "socket.io-client";

import path from "node:path";

import { BASE_URL, SHOTS, XSS, jwtClaims, launchBrowser, publishShot, shooter, watch } from "./demo_helpers.mjs";

const AGENT_TOKEN = process.env.SOCKETSVC_AGENT_TOKEN ?? "";
const DEV_MODE = process.env.SOCKETSVC_DEV_MODE === "1";
if (!AGENT_TOKEN && !DEV_MODE) {
  throw new Error("set SOCKETSVC_AGENT_TOKEN (an agent JWT) or SOCKETSVC_DEV_MODE=1 (service with DEV_MODE=true)");
}

const EMBED_ORIGIN = (process.env.SOCKETSVC_EMBED_ORIGIN ?? "").replace(/\/+$/, "");

const RUNS = [
  { label: "default", query: "", transport: null, signIn: AGENT_TOKEN ? "token" : "dev" },
  { label: "polling", query: "?transport=polling", transport: "polling", signIn: DEV_MODE ? "dev" : "token" },
];

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** A second visitor, straight on socket.io-client, waiting in the queue (so the console has one). */
async function queuedVisitor(text) {
  const socket = io(`${BASE_URL}/chat`, { forceNew: true, reconnection: false, transports: ["websocket"] });
  await new Promise((resolve, reject) => {
    socket.once("session", resolve);
    socket.once("connect_error", reject);
  });
  await socket.timeout(10_000).emitWithAck("message", { client_id: `q-${Date.now()}`, text });
  const ack = await socket.timeout(10_000).emitWithAck("handoff", {});
  assert.equal(ack.ok, true, `handoff ack ${JSON.stringify(ack)}`);
  return socket;
}

async function signInAgent(agent, how) {
  await agent.goto(`${BASE_URL}/agent.html`);
  await agent.locator("#signin-form").waitFor();
  if (how === "token") {
    await agent.locator("#token").fill(AGENT_TOKEN);
    await agent.locator("#sign-in").click();
    return jwtClaims(AGENT_TOKEN).name;
  }
  const name = "Grace Hopper";
  await agent.locator("#dev").waitFor(); // shown because /config.json says dev_mode
  await agent.locator("#dev-id").fill(`grace-${Date.now().toString(36)}`);
  await agent.locator("#dev-name").fill(name);
  await agent.locator("#dev-mint").click();
  return name;
}

for (const run of RUNS) {
  test(`demo (${run.label}): bot, handoff, accept, chat both ways, resolve`, { timeout: 90_000 }, async (t) => {
    const name = `demo-${run.label}`;
    const vctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const actx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const extra = [];
    t.after(async () => {
      for (const s of extra) s.close();
      await vctx.close();
      await actx.close();
    });
    const visitor = await vctx.newPage();
    const agent = await actx.newPage();
    const vseen = watch(visitor);
    const aseen = watch(agent);
    const vshot = shooter(visitor, `${name}-visitor`);
    const ashot = shooter(agent, `${name}-agent`);

    // The agent signs in first, so that the handoff reaches the console live.
    const agentName = await signInAgent(agent, run.signIn);
    await agent.locator("#conn[data-status='online']").waitFor();
    assert.ok(await agent.evaluate(() => localStorage.getItem("socketsvc.agent_token")), "token kept in localStorage");
    assert.equal((await agent.locator("#me").textContent()).trim(), agentName);
    await ashot("signed-in");

    // The landing page embeds the widget and opens it: the bot greets unasked.
    await visitor.goto(`${BASE_URL}/${run.query}`);
    const log = visitor.locator("#log");
    const vmsg = (seq) => log.locator(`.msg[data-seq="${seq}"]`);
    await visitor.locator("#panel").waitFor({ state: "visible" });
    await vmsg(1).waitFor();
    assert.equal(await vmsg(1).getAttribute("data-role"), "bot");
    await visitor.locator("#state[data-state='bot']").waitFor();
    assert.equal(
      await visitor.evaluate(() => document.querySelector("#socketsvc-widget").shadowRoot.activeElement?.id),
      "text",
      "opening the panel puts the focus in the input",
    );
    if (run.transport) {
      await sleep(1000); // long enough for an upgrade, were one allowed
      assert.equal((await visitor.locator("#transport").textContent()).trim(), run.transport, "transport label");
    } else {
      await visitor.locator("#transport", { hasText: "websocket" }).waitFor(); // polling, then the upgrade
    }
    await vshot("greeting");

    // A question; the bot answers.
    await visitor.locator("#text").fill("how do I install it");
    await visitor.locator("#text").press("Enter");
    await log.locator('.msg[data-seq="2"][data-role="visitor"] .msg-status[data-status="sent"]').waitFor();
    await vmsg(3).waitFor();
    assert.equal(await vmsg(3).getAttribute("data-role"), "bot");
    await vshot("bot-answer");

    // Talk to a human: the visitor waits in the queue, the console shows it with an alert.
    await visitor.locator("#handoff").click();
    await visitor.locator("#state[data-state='queued']").waitFor();
    assert.match(await visitor.locator("#state").textContent(), /queue/i);
    assert.ok(await visitor.locator("#handoff").isDisabled(), "no second handoff while queued");
    const cid = await log.getAttribute("data-conversation-id");
    assert.ok(cid);
    await vshot("queued");

    const item = agent.locator(`#queue li[data-conversation-id="${cid}"]`);
    await item.waitFor();
    const visitorName = (await item.locator(".item-name").textContent()).trim();
    await agent.locator("#alert", { hasText: visitorName }).waitFor();
    assert.match(await item.getAttribute("class"), /\bfresh\b/, "the new arrival is highlighted");
    assert.match(await item.locator(".waiting").textContent(), /^Waiting \d+s$/);
    await item.locator(".waiting", { hasText: /^Waiting [1-9]\d*s$/ }).waitFor({ timeout: 5000 }); // it ticks
    await ashot("queued-alert");

    // Accept: the console opens the chat with its history; the visitor sees the agent's name.
    await item.locator("button.accept").click();
    await agent.locator(`#chat-main[data-conversation-id="${cid}"]`).waitFor();
    await agent.locator(`#mine li[data-conversation-id="${cid}"]`).waitFor();
    assert.equal(await item.count(), 0, "accepted: no longer in the queue");
    assert.equal((await agent.locator("#chat-title").textContent()).trim(), visitorName);
    const alog = agent.locator("#log");
    await alog.locator(".msg[data-seq='2']", { hasText: "how do I install it" }).waitFor();
    await alog.locator(".msg[data-role='system']", { hasText: `${agentName} joined the chat.` }).waitFor();
    await visitor.locator("#state[data-state='assigned']", { hasText: agentName }).waitFor();
    await vshot("agent-joined");

    if (run.label === "default") extra.push(await queuedVisitor("Hi! Can someone help me with my invoice?"));

    // The visitor types: the console shows it. Then sends: the agent, viewing it, reads it.
    await visitor.locator("#text").pressSequentially("my order is late", { delay: 10 });
    await agent.locator("#typing", { hasText: `${visitorName} is typing` }).waitFor();
    await ashot("visitor-typing");
    await visitor.locator("#text").press("Enter");
    const sent = log.locator(".msg[data-role='visitor']", { hasText: "my order is late" });
    await sent.locator(".msg-status[data-status='sent'], .msg-status[data-status='read']").waitFor();
    const sentSeq = await sent.getAttribute("data-seq");
    await alog.locator(`.msg[data-seq="${sentSeq}"][data-role="visitor"]`).waitFor();
    await agent.locator("#typing").waitFor({ state: "hidden" }); // a message ends the typing
    await sent.locator(".msg-status[data-status='read']", { hasText: "Read" }).waitFor();
    await vshot("read-by-agent");

    // The agent types: the widget shows "<agent> is typing…". Then replies: the visitor reads it.
    await agent.locator("#text").pressSequentially("Let me check that for you.", { delay: 10 });
    await visitor.locator("#typing", { hasText: `${agentName} is typing` }).waitFor();
    const typingShot = await vshot("agent-typing");
    if (run.label === "default") publishShot(typingShot, "widget");
    await agent.locator("#text").press("Enter");
    await log.locator(".msg[data-role='agent']", { hasText: "Let me check that for you." }).waitFor();
    await visitor.locator("#typing").waitFor({ state: "hidden" });
    const reply = alog.locator(".msg[data-role='agent']", { hasText: "Let me check that for you." });
    await reply.locator(".msg-status[data-status='read']", { hasText: "Read" }).waitFor();
    await ashot("read-by-visitor");
    if (run.label === "default") {
      await agent.locator("#queue li .waiting").first().waitFor(); // the second visitor, waiting
      publishShot(await ashot("console"), "agent-console");
    }

    // Markup from a visitor is text on both screens: no element, no script.
    await visitor.locator("#text").fill(XSS);
    await visitor.locator("#text").press("Enter");
    const literal = alog.locator(".msg[data-role='visitor'] .msg-text", { hasText: XSS });
    await literal.waitFor();
    assert.equal(await literal.textContent(), XSS, "the console shows the markup literally");
    assert.equal(
      (await visitor.locator("#log .msg[data-role='visitor'][data-seq] .msg-text", { hasText: XSS }).textContent()),
      XSS,
    );
    await agent.locator(`#mine li[data-conversation-id="${cid}"] .item-last`, { hasText: XSS }).waitFor();
    await sleep(300);
    assert.equal(await visitor.locator("img").count(), 0, "no <img> in the visitor's page (shadow root included)");
    assert.equal(await agent.locator("img").count(), 0, "no <img> in the console");
    await ashot("markup-as-text");

    // Resolve: the conversation leaves the console; the visitor sees it resolved.
    await agent.locator("#resolve").click();
    await agent.locator(`#mine li[data-conversation-id="${cid}"]`).waitFor({ state: "detached" });
    await agent.locator("#chat-empty", { hasText: "was resolved" }).waitFor();
    await visitor.locator("#state[data-state='resolved']").waitFor();
    await log.locator(".msg[data-role='system']", { hasText: "resolved" }).waitFor();
    assert.ok(!(await visitor.locator("#handoff").isDisabled()), "a resolved visitor may ask for a human again");
    await vshot("resolved");
    await ashot("resolved");

    // Escape closes the panel and gives the focus back to the bubble.
    await visitor.locator("#text").press("Escape");
    await visitor.locator("#panel").waitFor({ state: "hidden" });
    assert.equal(await visitor.locator("#bubble").getAttribute("aria-expanded"), "false");
    assert.equal(
      await visitor.evaluate(() => document.querySelector("#socketsvc-widget").shadowRoot.activeElement?.id),
      "bubble",
    );

    for (const [who, seen] of [["visitor", vseen], ["agent", aseen]]) {
      assert.deepEqual(seen.dialogs, [], `${who}: no script ran from message text`);
      assert.deepEqual(seen.foreign, [], `${who}: nothing loaded from other origins`);
      assert.deepEqual(seen.problems, [], `${who}: no errors in the page`);
    }
  });
}

test(
  "agent console: resync after losing the connection, then transfer and release",
  { timeout: 60_000, skip: AGENT_TOKEN ? false : "SOCKETSVC_AGENT_TOKEN is not set" },
  async (t) => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const v = await queuedVisitor("Hello, is anybody there?");
    t.after(async () => {
      v.close();
      await ctx.close();
    });
    const reads = [];
    v.on("read", (ev) => reads.push(ev));
    const session = await v.timeout(10_000).emitWithAck("sync", { after_seq: 0 });
    const page = await ctx.newPage();
    const seen = watch(page);
    const shot = shooter(page, "demo-agent-resync");
    await page.goto(`${BASE_URL}/agent.html`);
    await page.locator("#token").fill(AGENT_TOKEN);
    await page.locator("#sign-in").click();
    const cid = session.messages[0].conversation_id;
    await page.locator(`#queue li[data-conversation-id="${cid}"] button.accept`).click();
    await page.locator(`#chat-main[data-conversation-id="${cid}"]`).waitFor();
    const log = page.locator("#log");
    await log.locator(".msg", { hasText: "Hello, is anybody there?" }).waitFor();

    // Offline: the visitor writes meanwhile; the console misses the live event.
    await ctx.setOffline(true);
    await page.locator("#conn[data-status='reconnecting']").waitFor();
    const text = "I wrote this while you were offline";
    const ack = await v.timeout(10_000).emitWithAck("message", { client_id: `off-${Date.now()}`, text });
    assert.equal(ack.ok, true);
    await shot("offline");

    // Back: the snapshots come again and the open conversation is resynced, each seq once.
    await ctx.setOffline(false);
    await page.locator("#conn[data-status='online']").waitFor({ timeout: 30_000 });
    await log.locator(`.msg[data-seq="${ack.message.seq}"][data-role="visitor"]`, { hasText: text }).waitFor();
    const seqs = await log.locator(".msg[data-seq]").evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(seqs, Array.from({ length: ack.message.seq }, (_, i) => i + 1), "in order, each once");
    // Viewing it counts as reading it: the visitor gets the receipt.
    for (let i = 0; i < 50 && !reads.some((r) => r.reader.role === "agent" && r.seq >= ack.message.seq); i++) {
      await sleep(100);
    }
    assert.ok(
      reads.some((r) => r.reader.role === "agent" && r.seq >= ack.message.seq),
      `read receipt after the resync: ${JSON.stringify(reads)}`,
    );
    await shot("resynced");

    // The other actions: a transfer to an unknown agent is refused with the service's reason;
    // release to the queue (back in the queue list), accept again, release to the bot (gone).
    await page.locator("#transfer-to").fill("nobody-by-that-id");
    await page.locator("#transfer").click();
    await page.locator("#chat-error", { hasText: "Transfer failed: no such agent" }).waitFor();
    await page.locator("#release-queue").click();
    await page.locator("#chat-empty", { hasText: "was returned to the queue" }).waitFor();
    await page.locator(`#mine li[data-conversation-id="${cid}"]`).waitFor({ state: "detached" });
    const again = page.locator(`#queue li[data-conversation-id="${cid}"]`);
    await again.waitFor();
    await again.locator("button.accept").click();
    await page.locator(`#chat-main[data-conversation-id="${cid}"]`).waitFor();
    await page.locator("#release-bot").click();
    await page.locator("#chat-empty", { hasText: "was handed back to the bot" }).waitFor();
    assert.equal(await page.locator(`[data-conversation-id="${cid}"]`).count(), 0, "gone from both lists");
    await shot("released");
    assert.deepEqual(seen.problems.filter((p) => p.startsWith("page error")), []);
  },
);

test("agent console: a refused token shows the service's reason", { timeout: 30_000 }, async (t) => {
  const ctx = await browser.newContext();
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  watch(page);
  await page.goto(`${BASE_URL}/agent.html`);
  const bogus = [
    Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT" })).toString("base64url"),
    Buffer.from(JSON.stringify({ sub: "mallory", name: "Mallory", role: "agent", exp: 4102444800 })).toString("base64url"),
    "c2lnbmF0dXJl",
  ].join(".");
  await page.locator("#token").fill(bogus);
  await page.locator("#sign-in").click();
  await page.locator("#signin-error", { hasText: /refused this token: agent token invalid/i }).waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem("socketsvc.agent_token")), null, "a refused token is dropped");
  assert.ok(await page.locator("#signin-form").isVisible());
  await page.screenshot({ path: path.join(SHOTS, "demo-agent-refused.png") });
});

// SOCKETSVC_EMBED_ORIGIN (e.g. http://localhost:8091) must be in the service's ALLOWED_ORIGINS,
// together with the service's own origin (the pages above): a customer site on another origin.
test(
  "widget embedded on a customer site of another origin",
  { timeout: 60_000, skip: EMBED_ORIGIN ? false : "SOCKETSVC_EMBED_ORIGIN is not set" },
  async (t) => {
    const site = http.createServer((req, res) => {
      if (new URL(req.url, EMBED_ORIGIN).pathname !== "/") {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Acme Inc.</title>
<link rel="icon" href="data:,"></head><body style="font-family: Georgia, serif; margin: 3rem">
<h1>Acme Inc.</h1><p>Anvils, rockets and support that answers.</p>
<script src="${BASE_URL}/widget.js" defer></script></body></html>`);
    });
    const { port, hostname } = new URL(EMBED_ORIGIN);
    await new Promise((resolve, reject) => {
      site.once("error", reject);
      site.listen(Number(port), hostname === "localhost" ? "127.0.0.1" : hostname, resolve);
    });
    const ctx = await browser.newContext({ viewport: { width: 1024, height: 720 } });
    t.after(async () => {
      await ctx.close();
      site.closeAllConnections();
      await new Promise((resolve) => site.close(resolve));
    });
    const page = await ctx.newPage();
    const seen = watch(page);
    const foreign = [];
    page.on("request", (req) => {
      const u = req.url();
      if (!u.startsWith(`${EMBED_ORIGIN}/`) && !u.startsWith(`${BASE_URL}/`) && !u.startsWith("data:")) foreign.push(u);
    });

    await page.goto(`${EMBED_ORIGIN}/?open=1`);
    await page.locator('#log .msg[data-seq="1"][data-role="bot"]').waitFor();
    await page.locator("#transport", { hasText: "websocket" }).waitFor();
    await page.locator("#text").fill("how do I run the tests");
    await page.locator("#text").press("Enter");
    await page.locator('#log .msg[data-seq="3"][data-role="bot"]').waitFor();
    const token = await page.evaluate(() => localStorage.getItem("socketsvc.visitor_token"));
    assert.ok(token, "the visitor token is kept in the customer site's localStorage");
    await page.screenshot({ path: path.join(SHOTS, "demo-embed-cross-origin.png") });
    assert.deepEqual(foreign, [], "only the customer site and the service are contacted");
    assert.deepEqual(seen.problems, []);
  },
);
