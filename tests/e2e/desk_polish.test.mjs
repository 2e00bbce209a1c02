// The agent desk's polish (issue 19), in headless Chromium: a visitor on the landing page's widget
// and agents on the console, each in a browser context of its own.
//
//   SOCKETSVC_URL=http://127.0.0.1:8080 SOCKETSVC_SECRET=... SOCKETSVC_MAX_TEXT=300 \
//     SOCKETSVC_CONTROL_URL=... node --test tests/e2e/desk_polish.test.mjs
//
// (tests/e2e/test_desk_polish.py starts the service with MAX_TEXT_LENGTH=300 and the control server
// whose POST /backdate moves messages' created_at back in the database.)
//
//   - Shift+Enter starts a new line in both composers, Enter sends the whole message;
//   - a text over the service's limit is refused with a notice, kept whole in the input (not cut,
//     not sent), on both pages; the limit is the service's (300), not the pages' default (4000);
//     and if a page ever sends one, the service's own refusal shows on the bubble;
//   - a log scrolled up to read history stays where it is when messages arrive, with a "new
//     messages" button; at the bottom it follows;
//   - date separators between days, labelled in the browser's locale ("Yesterday", "Today");
//   - a visible focus ring on the console's conversation items, and Enter opens one;
//   - queue cards show the visitor's first question;
//   - the landing page fits a 375 px phone, the widget's buttons on screen.
// Screenshots: artifacts/screenshots/polish-*.png (with SOCKETSVC_UPDATE_DOC_SCREENSHOTS=1, some are
// copied to docs/screenshots/).
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, test } from "node:test";

import { io } from "socket.io-client";

import { BASE_URL, launchBrowser, publishShot, shooter, storedMessages, watch } from "./demo_helpers.mjs";

const SECRET = process.env.SOCKETSVC_SECRET ?? "";
const CONTROL_URL = (process.env.SOCKETSVC_CONTROL_URL ?? "").replace(/\/+$/, "");
const MAX_TEXT = Number(process.env.SOCKETSVC_MAX_TEXT ?? "");
if (!SECRET || !CONTROL_URL || !Number.isInteger(MAX_TEXT)) {
  throw new Error("set SOCKETSVC_SECRET, SOCKETSVC_CONTROL_URL and SOCKETSVC_MAX_TEXT (see test_desk_polish.py)");
}
const CONTEXT = { locale: "en-GB", timezoneId: "UTC" };

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

const b64url = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** An agent JWT (HS256) signed with the service's secret. */
function agentToken(id, name) {
  const head = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url({
    sub: id,
    name,
    role: "agent",
    exp: Math.floor(Date.now() / 1000) + 3600,
  })}`;
  return `${head}.${createHmac("sha256", SECRET).update(head).digest("base64url")}`;
}

function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
}

/** A browser context and page, closed after the test; problems on the page fail the test. */
async function newPage(t, options = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...CONTEXT, ...options });
  const page = await ctx.newPage();
  const seen = watch(page);
  t.after(async () => {
    await ctx.close();
    assert.deepEqual(seen.problems, [], "no errors on the page");
    assert.deepEqual(seen.dialogs, [], "no dialogs");
  });
  return page;
}

/** An agent signed in on the console, in a context of its own. */
async function consolePage(t, name, options) {
  const page = await newPage(t, options);
  await page.goto(`${BASE_URL}/agent.html`);
  await page.locator("#token").fill(agentToken(unique(name.toLowerCase()), name));
  await page.locator("#sign-in").click();
  await page.locator("#conn[data-status='online']").waitFor();
  return page;
}

/** A visitor on the landing page, the widget open with the bot's greeting; returns [page, cid]. */
async function widgetPage(t, query = "", options = {}) {
  const page = await newPage(t, { viewport: { width: 800, height: 900 }, ...options });
  await page.goto(`${BASE_URL}/${query}`);
  await page.locator("#panel").waitFor({ state: "visible" });
  await page.locator('#log .msg[data-seq="1"]').waitFor();
  const cid = await page.locator("#log").getAttribute("data-conversation-id");
  return [page, cid];
}

/** The visitor asks for a human; the agent accepts from the queue card. */
async function handoffAndAccept(visitor, agent, cid) {
  await visitor.locator("#handoff").click();
  await visitor.locator("#state[data-state='queued']").waitFor();
  await agent.locator(`#queue button.accept[data-conversation-id="${cid}"]`).click();
  await agent.locator(`#chat-main[data-conversation-id="${cid}"]`).waitFor();
  await visitor.locator("#state[data-state='assigned']").waitFor();
}

/** A visitor straight on socket.io-client that writes `texts`, then asks for a human; returns
 * the conversation id (and `queuedVisitor.last`, its socket). */
async function queuedVisitor(t, texts) {
  const socket = io(`${BASE_URL}/chat`, { forceNew: true, reconnection: false, transports: ["websocket"] });
  t.after(() => socket.close());
  const session = await new Promise((resolve, reject) => {
    socket.once("session", resolve);
    socket.once("connect_error", reject);
  });
  for (const text of texts) {
    const ack = await socket.timeout(10_000).emitWithAck("message", { client_id: unique("q"), text });
    assert.equal(ack.ok, true, `message ack ${JSON.stringify(ack)}`);
  }
  const ack = await socket.timeout(10_000).emitWithAck("handoff", {});
  assert.equal(ack.ok, true, `handoff ack ${JSON.stringify(ack)}`);
  queuedVisitor.last = socket;
  return session.conversation_id;
}

/** Type into a composer as a person would: Shift+Enter between the lines, then Enter. */
async function typeLines(page, lines) {
  const box = page.locator("#text");
  await box.click();
  for (let i = 0; i < lines.length; i++) {
    if (i > 0) await box.press("Shift+Enter");
    await page.keyboard.type(lines[i], { delay: 5 });
  }
}

/** The log's scroll facts. */
function scrollOf(page) {
  return page.locator("#log").evaluate((log) => ({
    top: log.scrollTop,
    fromEnd: log.scrollHeight - log.scrollTop - log.clientHeight,
    scrollable: log.scrollHeight > log.clientHeight + 100,
  }));
}

/** Scroll the log to its top, as a reader going back in history, and let the page see it. */
async function readHistory(page) {
  await page.locator("#log").evaluate((log) => {
    log.scrollTop = 0;
  });
  await page.waitForFunction(() => {
    const host = document.querySelector("#socketsvc-widget");
    const log = (host && host.shadowRoot ? host.shadowRoot : document).querySelector("#log");
    return log && log.scrollTop === 0;
  });
  await sleep(150); // the scroll event has been handled
}

test("Shift+Enter starts a new line in both composers; Enter sends the whole message", { timeout: 60_000 }, async (t) => {
  const agent = await consolePage(t, "Shifty");
  const [visitor, cid] = await widgetPage(t);

  const box = visitor.locator("#text");
  assert.equal(await box.evaluate((e) => e.tagName), "TEXTAREA", "the widget's composer holds lines");
  await typeLines(visitor, ["My order #88", "never arrived"]);
  assert.equal(await box.inputValue(), "My order #88\nnever arrived", "Shift+Enter did not send the half message");
  assert.equal(await visitor.locator("#log .msg[data-role='visitor']").count(), 0, "nothing sent yet");
  const [one, two] = [
    await box.evaluate((e) => e.getBoundingClientRect().height),
    await box.evaluate((e) => e.scrollHeight),
  ];
  assert.ok(one >= two - 2, `the box grew to show both lines (${one}px for ${two}px of text)`);
  await box.press("Enter");
  const sent = visitor.locator("#log .msg[data-role='visitor'][data-seq]");
  await sent.waitFor();
  assert.equal(await sent.locator(".msg-text").textContent(), "My order #88\nnever arrived");
  assert.equal(await box.inputValue(), "", "the input is cleared after sending");
  const token = await visitor.evaluate(() => localStorage.getItem("socketsvc.visitor_token"));
  const stored = (await storedMessages(token)).ack.messages.filter((m) => m.sender.role === "visitor");
  assert.deepEqual(
    stored.map((m) => m.text),
    ["My order #88\nnever arrived"],
    "stored once, both lines",
  );

  await handoffAndAccept(visitor, agent, cid);
  assert.equal(await agent.locator("#text").evaluate((e) => e.tagName), "TEXTAREA");
  await typeLines(agent, ["Sorry about that.", "Checking with the courier now."]);
  assert.equal(await agent.locator("#text").inputValue(), "Sorry about that.\nChecking with the courier now.");
  await agent.locator("#text").press("Enter");
  const reply = visitor.locator("#log .msg[data-role='agent'][data-seq]");
  await reply.waitFor();
  assert.equal(await reply.locator(".msg-text").textContent(), "Sorry about that.\nChecking with the courier now.");
  assert.equal(await agent.locator("#text").inputValue(), "");
  await shooter(visitor, "polish-shift-enter")("visitor");
});

test(`text over the service's limit (${MAX_TEXT}) is refused with a notice and kept whole`, { timeout: 60_000 }, async (t) => {
  const agent = await consolePage(t, "Limits");
  const [visitor, cid] = await widgetPage(t);
  const vshot = shooter(visitor, "polish-limit");
  const tooLong = "x".repeat(MAX_TEXT - 10) + " 0123456789!"; // MAX + 2 characters

  // Pasted in one go (insertText, as a paste or an input method does: `maxlength` would cut it).
  await visitor.locator("#text").click();
  await visitor.keyboard.insertText(tooLong);
  assert.equal(await visitor.locator("#text").inputValue(), tooLong, "the text is not cut");
  const notice = visitor.locator("#composer-limit");
  await notice.waitFor({ state: "visible" });
  assert.equal(
    await notice.textContent(),
    `Too long to send: ${MAX_TEXT + 2} characters, the limit is ${MAX_TEXT}. Remove 2 characters.`,
    "the limit is the service's MAX_TEXT_LENGTH, not the page's default",
  );
  assert.equal(await visitor.locator("#text").getAttribute("aria-invalid"), "true");
  await vshot("notice");
  await visitor.locator("#text").press("Enter");
  await visitor.locator("#send").click();
  await sleep(500);
  assert.equal(await visitor.locator("#log .msg[data-role='visitor']").count(), 0, "not sent");
  assert.equal(await visitor.locator("#text").inputValue(), tooLong, "kept in the input");

  await visitor.locator("#text").press("Backspace");
  assert.match(await notice.textContent(), /Remove 1 character\.$/);
  await visitor.locator("#text").press("Backspace");
  await notice.waitFor({ state: "hidden" });
  assert.equal(await visitor.locator("#text").getAttribute("aria-invalid"), null);
  await visitor.locator("#text").press("Enter");
  await visitor.locator("#log .msg[data-role='visitor'][data-seq]").waitFor();
  // The service counts characters (code points): MAX emoji are MAX characters, not 2 × MAX.
  await visitor.locator("#text").click();
  await visitor.keyboard.insertText("😀".repeat(MAX_TEXT));
  assert.ok(await notice.isHidden(), "an emoji is one character");
  await visitor.locator("#text").press("Enter");
  await visitor.locator("#log .msg[data-role='visitor'][data-seq]").nth(1).waitFor();
  const token = await visitor.evaluate(() => localStorage.getItem("socketsvc.visitor_token"));
  const stored = (await storedMessages(token)).ack.messages.filter((m) => m.sender.role === "visitor");
  assert.deepEqual(
    stored.map((m) => Array.from(m.text).length),
    [MAX_TEXT, MAX_TEXT],
    "both stored whole",
  );

  // The console learns the limit from the service too (the `queue` snapshot).
  await handoffAndAccept(visitor, agent, cid);
  await agent.locator("#text").click();
  await agent.keyboard.insertText(tooLong);
  const agentNotice = agent.locator("#limit");
  await agentNotice.waitFor({ state: "visible" });
  assert.match(await agentNotice.textContent(), new RegExp(`${MAX_TEXT + 2} characters, the limit is ${MAX_TEXT}\\.`));
  await shooter(agent, "polish-limit")("agent-notice");
  await agent.locator("#text").press("Enter");
  await sleep(500);
  assert.equal(await agent.locator("#log .msg[data-role='agent']").count(), 0, "the console did not send it");
  assert.equal(await agent.locator("#text").inputValue(), tooLong, "kept in the console's input");
  await agent.locator("#text").press("Backspace");
  await agent.locator("#text").press("Backspace");
  await agentNotice.waitFor({ state: "hidden" });
  await agent.locator("#text").press("Enter");
  await visitor.locator("#log .msg[data-role='agent'][data-seq]").waitFor();
});

test("the service's own too_large refusal shows on the bubble", { timeout: 60_000 }, async (t) => {
  // A page that believes in a larger limit (here: the session's max_text_length rewritten on the
  // way, over long-polling) sends the text; the service refuses it and the bubble says why.
  const page = await newPage(t, { viewport: { width: 800, height: 900 } });
  await page.route("**/socket.io/**", async (route) => {
    try {
      const response = await route.fetch({ timeout: 0 }); // a long-poll is held up to 25 s
      const body = (await response.text()).replace(/"max_text_length":\s*\d+/g, '"max_text_length": 4000');
      await route.fulfill({ response, body });
    } catch {
      // the page is closing: a long-poll held open by the service is dropped
    }
  });
  await page.goto(`${BASE_URL}/?transport=polling`);
  await page.locator('#log .msg[data-seq="1"]').waitFor();
  await page.locator("#text").click();
  await page.keyboard.insertText("y".repeat(MAX_TEXT + 1));
  assert.ok(await page.locator("#composer-limit").isHidden(), "this page thinks 4000 is the limit");
  await page.locator("#text").press("Enter");
  const failed = page.locator("#log .msg.failed");
  await failed.waitFor();
  assert.equal(
    await failed.locator(".msg-status").textContent(),
    `Not sent: Longer than the maximum of ${MAX_TEXT} characters.`,
  );
  await shooter(page, "polish-limit")("service-refusal");
});

test("a log being read stays put when messages arrive; a button goes to them; at the end it follows", { timeout: 120_000 }, async (t) => {
  const agent = await consolePage(t, "Scroller");
  const [visitor, cid] = await widgetPage(t);
  await handoffAndAccept(visitor, agent, cid);

  // Enough history to scroll, on both screens.
  for (let i = 1; i <= 14; i++) {
    await agent.locator("#text").fill(`Agent note ${i}: here is a line of history to scroll through.`);
    await agent.locator("#text").press("Enter");
    await visitor.locator("#text").fill(`Visitor line ${i}, also history.`);
    await visitor.locator("#text").press("Enter");
  }
  await visitor.locator("#log .msg[data-seq]", { hasText: "Visitor line 14," }).waitFor();
  await agent.locator("#log .msg[data-seq]", { hasText: "Visitor line 14," }).waitFor();
  await visitor.locator("#log .msg[data-seq]", { hasText: "Agent note 14:" }).waitFor();

  for (const [reader, writer, who] of [
    [visitor, agent, "visitor"],
    [agent, visitor, "agent"],
  ]) {
    const shot = shooter(reader, `polish-scroll-${who}`);
    assert.ok((await scrollOf(reader)).scrollable, `${who}: the log has history to scroll`);
    assert.ok((await scrollOf(reader)).fromEnd <= 2, `${who}: the log starts at the end`);
    await readHistory(reader);

    await writer.locator("#text").fill(`While you read (${who}) 1`);
    await writer.locator("#text").press("Enter");
    await reader.locator("#log .msg[data-seq]", { hasText: `While you read (${who}) 1` }).waitFor();
    await writer.locator("#text").fill(`While you read (${who}) 2`);
    await writer.locator("#text").press("Enter");
    await reader.locator("#log .msg[data-seq]", { hasText: `While you read (${who}) 2` }).waitFor();
    await sleep(200);
    assert.equal((await scrollOf(reader)).top, 0, `${who}: new messages did not move the log being read`);
    const jump = reader.locator("#jump");
    await jump.waitFor({ state: "visible" });
    assert.equal(await jump.textContent(), "2 new messages ↓");
    const file = await shot("new-messages");
    if (who === "agent") publishShot(file, "agent-new-messages");

    await jump.click();
    await jump.waitFor({ state: "hidden" });
    assert.ok((await scrollOf(reader)).fromEnd <= 2, `${who}: the button goes to the end`);

    // At the end, the log follows what arrives.
    await writer.locator("#text").fill(`Back at the end (${who})`);
    await writer.locator("#text").press("Enter");
    await reader.locator("#log .msg[data-seq]", { hasText: `Back at the end (${who})` }).waitFor();
    await sleep(100);
    assert.ok((await scrollOf(reader)).fromEnd <= 2, `${who}: at the end, the log follows`);
    assert.ok(await jump.isHidden());
  }
});

test("date separators: each day of the history is marked, in the browser's locale", { timeout: 60_000 }, async (t) => {
  const agent = await consolePage(t, "Calendar");
  const [visitor, cid] = await widgetPage(t);
  await visitor.locator("#text").fill("what is socketsvc"); // seq 2, the bot's answer seq 3
  await visitor.locator("#text").press("Enter");
  await visitor.locator('#log .msg[data-seq="3"]').waitFor();
  await visitor.locator("#text").fill("and how do I install it"); // seq 4, the answer seq 5
  await visitor.locator("#text").press("Enter");
  await visitor.locator('#log .msg[data-seq="5"]').waitFor();
  // Written a week ago and yesterday, as far as the database knows.
  const week = 8;
  for (const [seqs, days] of [
    [[1, 2, 3], week],
    [[4, 5], 1],
  ]) {
    const res = await fetch(`${CONTROL_URL}/backdate`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ conversation_id: cid, seqs, days }),
    });
    assert.equal((await res.json()).changed, seqs.length);
  }
  await handoffAndAccept(visitor, agent, cid); // the handoff note (seq 6) and the join note: today

  // The browser's own formatting of that day, in its locale (en-GB here): "Tuesday 24 November".
  const weekLabel = await agent.evaluate((days) => {
    const then = new Date(Date.now() - days * 86_400_000);
    const options = { weekday: "long", day: "numeric", month: "long" };
    if (then.getFullYear() !== new Date().getFullYear()) options.year = "numeric";
    return new Intl.DateTimeFormat("en-GB", options).format(then);
  }, week);
  assert.match(weekLabel, /^[A-Z][a-z]+day \d{1,2} [A-Z][a-z]+( \d{4})?$/, `an en-GB date: ${weekLabel}`);
  const expected = [
    [weekLabel, "1"],
    ["Yesterday", "4"],
    ["Today", "6"],
  ];
  /** Each separator's label and the seq of the message right after it. */
  const separators = (page) =>
    page.locator("#log .day-sep").evaluateAll((seps) =>
      seps.map((s) => [s.textContent, s.nextElementSibling && s.nextElementSibling.getAttribute("data-seq")]),
    );

  // The console: the history from the accept ack.
  await agent.locator("#log .msg[data-seq='6']").waitFor();
  assert.deepEqual(await separators(agent), expected, "the console's separators");
  await agent.locator("#text").fill("Hello! Looking at your question from last week.");
  await agent.locator("#text").press("Enter");
  await agent.locator("#log .msg[data-role='agent'][data-seq]").waitFor();
  assert.deepEqual(await separators(agent), expected, "today's new message needs no new separator");
  await agent.locator("#log").evaluate((log) => {
    log.scrollTop = 0; // the screenshot shows where the history starts
  });
  publishShot(await shooter(agent, "polish-days")("agent"), "agent-date-separators");

  // The widget, after a reload: the history from `sync`.
  await visitor.reload();
  await visitor.locator("#log .msg[data-role='agent'][data-seq]").waitFor();
  assert.deepEqual(await separators(visitor), expected, "the widget's separators");
  await shooter(visitor, "polish-days")("visitor");
});

test("conversation items have a visible focus ring; Enter opens one", { timeout: 60_000 }, async (t) => {
  const agent = await consolePage(t, "Keyboard");
  const first = await queuedVisitor(t, ["first conversation"]);
  const firstVisitor = queuedVisitor.last;
  const second = await queuedVisitor(t, ["second conversation"]);
  for (const cid of [first, second]) {
    await agent.locator(`#queue button.accept[data-conversation-id="${cid}"]`).click();
    await agent.locator(`#chat-main[data-conversation-id="${cid}"]`).waitFor();
  }
  await agent.locator(`#mine .item-btn[data-conversation-id="${first}"]`).waitFor();

  // From the top of the page, by keyboard only, until the first conversation item has the focus.
  await agent.locator("#sign-out").focus();
  let focused = null;
  for (let i = 0; i < 40 && focused !== first; i++) {
    await agent.keyboard.press("Tab");
    focused = await agent.evaluate(() =>
      document.activeElement && document.activeElement.classList.contains("item-btn")
        ? document.activeElement.getAttribute("data-conversation-id")
        : null,
    );
  }
  assert.equal(focused, first, "the conversation item is reachable with Tab");
  const ring = await agent.locator(`#mine .item-btn[data-conversation-id="${first}"]`).evaluate((b) => {
    const cs = getComputedStyle(b);
    const card = getComputedStyle(b.closest(".item"));
    return {
      focusVisible: b.matches(":focus-visible"),
      style: cs.outlineStyle,
      width: parseFloat(cs.outlineWidth),
      offset: parseFloat(cs.outlineOffset),
      color: cs.outlineColor,
      cardClips: card.overflow !== "visible",
      cardShadow: card.boxShadow,
    };
  });
  assert.ok(ring.focusVisible, "keyboard focus is :focus-visible");
  assert.equal(ring.style, "solid", `an outline is drawn: ${JSON.stringify(ring)}`);
  assert.ok(ring.width >= 2, `at least 2 px wide: ${JSON.stringify(ring)}`);
  assert.equal(ring.color, "rgb(79, 70, 229)", "in the brand colour (contrast over 3:1 on white)");
  assert.ok(!ring.cardClips || ring.offset <= -ring.width, `inside the card, which clips: ${JSON.stringify(ring)}`);
  assert.match(ring.cardShadow, /199, 210, 254/, "the card shows the focus as well");
  publishShot(await shooter(agent, "polish-focus")("item"), "agent-focus-ring");

  // The lists are drawn again when a message arrives (here: an unread count): the focus stays.
  await firstVisitor.timeout(10_000).emitWithAck("message", { client_id: unique("f"), text: "still there?" });
  await agent.locator(`#mine .item-btn[data-conversation-id="${first}"] .unread`).waitFor();
  assert.equal(
    await agent.evaluate(() => {
      const a = document.activeElement;
      return a && a.matches(".item-btn:focus-visible") ? a.getAttribute("data-conversation-id") : null;
    }),
    first,
    "the redrawn item keeps the keyboard focus",
  );

  await agent.keyboard.press("Enter");
  await agent.locator(`#chat-main[data-conversation-id="${first}"]`).waitFor();
  assert.equal(await agent.locator("#chat-title").textContent(), await agent.locator(`#mine .item-btn[data-conversation-id="${first}"] .item-name`).textContent());

  // Queue cards: the Accept button's focus shows on the card.
  const third = await queuedVisitor(t, ["third conversation"]);
  const accept = agent.locator(`#queue button.accept[data-conversation-id="${third}"]`);
  await accept.waitFor();
  await accept.focus();
  await agent.keyboard.press("Shift+Tab");
  await agent.keyboard.press("Tab"); // keyboard focus, so :focus-visible
  assert.match(
    await agent.locator(`#queue .item[data-conversation-id="${third}"]`).evaluate((c) => getComputedStyle(c).boxShadow),
    /199, 210, 254/,
    "the queue card shows its Accept button's focus",
  );
  await agent.keyboard.press("Enter");
  await agent.locator(`#chat-main[data-conversation-id="${third}"]`).waitFor();
});

test("queue cards show the visitor's first question", { timeout: 60_000 }, async (t) => {
  const agent = await consolePage(t, "Queue");
  const question = "Where is my parcel #1234? It was due on Monday and the tracking page is blank.";
  const cid = await queuedVisitor(t, [question, "hello??"]);
  const long = "I was charged twice. ".repeat(12).trim(); // 251 characters: the service sends 200 and "…"
  const longCid = await queuedVisitor(t, [long]);

  const card = agent.locator(`#queue .item[data-conversation-id="${cid}"]`);
  await card.waitFor();
  assert.equal(await card.locator(".item-first").textContent(), question);
  assert.equal(await card.locator(".item-last").textContent(), "hello??", "and what they wrote last");
  const longCard = agent.locator(`#queue .item[data-conversation-id="${longCid}"]`);
  assert.equal(await longCard.locator(".item-first").textContent(), long.slice(0, 200) + "…");
  assert.equal(await longCard.locator(".item-last").count(), 0, "not twice when the first is the last");
  const lines = await longCard.locator(".item-first").evaluate((p) => {
    const cs = getComputedStyle(p);
    return p.getBoundingClientRect().height / parseFloat(cs.lineHeight);
  });
  assert.ok(lines <= 2.05, `clamped to two lines on the card (${lines.toFixed(2)})`);

  // A console that connects later gets it from the `queue` snapshot.
  const later = await consolePage(t, "Later");
  const again = later.locator(`#queue .item[data-conversation-id="${cid}"] .item-first`);
  await again.waitFor();
  assert.equal(await again.textContent(), question);
  publishShot(await shooter(later, "polish-queue")("cards"), "agent-queue-cards");
  for (const id of [cid, longCid]) {
    await later.locator(`#queue button.accept[data-conversation-id="${id}"]`).click();
    await later.locator(`#chat-main[data-conversation-id="${id}"]`).waitFor();
  }
});

test("the landing page fits a 375 px phone, the widget's buttons on screen", { timeout: 60_000 }, async (t) => {
  const page = await newPage(t, {
    viewport: { width: 375, height: 667 },
    isMobile: true,
    hasTouch: true,
    deviceScaleFactor: 2,
  });
  await page.goto(`${BASE_URL}/`);
  await page.locator("#panel").waitFor({ state: "visible" });
  await page.locator('#log .msg[data-seq="1"]').waitFor();
  const widths = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  console.log(`375 px phone: scrollWidth ${widths.scrollWidth}, innerWidth ${widths.innerWidth}`);
  assert.ok(widths.scrollWidth <= 375, `the page is ${widths.scrollWidth} px wide`);
  assert.equal(widths.innerWidth, 375, "the layout viewport is the phone's width");

  /** Every id is fully inside the 375 × 667 screen. */
  async function onScreen(ids) {
    for (const id of ids) {
      const box = await page.locator(`#${id}`).boundingBox();
      assert.ok(box, `#${id} is shown`);
      const inside = box.x >= 0 && box.y >= 0 && box.x + box.width <= 375 && box.y + box.height <= 667;
      assert.ok(inside, `#${id} is on screen: ${JSON.stringify(box)}`);
    }
  }
  await onScreen(["bubble", "close", "text", "send", "handoff"]);
  publishShot(await shooter(page, "polish-375")("widget-open"), "landing-375");
  await page.locator("#close").click();
  await page.locator("#panel").waitFor({ state: "hidden" });
  await onScreen(["bubble"]);
  await shooter(page, "polish-375")("widget-closed");
});
