// The visitor widget draws a streamed bot reply (`message_delta`) as it grows, then replaces the
// draft with the stored message. Run by tests/e2e/test_llm_widget.py, which starts the service
// with BOT=openai against a local OpenAI-compatible streaming server; SOCKETSVC_LLM_ANSWER is the
// whole answer that server streams.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { after, before, test } from "node:test";

import { BASE_URL, launchBrowser, shooter, watch } from "./demo_helpers.mjs";

const ANSWER = process.env.SOCKETSVC_LLM_ANSWER ?? "";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test("the widget shows the LLM reply growing, then the stored message", { timeout: 60_000 }, async (t) => {
  assert.ok(ANSWER, "SOCKETSVC_LLM_ANSWER is set");
  const context = await browser.newContext({ viewport: { width: 800, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const seen = watch(page);
  const shot = shooter(page, "llm-widget");
  const log = page.locator("#log");
  const msg = (seq) => log.locator(`.msg[data-seq="${seq}"]`);

  await page.goto(`${BASE_URL}/`);
  await msg(1).waitFor();

  // Record every text the draft bubble shows, from inside the widget's shadow root.
  await page.evaluate(() => {
    const root = document.querySelector("socketsvc-widget").shadowRoot;
    const lengths = [];
    window.__draftLengths = lengths;
    new window.MutationObserver(() => {
      const draft = root.querySelector("#log .msg.draft .msg-text");
      if (draft && lengths[lengths.length - 1] !== draft.textContent.length) lengths.push(draft.textContent.length);
    }).observe(root.querySelector("#log"), { childList: true, subtree: true, characterData: true });
  });

  await page.locator("#text").fill("what is socketsvc");
  await page.locator("#send").click();
  await msg(2).waitFor();
  await log.locator(".msg.draft").waitFor();
  await shot("draft");
  await msg(3).waitFor();
  await shot("stored");

  const lengths = await page.evaluate(() => window.__draftLengths);
  if (process.env.SOCKETSVC_LLM_REPORT) writeFileSync(process.env.SOCKETSVC_LLM_REPORT, JSON.stringify(lengths));
  assert.ok(lengths.length >= 2, `the draft was seen at least twice: ${JSON.stringify(lengths)}`);
  for (let i = 1; i < lengths.length; i++) {
    assert.ok(lengths[i] > lengths[i - 1], `the draft only grows: ${JSON.stringify(lengths)}`);
  }
  assert.equal(await msg(3).getAttribute("data-role"), "bot");
  assert.equal((await msg(3).locator(".msg-text").textContent()).trim(), ANSWER);
  assert.equal(await log.locator(".msg.draft").count(), 0, "the stored message replaced the draft");
  assert.equal(await log.locator(".msg[data-role='bot']").count(), 2, "greeting and one reply");
  assert.deepEqual(seen.problems, []);
  assert.deepEqual(seen.foreign, []);
});
