// Drives the visitor demo page (client-demo/index.html) in headless Chromium.
//
//   SOCKETSVC_URL=http://127.0.0.1:8080 node --test tests/e2e/visitor_page.test.mjs
//
// Needs Debian's /usr/bin/chromium (playwright-core downloads no browser).
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const BASE_URL = (process.env.SOCKETSVC_URL ?? "").replace(/\/+$/, "");
if (!BASE_URL) {
  throw new Error(
    "SOCKETSVC_URL is not set: point it at a running socketsvc, e.g. SOCKETSVC_URL=http://127.0.0.1:8080",
  );
}
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const SHOTS = path.join(ROOT, "artifacts", "screenshots");
const WAIT_MS = 15_000;
const XSS = "<img src=x onerror=alert(1)>";

let browser;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
});

const PAGES = [
  ["default", "/", null],
  ["polling", "/?transport=polling", "polling"],
];

for (const [label, urlPath, forcedTransport] of PAGES) {
  test(`visitor page (${label}): chat, escaping, resume and handoff`, { timeout: 90_000 }, async (t) => {
    // A fresh context per page: its own localStorage, so a new visitor.
    const context = await browser.newContext({ viewport: { width: 800, height: 900 } });
    t.after(() => context.close());
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);

    const problems = [];
    const dialogs = [];
    const foreign = [];
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (msg) => {
      if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
    });
    page.on("dialog", async (d) => {
      dialogs.push(d.message());
      await d.dismiss();
    });
    page.on("request", (req) => {
      const u = req.url();
      if (!u.startsWith(BASE_URL) && !u.startsWith("data:")) foreign.push(u);
    });
    const shot = (name) => page.screenshot({ path: path.join(SHOTS, `visitor-${label}-${name}.png`), fullPage: true });

    const log = page.locator("#log");
    const msg = (seq) => log.locator(`.msg[data-seq="${seq}"]`);

    await page.goto(`${BASE_URL}${urlPath}`);

    // The greeting arrives unasked.
    await msg(1).waitFor();
    assert.equal(await msg(1).getAttribute("data-role"), "bot", "the greeting is from the bot");
    await page.locator("#state[data-state='bot']").waitFor();
    const transport = (await page.locator("#transport").textContent()).trim();
    if (forcedTransport) assert.equal(transport, forcedTransport, "?transport= forces the transport");
    else await page.locator("#transport", { hasText: "websocket" }).waitFor(); // polling, then upgrade
    const token = await page.evaluate(() => localStorage.getItem("socketsvc.visitor_token"));
    assert.ok(token, "the visitor token is kept in localStorage");
    await shot("greeting");

    // Ask a question: it shows as seq 2 (the visitor's), then the bot's reply.
    const question = "how do I install it";
    await page.locator("#text").fill(question);
    await page.locator("#send").click();
    await msg(2).waitFor();
    assert.equal(await msg(2).getAttribute("data-role"), "visitor");
    assert.equal((await msg(2).locator(".msg-text").textContent()).trim(), question);
    await msg(3).waitFor();
    assert.equal(await msg(3).getAttribute("data-role"), "bot", "the bot answers");
    assert.equal(await page.locator("#text").inputValue(), "", "the input is cleared after sending");
    assert.equal(await log.locator(".msg.pending").count(), 0, "nothing stays pending after the ack");
    await shot("chat");

    // Markup in a message is shown as text, never parsed.
    await page.locator("#text").fill(XSS);
    await page.locator("#send").click();
    const literal = log.locator('.msg[data-role="visitor"][data-seq]', { hasText: XSS });
    await literal.waitFor();
    const shownSeq = Number(await literal.getAttribute("data-seq"));
    assert.ok(shownSeq >= 4, `the markup message was stored after the first exchange (seq ${shownSeq})`);
    await msg(shownSeq + 1).waitFor(); // the bot's (fallback) answer
    assert.equal(await page.locator("#log img").count(), 0, "no <img> element was created");
    assert.equal((await literal.locator(".msg-text").textContent()).trim(), XSS);
    await page.waitForTimeout(300);
    assert.deepEqual(dialogs, [], "no script ran from message text");
    await shot("escaped");

    // Reload: the same visitor resumes; sync restores the history, each seq once, no new greeting.
    const conversation = await log.getAttribute("data-conversation-id");
    assert.ok(conversation, "#log names the conversation");
    const seqsBefore = await log.locator(".msg[data-seq]").evaluateAll((els) => els.map((e) => e.dataset.seq));
    await page.reload();
    await msg(seqsBefore[seqsBefore.length - 1]).waitFor();
    await page.waitForTimeout(500);
    const seqsAfter = await log.locator(".msg[data-seq]").evaluateAll((els) => els.map((e) => e.dataset.seq));
    assert.deepEqual(seqsAfter, seqsBefore, "history restored in seq order, nothing duplicated");
    assert.equal(await log.getAttribute("data-conversation-id"), conversation, "the same conversation resumed");
    assert.ok(
      await page.evaluate(() => localStorage.getItem("socketsvc.visitor_token")),
      "a visitor token is still stored (the service may refresh it)",
    );

    // Ask for a human: the state shows the visitor waiting in the queue.
    await page.locator("#handoff").click();
    await page.locator("#state[data-state='queued']").waitFor();
    const stateText = await page.locator("#state").textContent();
    assert.match(stateText, /waiting|queue/i, `#state tells the visitor they wait: ${stateText}`);
    assert.ok(await page.locator("#handoff").isDisabled(), "no second handoff while queued");
    await shot("handoff");

    assert.deepEqual(foreign, [], "the page loads nothing from other hosts (no CDN)");
    assert.deepEqual(problems, [], "no errors in the page");
  });
}

test("visitor page: a message sent while offline stays pending, then is delivered once", { timeout: 90_000 }, async (t) => {
  const context = await browser.newContext({ viewport: { width: 800, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const pageErrors = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));
  const log = page.locator("#log");

  await page.goto(`${BASE_URL}/`);
  await log.locator('.msg[data-seq="1"]').waitFor();

  await context.setOffline(true); // drops the connection, whichever transport it uses
  await page.locator("#connection[data-connected='false']").waitFor();
  const text = "how do I run the tests";
  await page.locator("#text").fill(text);
  await page.locator("#send").click();
  const pendingMsg = log.locator(".msg.pending", { hasText: text });
  await pendingMsg.waitFor();
  assert.equal(await pendingMsg.getAttribute("data-seq"), null, "a pending message has no seq yet");
  await page.screenshot({ path: path.join(SHOTS, "visitor-offline-pending.png"), fullPage: true });

  await context.setOffline(false);
  await log.locator('.msg[data-seq="2"][data-role="visitor"]', { hasText: text }).waitFor({ timeout: 30_000 });
  await log.locator('.msg[data-seq="3"][data-role="bot"]').waitFor();
  await page.waitForTimeout(500);
  assert.equal(await log.locator(".msg.pending").count(), 0, "nothing left pending");
  assert.equal(await log.locator(".msg", { hasText: text }).count(), 1, "the message is shown once");
  const seqs = await log.locator(".msg[data-seq]").evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
  assert.deepEqual(seqs, [1, 2, 3], "ordered by seq, each once");
  await page.screenshot({ path: path.join(SHOTS, "visitor-offline-delivered.png"), fullPage: true });
  assert.deepEqual(pageErrors, []);
});

test("visitor page: an unknown stored token is dropped and a new visitor starts", { timeout: 60_000 }, async (t) => {
  const context = await browser.newContext();
  t.after(() => context.close());
  await context.addInitScript(() => {
    if (!sessionStorage.getItem("seeded")) {
      sessionStorage.setItem("seeded", "1");
      localStorage.setItem("socketsvc.visitor_token", "not-a-valid-token");
    }
  });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  await page.goto(`${BASE_URL}/`);
  await page.locator('#log .msg[data-seq="1"][data-role="bot"]').waitFor();
  await page.locator("#state[data-state='bot']").waitFor();
  const token = await page.evaluate(() => localStorage.getItem("socketsvc.visitor_token"));
  assert.ok(token && token !== "not-a-valid-token", "the refused token was replaced by the new session's");
});
