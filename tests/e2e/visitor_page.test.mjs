// Drives the visitor widget (client-demo/widget.js) in headless Chromium: on the demo landing page
// (client-demo/index.html, which embeds it with one script tag and opens its panel), and on a page
// of "a customer site" with hostile CSS. The widget lives in an open shadow root; Playwright's CSS
// locators pierce it, so `#log`, `#text`, ... below are the widget's own elements.
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

// A customer page of our own making, served from the service's origin by Playwright (same origin,
// so no ALLOWED_ORIGINS needed): hostile CSS, its own `io` global, and the one script tag.
const HOST_PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Customer site</title><link rel="icon" href="data:,">
<style>
  * { font-family: "Comic Sans MS", cursive !important; color: red !important; }
  button { display: none !important; }
  div, section, p { font-size: 40px !important; padding: 30px !important; background: yellow !important; }
  input { visibility: hidden !important; }
</style>
<script>window.io = "the page's own io";</script>
</head><body><h1>Acme Inc.</h1><p>Our products.</p>
<script src="/widget.js" defer></script>
</body></html>`;

test("widget on a customer page: closed until asked, isolated from the page's CSS", { timeout: 60_000 }, async (t) => {
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  t.after(() => context.close());
  await context.route(`${BASE_URL}/customer-page`, (route) =>
    route.fulfill({ status: 200, contentType: "text/html", body: HOST_PAGE }),
  );
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems = [];
  const sockets = [];
  page.on("pageerror", (err) => problems.push(err.message));
  page.on("request", (req) => {
    if (req.url().includes("/socket.io/")) sockets.push(req.url());
  });

  await page.goto(`${BASE_URL}/customer-page`);
  const bubble = page.locator("#bubble");
  await bubble.waitFor();
  assert.equal(await bubble.getAttribute("aria-label"), "Open support chat");
  assert.equal(await bubble.getAttribute("aria-expanded"), "false");
  assert.ok(await bubble.isVisible(), "the page's `button { display: none }` does not reach the widget");
  assert.ok(await page.locator("#panel").isHidden(), "closed by default on a customer page");
  await page.waitForTimeout(500);
  assert.deepEqual(sockets, [], "a new visitor is not connected before opening the chat");
  assert.equal(await page.evaluate(() => localStorage.getItem("socketsvc.visitor_token")), null);
  await page.screenshot({ path: path.join(SHOTS, "widget-customer-closed.png") });

  await bubble.click();
  await page.locator("#panel").waitFor({ state: "visible" });
  await page.locator('#log .msg[data-seq="1"][data-role="bot"]').waitFor();
  assert.ok(await page.locator("#text").isVisible(), "the page's `input { visibility: hidden }` does not reach it");
  const look = await page.locator("#log .msg-text").first().evaluate((e) => {
    const cs = getComputedStyle(e);
    return { font: cs.fontFamily, size: cs.fontSize, color: cs.color };
  });
  assert.doesNotMatch(look.font, /comic/i, `the widget keeps its font: ${look.font}`);
  assert.notEqual(look.color, "rgb(255, 0, 0)", "nor its colours");
  assert.equal(look.size, "15px");
  assert.equal(await page.evaluate(() => window.io), "the page's own io", "the page's `io` global is left alone");
  await page.screenshot({ path: path.join(SHOTS, "widget-customer-open.png") });

  // Closed again, a reply from the bot shows up as an unread badge on the bubble.
  await page.keyboard.press("Escape");
  await page.locator("#panel").waitFor({ state: "hidden" });
  const other = await context.newPage(); // same visitor (shared localStorage): a second tab
  other.setDefaultTimeout(WAIT_MS);
  await other.goto(`${BASE_URL}/?open=1`);
  await other.locator('#log .msg[data-seq="1"]').waitFor();
  await other.locator("#text").fill("how do I run the tests");
  await other.locator("#text").press("Enter");
  await other.locator('#log .msg[data-seq="3"][data-role="bot"]').waitFor();
  await page.locator("#badge", { hasText: "1" }).waitFor();
  assert.match(await bubble.getAttribute("aria-label"), /1 unread/);
  await page.locator('#log .msg[data-seq="2"][data-role="visitor"]').waitFor({ state: "attached" }); // the other tab's message too
  await page.screenshot({ path: path.join(SHOTS, "widget-customer-unread.png") });
  await bubble.click();
  await page.locator("#badge").waitFor({ state: "hidden" });
  assert.deepEqual(problems, []);
});
