// The light-markdown renderer of client-demo/format.js in headless Chromium (Debian's
// /usr/bin/chromium through playwright-core): code, links, lists and bold become elements, and
// HTML or script in a message stays text. No service: the page and the module are served to the
// browser from client-demo/ by request interception.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const ORIGIN = "http://format.test";
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

/** @type {import("playwright-core").Browser} */
let browser;
/** @type {import("playwright-core").Page} */
let page;

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  page = await browser.newPage();
  await page.route(`${ORIGIN}/**`, (route) => {
    const name = new URL(route.request().url()).pathname;
    if (name === "/format.js") {
      return route.fulfill({
        contentType: "text/javascript",
        body: readFileSync(path.join(ROOT, "client-demo", "format.js"), "utf8"),
      });
    }
    return route.fulfill({ contentType: "text/html", body: "<!doctype html><title>t</title><div id=out></div>" });
  });
  await page.goto(`${ORIGIN}/`);
  page.on("dialog", (d) => {
    throw new Error(`a dialog opened: ${d.message()}`);
  });
});

after(async () => {
  await browser?.close();
});

/** Render `text` as a bot bubble; returns the .msg-text element's outerHTML and facts. */
async function render(text, role = "bot") {
  return page.evaluate(
    async ([text, role]) => {
      const { buildMessageNode } = await import("/format.js");
      const out = document.getElementById("out");
      out.replaceChildren(buildMessageNode(role, "Bot", text, "visitor"));
      const body = out.querySelector(".msg-text");
      return {
        html: body.innerHTML,
        text: body.textContent,
        tags: Array.from(body.querySelectorAll("*"), (e) => e.tagName.toLowerCase()),
        links: Array.from(body.querySelectorAll("a"), (a) => ({
          href: a.getAttribute("href"),
          target: a.getAttribute("target"),
          rel: a.getAttribute("rel"),
          text: a.textContent,
        })),
        attrs: Array.from(body.querySelectorAll("*"), (e) => e.getAttributeNames()).flat(),
        pwned: Boolean(/** @type {any} */ (window).pwned),
      };
    },
    [text, role],
  );
}

test("inline code, bold and a safe link become elements", async () => {
  const r = await render("Run `make test`, see **the docs** at [Shipping](https://shop.example.com/help?a=1&b=2).");
  assert.deepEqual(r.tags, ["p", "code", "strong", "a"]);
  assert.equal(r.text, "Run make test, see the docs at Shipping.");
  assert.deepEqual(r.links, [
    { href: "https://shop.example.com/help?a=1&b=2", target: "_blank", rel: "noopener noreferrer", text: "Shipping" },
  ]);
});

test("lists and paragraphs", async () => {
  const r = await render("We accept:\n\n- Visa\n- PayPal\n\nThen:\n1. Open [orders](mailto:help@example.com).\n2. Press **Cancel**.");
  assert.deepEqual(r.tags, ["p", "ul", "li", "li", "p", "ol", "li", "a", "li", "strong"]);
  assert.equal(r.links[0].href, "mailto:help@example.com");
});

test("an XSS attempt is rendered as text", async () => {
  const xss = '<img src=x onerror="window.pwned=1"> <script>window.pwned=1</script> `<b>x</b>`';
  const r = await render(xss);
  assert.deepEqual(r.tags, ["p", "code"]);
  assert.equal(r.text, '<img src=x onerror="window.pwned=1"> <script>window.pwned=1</script> <b>x</b>');
  assert.equal(r.pwned, false);
});

test("links with other schemes, or HTML in them, stay text", async () => {
  for (const href of ["javascript:window.pwned=1", "data:text/html,<script>1</script>", "JaVaScRiPt:alert(1)", "/relative", "vbscript:x"]) {
    const r = await render(`[click](${href})`);
    assert.deepEqual(r.links, [], href);
    assert.equal(r.text, `[click](${href})`, href);
  }
  const r = await render('[<img src=x onerror="window.pwned=1">](https://example.com/" onmouseover="x)');
  assert.ok(r.links.every((l) => l.href.startsWith("https://example.com/")), JSON.stringify(r.links));
  assert.deepEqual(r.attrs.sort(), r.links.length ? ["href", "rel", "target"] : []);
  assert.equal(r.pwned, false);
});

test("visitor messages are plain text, markdown included", async () => {
  const r = await render("- not a list `nor code`", "visitor");
  assert.deepEqual(r.tags, []);
  assert.equal(r.text, "- not a list `nor code`");
});
