// Shared helpers of the browser tests of the demo pages (widget and agent console).
// Not a test file itself (node --test only runs *.test.mjs).
import { copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import assert from "node:assert/strict";

import { chromium } from "playwright-core";
import { io } from "socket.io-client";

export const BASE_URL = (process.env.SOCKETSVC_URL ?? "").replace(/\/+$/, "");
if (!BASE_URL) {
  throw new Error(
    "SOCKETSVC_URL is not set: point it at a running socketsvc, e.g. SOCKETSVC_URL=http://127.0.0.1:8080",
  );
}
export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const SHOTS = path.join(ROOT, "artifacts", "screenshots");
export const DOC_SHOTS = path.join(ROOT, "docs", "screenshots");
export const WAIT_MS = 15_000;
export const XSS = "<img src=x onerror=alert(1)>";

export async function launchBrowser() {
  mkdirSync(SHOTS, { recursive: true });
  return chromium.launch({
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
}

/**
 * Record what must never happen on a demo page: page errors, console errors, dialogs (a script
 * from message text would alert()), and requests to any other origin (no CDN, no fonts, nothing).
 */
export function watch(page) {
  const seen = { problems: [], dialogs: [], foreign: [] };
  page.setDefaultTimeout(WAIT_MS);
  page.on("pageerror", (err) => seen.problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") seen.problems.push(`console error: ${msg.text()}`);
  });
  page.on("dialog", async (d) => {
    seen.dialogs.push(d.message());
    await d.dismiss();
  });
  page.on("request", (req) => {
    const u = req.url();
    if (!u.startsWith(`${BASE_URL}/`) && !u.startsWith("data:")) seen.foreign.push(u);
  });
  return seen;
}

/** `shot(step)` saves artifacts/screenshots/<test>-<step>.png. */
export function shooter(page, test) {
  return async (step) => {
    const file = path.join(SHOTS, `${test}-${step}.png`);
    await page.screenshot({ path: file });
    return file;
  };
}

/** With SOCKETSVC_UPDATE_DOC_SCREENSHOTS=1, copy a screenshot to docs/screenshots/<name>.png. */
export function publishShot(file, name) {
  if (process.env.SOCKETSVC_UPDATE_DOC_SCREENSHOTS !== "1") return;
  mkdirSync(DOC_SHOTS, { recursive: true });
  copyFileSync(file, path.join(DOC_SHOTS, `${name}.png`));
}

/** The claims of a JWT (no verification: only to know which agent a test signs in as). */
export function jwtClaims(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
}

/**
 * Everything the service stored for the visitor holding `token`, read with the official client:
 * `{session, ack}`, where `ack` is the `sync` answer with every message (paged through).
 */
export async function storedMessages(token) {
  const socket = io(`${BASE_URL}/chat`, {
    forceNew: true,
    reconnection: false,
    transports: ["websocket"],
    auth: { visitor_token: token },
  });
  try {
    const session = await new Promise((resolve, reject) => {
      socket.once("session", resolve);
      socket.once("connect_error", reject);
    });
    const messages = [];
    for (;;) {
      const after = messages.length ? messages[messages.length - 1].seq : 0;
      const ack = await socket.timeout(10_000).emitWithAck("sync", { after_seq: after, limit: 500 });
      assert.equal(ack.ok, true, `sync ack ${JSON.stringify(ack)}`);
      messages.push(...ack.messages);
      if (!ack.messages.length || messages[messages.length - 1].seq >= ack.last_seq) {
        return { session, ack: { ...ack, messages } };
      }
    }
  } finally {
    socket.close();
  }
}
