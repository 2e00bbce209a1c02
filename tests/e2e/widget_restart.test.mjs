// The widget through a service restart, in headless Chromium: the visitor chats with the bot, the
// service stops, the widget shows its reconnecting banner, the visitor sends a message during the
// outage, the service starts again, and that message is stored and shown exactly once.
//
//   SOCKETSVC_URL=http://127.0.0.1:8080 SOCKETSVC_CONTROL_URL=http://127.0.0.1:9999 \
//     node --test tests/e2e/widget_restart.test.mjs
//
// SOCKETSVC_CONTROL_URL is a small HTTP endpoint of the test harness (tests/e2e/test_demo_pages.py)
// that stops (POST /stop) and starts (POST /start) the service on the same port and database.
// With SOCKETSVC_AGENT_TOKEN, an agent console is signed in throughout: it shows the outage, comes
// back by itself, and then gets the visitor's handoff live.
// Screenshots: artifacts/screenshots/restart-<step>.png.
import assert from "node:assert/strict";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, test } from "node:test";

import { BASE_URL, SHOTS, launchBrowser, shooter, storedMessages, watch } from "./demo_helpers.mjs";

const CONTROL_URL = (process.env.SOCKETSVC_CONTROL_URL ?? "").replace(/\/+$/, "");
const AGENT_TOKEN = process.env.SOCKETSVC_AGENT_TOKEN ?? "";

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

async function control(action) {
  const res = await fetch(`${CONTROL_URL}/${action}`, { method: "POST" });
  assert.equal(res.status, 200, `control ${action}: HTTP ${res.status}`);
  return res.json();
}

test(
  "widget: a message sent while the service restarts is delivered exactly once",
  { timeout: 90_000, skip: CONTROL_URL ? false : "SOCKETSVC_CONTROL_URL is not set" },
  async (t) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const agentContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    let stopped = false;
    t.after(async () => {
      if (stopped) await control("start"); // leave the service running for the harness
      await context.close();
      await agentContext.close();
    });
    let agent = null;
    if (AGENT_TOKEN) {
      agent = await agentContext.newPage();
      watch(agent);
      await agent.goto(`${BASE_URL}/agent.html`);
      await agent.locator("#token").fill(AGENT_TOKEN);
      await agent.locator("#sign-in").click();
      await agent.locator("#conn[data-status='online']").waitFor();
    }
    const page = await context.newPage();
    const seen = watch(page);
    const shot = shooter(page, "restart");
    const log = page.locator("#log");

    await page.goto(`${BASE_URL}/`);
    await log.locator('.msg[data-seq="1"][data-role="bot"]').waitFor();
    await page.locator("#text").fill("what is socketsvc");
    await page.locator("#text").press("Enter");
    await log.locator('.msg[data-seq="3"][data-role="bot"]').waitFor();
    const conversation = await log.getAttribute("data-conversation-id");
    await shot("chatting");

    // The service goes away: the widget says it is reconnecting.
    await control("stop");
    stopped = true;
    await page.locator("#reconnecting", { hasText: "Reconnecting" }).waitFor();
    await page.locator("#connection[data-connected='false']").waitFor();
    assert.equal((await page.locator("#transport").textContent()).trim(), "none");
    await shot("outage");
    if (agent) {
      await agent.locator("#conn[data-status='reconnecting']").waitFor();
      await agent.screenshot({ path: path.join(SHOTS, "restart-agent-outage.png") });
    }

    // The visitor writes anyway: the message waits, pending, without a seq.
    const text = `sent during the outage ${Date.now().toString(36)}`;
    await page.locator("#text").fill(text);
    await page.locator("#text").press("Enter");
    const mine = log.locator(".msg[data-role='visitor']", { hasText: text });
    await mine.locator(".msg-status", { hasText: "Waiting for connection" }).waitFor();
    assert.equal(await mine.getAttribute("data-seq"), null, "a pending message has no seq yet");
    assert.match(await mine.getAttribute("class"), /\bpending\b/);
    await sleep(700); // let a reconnection attempt or two fail
    await shot("pending-offline");

    // The service is back (same port, same database): the widget reconnects, resyncs and resends.
    await control("start");
    stopped = false;
    await mine.locator(".msg-status[data-status='sent']").waitFor({ timeout: 30_000 });
    const seq = Number(await mine.getAttribute("data-seq"));
    assert.ok(seq >= 4, `stored after the first exchange (seq ${seq})`);
    await page.locator("#reconnecting").waitFor({ state: "hidden" });
    await page.locator("#connection[data-connected='true']").waitFor();
    await log.locator(`.msg[data-seq="${seq + 1}"][data-role="bot"]`).waitFor(); // the bot answers it
    assert.equal(await log.getAttribute("data-conversation-id"), conversation, "the same conversation resumed");
    assert.equal(await log.locator(".msg", { hasText: text }).count(), 1, "shown once");
    assert.equal(await log.locator(".msg.pending").count(), 0, "nothing left pending");
    await shot("back");

    // Exactly once in the store, as another client of the same visitor sees it.
    const token = await page.evaluate(() => localStorage.getItem("socketsvc.visitor_token"));
    const { session, ack } = await storedMessages(token);
    assert.equal(session.conversation_id, conversation);
    const copies = ack.messages.filter((m) => m.text === text);
    assert.equal(copies.length, 1, `stored once: ${JSON.stringify(copies)}`);
    assert.equal(copies[0].seq, seq);
    assert.deepEqual(
      ack.messages.map((m) => m.seq),
      Array.from({ length: ack.last_seq }, (_, i) => i + 1),
      "seqs 1..last_seq, no gaps, no repeats",
    );

    // And after a reload, from the service's history.
    await page.reload();
    await log.locator(`.msg[data-seq="${ack.last_seq}"]`).waitFor();
    await sleep(300);
    assert.equal(await log.locator(".msg[data-seq]", { hasText: text }).count(), 1, "once after a reload");
    const seqs = await log.locator(".msg[data-seq]").evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(seqs, Array.from({ length: ack.last_seq }, (_, i) => i + 1));
    await shot("after-reload");

    // The agent console came back by itself and gets live events again.
    if (agent) {
      await agent.locator("#conn[data-status='online']").waitFor({ timeout: 30_000 });
      await page.locator("#handoff").click();
      await page.locator("#state[data-state='queued']").waitFor();
      await agent.locator(`#queue li[data-conversation-id="${conversation}"]`).waitFor();
      await agent.locator("#alert:not([hidden])").waitFor();
      await agent.screenshot({ path: path.join(SHOTS, "restart-agent-back.png") });
    }

    // Failed requests during the outage are logged by the browser; script errors are not allowed.
    assert.deepEqual(
      seen.problems.filter((p) => p.startsWith("page error")),
      [],
      "no script errors",
    );
    assert.deepEqual(seen.dialogs, []);
    assert.deepEqual(seen.foreign, []);
  },
);
