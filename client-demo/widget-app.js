// @ts-check
/* socketsvc chat widget: the widget itself, loaded by widget.js (the one-tag embed) with import()
 * from the service's origin, with the modules it shares with the agent console:
 *   conversation.js (seq ordering, sync on gaps, dedupe by client_id, read marks, typing),
 *   format.js (elements, storage, times, message bubbles) and outbox.js (the ordered outbox).
 *
 * The client habits it demonstrates (see docs/client-demo.md):
 *   - reconnect with exponential backoff and jitter (RECONNECT_OPTIONS);
 *   - resync with `sync` after every (re)connect and whenever a message's seq skips one;
 *   - optimistic sends with a client_id through an ordered outbox (outbox.js): one message on the
 *     wire at a time, re-sent with the SAME client_id after a refusal, a reconnect or an ack
 *     timeout, so the service stores each message exactly once and in the order it was written;
 *   - the browser's offline/online events and ack timeouts close and reopen the connection at
 *     once, instead of waiting ~45 s for the heartbeat to notice;
 *   - messages ordered by seq and deduplicated by seq.
 * Everything is rendered with textContent / createElement, never as HTML, and lives in a Shadow DOM
 * root so that the host page's CSS cannot break it (nor its CSS the host page).
 */

import {
  ACK_TIMEOUT_MS,
  Conversation,
  DEFAULT_MAX_TEXT,
  LocalTyping,
  RECONNECT_OPTIONS,
  RemoteTyping,
  claimPending,
  isConnected,
  isMessage,
  pageOutbox,
  reconnectNow,
  refusedRetryDelay,
  restartTransport,
  transportName,
} from "./conversation.js";
import { Drafts } from "./drafts.js";
import {
  appendNode,
  buildMessageNode,
  composer,
  fitHeight,
  followEnd,
  h,
  markDays,
  newClientId,
  renderLimit as showLimit,
  pendingMessageNode,
  placeNode,
  refusalText,
  scrollToEnd,
  sessionGet,
  sessionSet,
  stickToEnd,
  storageGet,
  storageSet,
  watchLog,
} from "./format.js";

/** @typedef {import("./conversation.js").Socket} Socket */
/** @typedef {import("./conversation.js").Message} Message */

const TOKEN_KEY = "socketsvc.visitor_token";
const READ_KEY = "socketsvc.visitor_read";
const OPEN_KEY = "socketsvc.widget_open";

const SVG_NS = "http://www.w3.org/2000/svg";
const ICONS = {
  chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z",
  close: "M6 6l12 12M18 6L6 18",
  send: "M3 11.5L21 3l-8.5 18-2.2-7.3L3 11.5z",
};

/**
 * @param {keyof typeof ICONS} name
 * @param {boolean} [filled]
 */
function icon(name, filled) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "22");
  svg.setAttribute("height", "22");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", ICONS[name]);
  path.setAttribute("fill", filled ? "currentColor" : "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "2");
  path.setAttribute("stroke-linecap", "round");
  path.setAttribute("stroke-linejoin", "round");
  svg.appendChild(path);
  return svg;
}

// ---- styles (inside the shadow root) -------------------------------------------------------

const CSS = [
  // !important here wins over the page's own !important rules for the host element (the page's
  // normal rules would otherwise beat :host); everything else is out of the page's reach.
  ":host { all: initial !important; display: block !important; position: fixed !important;",
  "  right: 20px !important; bottom: 20px !important; z-index: 2147483000 !important;",
  "  visibility: visible !important; opacity: 1 !important; }",
  ".root { all: initial; display: block; text-align: left; direction: ltr;",
  "  font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif;",
  "  color: #172033; --brand: #4f46e5; --brand-dark: #4338ca; --ink: #172033; --muted: #667085;",
  "  --line: #e4e7ec; --bg: #f6f7fb; --ok: #027a48; --warn: #b54708; --bad: #b42318; }",
  ".root input, .root textarea, .root button { font-family: inherit; }",
  "*, *::before, *::after { box-sizing: border-box; }",
  "[hidden] { display: none !important; }",
  "button { font: inherit; cursor: pointer; }",
  ".sr-only { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden;",
  "  clip: rect(0 0 0 0); white-space: nowrap; border: 0; }",
  ".bubble { position: relative; display: grid; place-items: center; width: 60px; height: 60px; margin-left: auto;",
  "  border: 0; border-radius: 50%; color: #fff; background: linear-gradient(135deg, #6366f1, #4338ca);",
  "  box-shadow: 0 10px 25px rgba(67, 56, 202, .35), 0 2px 6px rgba(16, 24, 40, .2); transition: transform .15s; }",
  ".bubble:hover { transform: translateY(-2px); }",
  ".bubble:focus-visible, .icon-btn:focus-visible, .send:focus-visible, .human:focus-visible, .jump:focus-visible {",
  "  outline: 3px solid #a5b4fc; outline-offset: 2px; }",
  ".bubble svg { width: 28px; height: 28px; }",
  ".badge { position: absolute; top: -2px; right: -2px; min-width: 22px; height: 22px; padding: 0 6px;",
  "  border-radius: 11px; background: #f04438; color: #fff; font-size: 12px; font-weight: 700;",
  "  line-height: 22px; text-align: center; box-shadow: 0 0 0 2px #fff; }",
  ".panel { display: flex; flex-direction: column; width: min(380px, calc(100vw - 40px));",
  "  height: min(600px, calc(100vh - 110px)); height: min(600px, calc(100dvh - 110px));",
  "  margin-bottom: 14px; overflow: hidden; border-radius: 18px;",
  "  background: #fff; box-shadow: 0 24px 60px rgba(16, 24, 40, .25), 0 0 0 1px rgba(16, 24, 40, .06);",
  "  animation: pop .18s ease-out; }",
  "@keyframes pop { from { opacity: 0; transform: translateY(10px) scale(.98); } }",
  ".head { display: flex; align-items: center; gap: 12px; padding: 16px 14px 14px 18px; color: #fff;",
  "  background: linear-gradient(135deg, #6366f1, #4338ca); }",
  ".avatar { flex: none; display: grid; place-items: center; width: 40px; height: 40px; border-radius: 50%;",
  "  background: rgba(255, 255, 255, .18); font-weight: 700; font-size: 17px; }",
  ".head-text { flex: 1; min-width: 0; }",
  ".title { margin: 0; font-size: 16px; font-weight: 650; letter-spacing: .01em; }",
  ".sub { margin: 1px 0 0; font-size: 13px; opacity: .9; display: flex; align-items: center; gap: 6px; }",
  ".dot { width: 8px; height: 8px; border-radius: 50%; background: #fbbf24; }",
  "#connection[data-connected='true'] .dot { background: #4ade80; }",
  ".icon-btn { display: grid; place-items: center; width: 34px; height: 34px; border: 0; border-radius: 10px;",
  "  color: #fff; background: transparent; }",
  ".icon-btn:hover { background: rgba(255, 255, 255, .15); }",
  ".icon-btn svg { width: 18px; height: 18px; }",
  ".state { margin: 0; padding: 9px 18px; font-size: 13px; border-bottom: 1px solid var(--line);",
  "  background: #eef2ff; color: #3730a3; }",
  ".state[data-state='queued'] { background: #fffaeb; color: var(--warn); }",
  ".state[data-state='assigned'] { background: #ecfdf3; color: var(--ok); }",
  ".state[data-state='resolved'] { background: #f2f4f7; color: #344054; }",
  ".state strong { font-weight: 650; }",
  ".reconnecting { margin: 0; padding: 8px 18px; font-size: 13px; font-weight: 600; color: #fff;",
  "  background: #b54708; display: flex; align-items: center; gap: 8px; }",
  ".spinner { width: 12px; height: 12px; border: 2px solid rgba(255,255,255,.45); border-top-color: #fff;",
  "  border-radius: 50%; animation: spin .8s linear infinite; }",
  "@keyframes spin { to { transform: rotate(360deg); } }",
  ".log { flex: 1; overflow-y: auto; padding: 16px 14px 8px; display: flex; flex-direction: column; gap: 8px;",
  "  background: var(--bg); }",
  ".log:focus-visible { outline: 2px solid #a5b4fc; outline-offset: -2px; }",
  ".msg { max-width: 82%; align-self: flex-start; display: flex; flex-direction: column; gap: 2px; }",
  ".msg-sender { font-size: 12px; font-weight: 600; color: var(--muted); padding-left: 4px; }",
  ".msg-text { margin: 0; padding: 9px 13px; border-radius: 16px 16px 16px 4px; white-space: pre-wrap;",
  "  overflow-wrap: anywhere; background: #fff; box-shadow: 0 1px 2px rgba(16, 24, 40, .08); }",
  ".msg[data-role='agent'] .msg-text { background: #ecfdf3; box-shadow: inset 0 0 0 1px #abefc6; }",
  ".msg-text p { margin: 0; } .msg-text p + p, .msg-text ul, .msg-text ol { margin: 6px 0 0; }",
  ".msg-text ul, .msg-text ol { padding-left: 20px; white-space: normal; } .msg-text > :first-child { margin-top: 0; }",
  ".msg-text code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, monospace; background: rgba(16, 24, 40, .07);",
  "  padding: 1px 4px; border-radius: 4px; } .msg-text a { color: inherit; text-decoration: underline; }",
  ".msg[data-role='visitor'] { align-self: flex-end; align-items: flex-end; }",
  ".msg[data-role='visitor'] .msg-sender { display: none; }",
  ".msg[data-role='visitor'] .msg-text { color: #fff; background: var(--brand); border-radius: 16px 16px 4px 16px; }",
  ".msg[data-role='system'] { align-self: center; max-width: 92%; text-align: center; }",
  ".msg.draft .msg-text::after { content: '▍'; margin-left: 1px; opacity: .6; }",
  ".msg[data-role='system'] .msg-sender { display: none; }",
  ".msg[data-role='system'] .msg-text { font-size: 12.5px; color: var(--muted); background: transparent;",
  "  box-shadow: none; padding: 2px 8px; }",
  ".msg-meta { font-size: 11.5px; color: var(--muted); padding: 0 4px; display: flex; gap: 6px; }",
  ".msg-meta:empty { display: none; }",
  ".msg[data-role='system'] .msg-meta { display: none; }",
  ".msg-status[data-status='pending'] { color: var(--warn); }",
  ".msg-status[data-status='read'] { color: var(--brand); font-weight: 600; }",
  ".msg-status[data-status='failed'] { color: var(--bad); font-weight: 600; }",
  ".msg.pending .msg-text { opacity: .65; }",
  ".msg.failed .msg-text { box-shadow: 0 0 0 2px var(--bad); }",
  ".typing { margin: 0; padding: 4px 18px 6px; font-size: 12.5px; color: var(--muted); background: var(--bg);",
  "  display: flex; align-items: center; gap: 8px; }",
  ".dots { display: inline-flex; gap: 3px; }",
  ".dots i { width: 5px; height: 5px; border-radius: 50%; background: #98a2b3; animation: blink 1.2s infinite; }",
  ".dots i:nth-child(2) { animation-delay: .2s; } .dots i:nth-child(3) { animation-delay: .4s; }",
  "@keyframes blink { 0%, 80%, 100% { opacity: .3; } 40% { opacity: 1; } }",
  ".error { margin: 0; padding: 0 16px; font-size: 12.5px; color: var(--bad); background: #fff; }",
  ".error:empty { display: none; }",
  ".error:not(:empty) { padding: 6px 16px 0; }",
  ".composer { display: flex; gap: 8px; align-items: flex-end; padding: 10px 12px 10px 14px;",
  "  border-top: 1px solid var(--line); background: #fff; }",
  ".composer textarea { flex: 1; min-width: 0; margin: 0; padding: 10px 12px; font: inherit; line-height: 20px;",
  "  color: var(--ink); border: 1px solid #d0d5dd; border-radius: 12px; background: #fff; resize: none;",
  "  height: 42px; max-height: 122px; overflow-y: auto; }",
  ".composer textarea:focus { outline: none; border-color: #818cf8; box-shadow: 0 0 0 3px #e0e7ff; }",
  ".composer textarea[aria-invalid='true'] { border-color: var(--bad); box-shadow: 0 0 0 3px #fee4e2; }",
  ".limit { margin: 0; padding: 6px 16px 0; font-size: 12.5px; font-weight: 600; color: var(--bad); background: #fff; }",
  ".jump-wrap { position: relative; height: 0; }",
  ".jump { position: absolute; left: 50%; bottom: 10px; transform: translateX(-50%); z-index: 1; padding: 6px 14px;",
  "  border: 0; border-radius: 999px; color: #fff; background: var(--brand); font-size: 13px; font-weight: 600;",
  "  white-space: nowrap; box-shadow: 0 6px 16px rgba(67, 56, 202, .35); }",
  ".jump:hover { background: var(--brand-dark); }",
  ".day-sep { align-self: stretch; display: flex; align-items: center; gap: 10px; margin: 4px 0;",
  "  font-size: 12px; font-weight: 600; color: var(--muted); }",
  ".day-sep::before, .day-sep::after { content: ''; flex: 1; border-top: 1px solid var(--line); }",
  ".send { flex: none; display: grid; place-items: center; width: 42px; height: 42px; border: 0;",
  "  border-radius: 12px; color: #fff; background: var(--brand); }",
  ".send:hover { background: var(--brand-dark); }",
  ".send svg { width: 18px; height: 18px; }",
  ".foot { display: flex; align-items: center; justify-content: space-between; gap: 8px;",
  "  padding: 0 14px 12px; background: #fff; font-size: 12px; color: var(--muted); }",
  ".human { padding: 6px 12px; border: 1px solid #c7d2fe; border-radius: 999px; color: var(--brand-dark);",
  "  background: #eef2ff; font-size: 13px; font-weight: 600; }",
  ".human:hover:not(:disabled) { background: #e0e7ff; }",
  ".human:disabled { color: #98a2b3; border-color: var(--line); background: #f9fafb; cursor: default; }",
  ".meta b { font-weight: 600; color: #475467; }",
  "@media (prefers-reduced-motion: reduce) { .panel, .spinner, .dots i { animation: none; } }",
].join("\n");

/**
 * Build the widget and start it. Called once by widget.js.
 * @param {object} options
 * @param {string} options.origin  the service's origin (where widget.js came from)
 * @param {HTMLScriptElement | null} options.script  the embedding tag
 * @param {string[]} [options.calls]  open()/close() calls made before the widget was loaded
 */
export function mount(options) {
  const ORIGIN = options.origin;
  const script = options.script;
  const pageParams = new URLSearchParams(window.location.search);

  /** @type {string | null} */
  let forcedTransport = pageParams.get("transport");
  if (forcedTransport !== "polling" && forcedTransport !== "websocket") forcedTransport = null;
  const openAtStart =
    pageParams.get("open") === "1" ||
    (script && script.getAttribute("data-open") === "true") ||
    sessionGet(OPEN_KEY) === "1";

  // ---- the DOM ---------------------------------------------------------------------------------

  // A custom element name: the page's `div { ... }` rules cannot match the host.
  const host = document.createElement("socketsvc-widget");
  host.id = "socketsvc-widget";
  const root = host.attachShadow({ mode: "open" });
  if (root.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === "function") {
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } catch {
      root.appendChild(h("style", { text: CSS }));
    }
  } else {
    root.appendChild(h("style", { text: CSS }));
  }

  const connectionText = h("span", { text: "Connecting…" });
  const reconnectingText = h("span", { text: "Reconnecting…" });
  const typingText = h("span", { class: "typing-text" });
  // A textarea: Shift+Enter starts a new line, Enter sends (format.js `composer`). No maxlength:
  // a pasted text over the limit is kept whole and refused with a notice, never cut silently.
  const text = h("textarea", {
    id: "text",
    name: "text",
    rows: "1",
    autocomplete: "off",
    enterkeyhint: "send",
    placeholder: "Write a message…",
    "aria-describedby": "composer-limit composer-error",
  });
  const send = h("button", { id: "send", class: "send", type: "submit", "aria-label": "Send" }, [icon("send", true)]);
  const el = {
    connection: h("span", { id: "connection", "data-connected": "false" }, [
      h("span", { class: "dot", "aria-hidden": "true" }),
      connectionText,
    ]),
    connectionText,
    close: h("button", { id: "close", class: "icon-btn", type: "button", "aria-label": "Close chat" }, [
      icon("close"),
    ]),
    state: h("p", { id: "state", class: "state", role: "status", "data-state": "" }, ["Connecting…"]),
    reconnecting: h("p", { id: "reconnecting", class: "reconnecting", role: "status", hidden: true }, [
      h("span", { class: "spinner", "aria-hidden": "true" }),
      reconnectingText,
    ]),
    reconnectingText,
    log: h("div", {
      id: "log",
      class: "log",
      role: "log",
      "aria-live": "polite",
      "aria-relevant": "additions text",
      "aria-label": "Conversation",
      tabindex: "0",
    }),
    typing: h("p", { id: "typing", class: "typing", "aria-live": "polite", hidden: true }, [
      h("span", { class: "dots", "aria-hidden": "true" }, [h("i"), h("i"), h("i")]),
      typingText,
    ]),
    typingText,
    error: h("p", { id: "composer-error", class: "error", role: "alert" }),
    limit: h("p", { id: "composer-limit", class: "limit", "aria-live": "polite", hidden: true }),
    jump: h("button", { id: "jump", class: "jump", type: "button", hidden: true }),
    text,
    send,
    form: h("form", { id: "composer", class: "composer", autocomplete: "off" }, [
      h("label", { for: "text", class: "sr-only", text: "Your message" }),
      text,
      send,
    ]),
    handoff: h("button", { id: "handoff", class: "human", type: "button", text: "Talk to a human" }),
    transport: h("b", { id: "transport", text: "none" }),
    badge: h("span", { id: "badge", class: "badge", "aria-hidden": "true", hidden: true }),
    iconChat: icon("chat", false),
    iconClose: icon("close", false),
  };
  const panel = h(
    "section",
    { id: "panel", class: "panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "title", hidden: true },
    [
      h("header", { class: "head" }, [
        h("div", { class: "avatar", "aria-hidden": "true", text: "S" }),
        h("div", { class: "head-text" }, [
          h("h2", { id: "title", class: "title", text: "Support chat" }),
          h("p", { class: "sub" }, [el.connection]),
        ]),
        el.close,
      ]),
      el.state,
      el.reconnecting,
      el.log,
      h("div", { class: "jump-wrap" }, [el.jump]),
      el.typing,
      el.limit,
      el.error,
      el.form,
      h("footer", { class: "foot" }, [el.handoff, h("span", { class: "meta" }, ["via ", el.transport])]),
    ],
  );
  const bubble = h(
    "button",
    {
      id: "bubble",
      class: "bubble",
      type: "button",
      "aria-label": "Open support chat",
      "aria-expanded": "false",
      "aria-controls": "panel",
    },
    [el.iconChat, el.iconClose, el.badge],
  );
  el.iconClose.style.display = "none";
  root.appendChild(h("div", { class: "root" }, [panel, bubble]));

  function mountHost() {
    document.body.appendChild(host);
  }
  if (document.body) mountHost();
  else document.addEventListener("DOMContentLoaded", mountHost);

  // ---- conversation state ----------------------------------------------------------------------

  let token = storageGet(TOKEN_KEY);
  /** @type {Socket | null} */
  let socket = null;
  let everConnected = false;
  /** @type {string | null} */
  let conversationId = null;
  /** @type {string | null} */
  let convState = null;
  /** @type {string | null} */
  let agentName = null;
  /** @type {string | null} */
  let botName = null;
  /** @type {any} */
  let lastStateInfo = null;
  let maxText = DEFAULT_MAX_TEXT; // until the `session` says
  /** @type {boolean | null} from `session` and `availability`: is any agent online? */
  let agentsOnline = null;
  let seenSeq = 0; // the visitor has had everything up to this seq on screen
  /** @type {ReturnType<typeof setTimeout> | null} */
  let readTimer = null;
  let resetOnce = false;
  /** @type {ReturnType<typeof setTimeout> | null} */
  let refusedTimer = null;
  let isOpen = false;
  let networkDown = typeof navigator.onLine === "boolean" && !navigator.onLine;

  const conv = new Conversation(null, {
    socket: () => socket,
    add: addMessage,
    markedRole: "visitor",
    onSyncAck: (ack) => renderStateName(ack.state),
  });
  // The ordered outbox; its items carry the message's element.
  const outbox = pageOutbox({
    socket: () => socket,
    show: showMessage,
    // No ack within 5 s: the link is probably dead (the heartbeat would take ~45 s to say so).
    // Reconnect now; the outbox re-sends with the same client_id after the new `session`.
    onTimeout: () => {
      restartTransport(socket);
      renderConnection();
    },
  });
  const typingBy = new RemoteTyping(renderTyping); // "role:id" -> name
  const drafts = new Drafts(() => el.log, "visitor"); // streamed bot replies being written
  const localTyping = new LocalTyping({ socket: () => socket });

  /** @param {unknown} cid */
  function loadReadSeq(cid) {
    try {
      const saved = JSON.parse(storageGet(READ_KEY) || "null");
      if (saved && saved.conversation_id === cid && Number.isInteger(saved.seq)) return saved.seq;
    } catch {
      /* ignore */
    }
    return 0;
  }

  // ---- rendering -------------------------------------------------------------------------------

  /**
   * Show one stored message (idempotent by seq). Returns true when it was new.
   * @param {Message} msg
   */
  function addMessage(msg) {
    return showMessage(msg, null);
  }

  /**
   * `addMessage`, in `pendingNode` when it is our own message just acked.
   * @param {any} msg
   * @param {Element | null} pendingNode
   */
  function showMessage(msg, pendingNode) {
    if (!isMessage(msg)) return false;
    if (conversationId && msg.conversation_id && msg.conversation_id !== conversationId) return false;
    if (conv.has(msg.seq)) return false;
    const role = msg.sender.role;
    const node =
      pendingNode || claimPending(msg, "visitor", outbox) || buildMessageNode(role, msg.sender.name, msg.text, "visitor");
    conv.record(msg, node);
    if ((role === "bot" || role === "agent") && typeof msg.sender.name === "string") {
      const before = role === "bot" ? botName : agentName;
      if (role === "bot") botName = msg.sender.name;
      else agentName = msg.sender.name;
      // The banner names whoever answers; a resumed session learns the name from the history.
      if (before !== msg.sender.name && convState === (role === "bot" ? "bot" : "assigned")) {
        renderState(lastStateInfo);
      }
    }
    placeNode(el.log, node, msg.seq);
    typingBy.clear(role + ":" + msg.sender.id);
    scheduleRead();
    renderBadge();
    followEnd(el.log); // reading history: the log stays put, a "new messages" button shows
    return true;
  }

  function clearConversation() {
    conv.clear();
    drafts.clear();
    markDays(el.log);
    agentName = null;
  }

  /** @param {any} info  a `state` event, or `{state}` alone */
  function renderState(info) {
    if (!info || typeof info.state !== "string") return;
    lastStateInfo = info;
    convState = info.state;
    if (info.agent && typeof info.agent.name === "string") agentName = info.agent.name;
    el.state.textContent = "";
    const s = info.state;
    if (s === "bot") {
      el.state.append("You're chatting with ", h("strong", { text: botName || "our bot" }), " (bot).");
    } else if (s === "queued") {
      if (Number.isInteger(info.queue_position)) {
        el.state.append("Waiting for an agent · ", h("strong", { text: "#" + info.queue_position }), " in the queue");
      } else {
        el.state.append("Waiting for an agent…");
      }
    } else if (s === "assigned") {
      el.state.append("You're chatting with ", h("strong", { text: agentName || "an agent" }), ".");
    } else if (s === "resolved") {
      el.state.append("This conversation is resolved. Write again any time.");
    } else {
      el.state.append("State: " + s);
    }
    el.state.setAttribute("data-state", s);
    if (Number.isInteger(info.queue_position)) {
      el.state.setAttribute("data-queue-position", String(info.queue_position));
    } else {
      el.state.removeAttribute("data-queue-position");
    }
    updateControls();
  }

  /**
   * A bare state name (session, sync and handoff acks): keep the details a `state` event gave.
   * @param {unknown} name
   */
  function renderStateName(name) {
    if (typeof name === "string" && name !== convState) renderState({ state: name });
  }

  function updateControls() {
    // Sending stays possible offline: the message waits as pending and goes out on reconnect.
    el.handoff.disabled = !isConnected(socket) || convState === "queued" || convState === "assigned";
  }

  function renderConnection() {
    const connected = isConnected(socket) && !networkDown;
    el.connection.setAttribute("data-connected", connected ? "true" : "false");
    // The header tells the truth: a person answers only when an agent is online.
    el.connection.setAttribute("data-agents", connected && agentsOnline !== null ? String(agentsOnline) : "");
    el.connectionText.textContent = !connected
      ? everConnected || networkDown
        ? "Offline"
        : "Connecting…"
      : agentsOnline
        ? "Online · we reply in minutes"
        : agentsOnline === false
          ? "No agent online · the bot is here"
          : "Connected";
    el.reconnecting.hidden = connected || !socket;
    el.reconnectingText.textContent = networkDown
      ? "You are offline. Reconnecting when the network is back…"
      : everConnected
        ? "Connection lost. Reconnecting…"
        : "Connecting…";
    el.transport.textContent = (connected && transportName(socket)) || "none";
    updateControls();
  }

  function renderBadge() {
    let unread = 0;
    if (!isOpen) {
      conv.messages.forEach((m) => {
        if (m.seq > seenSeq && m.sender.role !== "visitor" && m.sender.role !== "system") unread++;
      });
    }
    el.badge.hidden = unread === 0;
    el.badge.textContent = unread > 9 ? "9+" : String(unread);
    bubble.setAttribute(
      "aria-label",
      isOpen ? "Close support chat" : unread ? "Open support chat (" + unread + " unread)" : "Open support chat",
    );
  }

  // ---- typing (shown) --------------------------------------------------------------------------

  function renderTyping() {
    const names = typingBy.names;
    el.typing.hidden = names.length === 0;
    el.typingText.textContent = names.length ? names.join(", ") + (names.length > 1 ? " are" : " is") + " typing…" : "";
    stickToEnd(el.log);
  }

  /** @param {any} ev */
  function onTyping(ev) {
    if (!ev || !ev.sender || ev.sender.role === "visitor") return; // our own, from another tab
    if (conversationId && ev.conversation_id && ev.conversation_id !== conversationId) return;
    const name = typeof ev.sender.name === "string" && ev.sender.name ? ev.sender.name : "Someone";
    typingBy.set(ev.sender.role + ":" + ev.sender.id, name, ev.typing === true);
  }

  // ---- the connection --------------------------------------------------------------------------

  /** @param {(url: string, options: object) => any} io */
  function connect(io) {
    /** @type {Record<string, unknown>} */
    const ioOptions = {
      ...RECONNECT_OPTIONS,
      // A function, so that every (re)connect presents the latest token.
      auth: (/** @type {(auth: object) => void} */ cb) => cb(token ? { visitor_token: token } : {}),
    };
    // ?transport=polling on the page's URL: long-polling only (e.g. behind a proxy without WebSocket).
    if (forcedTransport) ioOptions.transports = [forcedTransport];
    const sock = io(ORIGIN + "/chat", ioOptions);
    socket = sock;

    // Every (re)opened Engine.IO connection may upgrade from polling to WebSocket: show it.
    sock.io.on("open", () => sock.io.engine.on("upgrade", renderConnection));

    sock.on("connect", () => {
      everConnected = true;
      if (refusedTimer) clearTimeout(refusedTimer);
      refusedTimer = null;
      renderConnection();
    });

    sock.on("disconnect", (/** @type {string} */ reason) => {
      renderConnection();
      if (reason === "io server disconnect") {
        el.reconnectingText.textContent = "Disconnected by the service. Reconnecting…";
        sock.connect(); // the client does not come back by itself after a server-side disconnect
      }
      typingBy.clearAll();
      drafts.clear(); // a reply stored meanwhile comes back through `sync`
      outbox.pause(); // acks of the old connection no longer count: resent after `session`
      localTyping.stop(true);
    });

    sock.on("connect_error", (/** @type {any} */ err) => {
      const data = err && err.data;
      if (data && data.code === "unauthorized" && token && !resetOnce) {
        // The stored token expired or is unknown here: start over as a new visitor.
        resetOnce = true;
        token = null;
        storageSet(TOKEN_KEY, null);
        sock.connect();
        return;
      }
      renderConnection();
      if (data && typeof data.code === "string") {
        // Refused by the namespace (e.g. `unavailable` while the database is down): Socket.IO does
        // not retry a refusal by itself, so try again after a jittered pause.
        el.reconnectingText.textContent = "Chat unavailable (" + (data.message || data.code) + "). Retrying…";
        if (!refusedTimer) {
          refusedTimer = setTimeout(() => {
            refusedTimer = null;
            if (!sock.connected) sock.connect();
          }, refusedRetryDelay());
        }
      }
    });

    sock.on("session", (/** @type {any} */ s) => {
      if (!s || typeof s !== "object") return;
      if (typeof s.visitor_token === "string" && s.visitor_token) {
        token = s.visitor_token; // refreshed on each connect: keeps a returning visitor's token young
        storageSet(TOKEN_KEY, token);
      }
      resetOnce = false;
      if (Number.isInteger(s.max_text_length) && s.max_text_length > 0) {
        maxText = s.max_text_length; // the service's MAX_TEXT_LENGTH
        renderLimit();
      }
      if (conversationId && s.conversation_id !== conversationId) clearConversation();
      if (conversationId !== s.conversation_id) {
        seenSeq = loadReadSeq(s.conversation_id);
        conv.lastReadSent = 0;
      }
      conversationId = s.conversation_id;
      conv.id = conversationId;
      el.log.setAttribute("data-conversation-id", String(s.conversation_id));
      renderStateName(s.state);
      if (typeof s.agents_online === "boolean") agentsOnline = s.agents_online;
      renderConnection();
      conv.sync(); // catch up on whatever happened while we were away
      outbox.resume(); // then resend what was never acknowledged, in order, same client_ids
      scheduleRead(); // and a read receipt that could not go out while offline
    });

    sock.on("availability", (/** @type {any} */ a) => {
      if (!a || typeof a.agents_online !== "boolean") return;
      agentsOnline = a.agents_online;
      renderConnection();
    });

    sock.on("message", (/** @type {any} */ msg) => {
      if (!isMessage(msg)) return;
      drafts.settle(msg); // a streamed reply, stored: it takes its draft's place
      conv.receive(msg); // a skipped seq (a lost event) fetches the hole
    });

    sock.on("message_delta", (/** @type {any} */ ev) => {
      if (conversationId && ev && ev.conversation_id && ev.conversation_id !== conversationId) return;
      drafts.delta(ev);
    });

    sock.on("typing", onTyping);

    sock.on("read", (/** @type {any} */ ev) => {
      if (!ev || !ev.reader || ev.reader.role !== "agent" || !Number.isInteger(ev.seq)) return;
      if (conversationId && ev.conversation_id && ev.conversation_id !== conversationId) return;
      if (conv.markRead(ev.seq)) stickToEnd(el.log);
    });

    sock.on("state", (/** @type {any} */ info) => {
      if (conversationId && info && info.conversation_id && info.conversation_id !== conversationId) return;
      renderState(info);
    });

    renderConnection();
  }

  // ---- read receipts ---------------------------------------------------------------------------

  function scheduleRead() {
    if (readTimer) return;
    readTimer = setTimeout(sendRead, 300);
  }

  function sendRead() {
    if (readTimer) clearTimeout(readTimer);
    readTimer = null;
    // Only what the visitor can actually see counts as read.
    if (!isOpen || document.visibilityState !== "visible") return;
    if (conv.highest > seenSeq) {
      seenSeq = conv.highest;
      storageSet(READ_KEY, JSON.stringify({ conversation_id: conversationId, seq: seenSeq }));
      renderBadge();
    }
    conv.sendRead(seenSeq);
  }

  document.addEventListener("visibilitychange", scheduleRead);

  // ---- the network -----------------------------------------------------------------------------

  window.addEventListener("offline", () => {
    networkDown = true;
    outbox.pause();
    restartTransport(socket); // the heartbeat would notice only after ~45 s
    renderConnection();
  });

  window.addEventListener("online", () => {
    networkDown = false;
    reconnectNow(socket);
    renderConnection();
  });

  // ---- sending ---------------------------------------------------------------------------------

  /** The notice under the log while the text is over the service's limit; false then. */
  function renderLimit() {
    return showLimit(el.text, el.limit, maxText);
  }

  /** @param {string} raw */
  function sendText(raw) {
    const message = raw.trim();
    el.error.textContent = "";
    if (!message) return false;
    if (!renderLimit()) return false; // over the limit: refused here, the text stays in the input
    const clientId = newClientId();
    const node = pendingMessageNode("visitor", message, clientId);
    appendNode(el.log, node);
    // Sent at once when connected, else after the next `session` ("Waiting for connection…").
    outbox.push(clientId, { client_id: clientId, text: message }, node);
    scrollToEnd(el.log);
    return true;
  }

  el.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (sendText(el.text.value)) {
      el.text.value = "";
      fitHeight(el.text);
      localTyping.stop();
    }
    el.text.focus();
  });

  composer(el.text, el.form); // Enter sends, Shift+Enter: a new line
  watchLog(el.log, el.jump); // new messages do not move a log being read

  // ---- typing (ours) ---------------------------------------------------------------------------

  el.text.addEventListener("input", () => {
    renderLimit();
    localTyping.input("chat", !!el.text.value);
  });

  // ---- handoff ---------------------------------------------------------------------------------

  el.handoff.addEventListener("click", () => {
    if (!isConnected(socket)) return;
    el.handoff.disabled = true;
    el.error.textContent = "";
    socket.timeout(ACK_TIMEOUT_MS).emit("handoff", {}, (/** @type {unknown} */ err, /** @type {any} */ ack) => {
      if (!err && ack && ack.ok) {
        renderStateName(ack.state);
      } else {
        el.error.textContent = "Could not reach a human: " + refusalText(ack, "no answer, try again");
      }
      updateControls();
    });
  });

  // ---- open / close ----------------------------------------------------------------------------

  let loading = false;

  /**
   * Load the Socket.IO client from our own origin (never a CDN), without clobbering the page's.
   * @returns {Promise<any>}
   */
  function loadSocketIo() {
    return new Promise((resolve, reject) => {
      const w = /** @type {any} */ (window);
      const hadIo = Object.prototype.hasOwnProperty.call(w, "io");
      const pageIo = w.io;
      const tag = document.createElement("script");
      tag.src = ORIGIN + "/vendor/socket.io.min.js";
      tag.async = true;
      tag.onload = () => {
        const io = w.io;
        if (hadIo) w.io = pageIo;
        else delete w.io;
        resolve(io);
      };
      tag.onerror = reject;
      (document.head || document.documentElement).appendChild(tag);
    });
  }

  /** Load the Socket.IO client, then connect. */
  function start() {
    if (socket || loading) return;
    loading = true;
    loadSocketIo().then(
      (io) => {
        loading = false;
        connect(io);
      },
      () => {
        loading = false;
        el.state.textContent = "The chat could not be loaded. Please try again later.";
        el.state.setAttribute("data-state", "error");
      },
    );
  }

  function open() {
    if (isOpen) return;
    isOpen = true;
    sessionSet(OPEN_KEY, "1");
    panel.hidden = false;
    bubble.setAttribute("aria-expanded", "true");
    el.iconChat.style.display = "none";
    el.iconClose.style.display = "";
    start();
    renderBadge();
    scrollToEnd(el.log);
    scheduleRead();
    el.text.focus();
  }

  function close() {
    if (!isOpen) return;
    sendRead(); // what was on screen until now has been seen
    isOpen = false;
    sessionSet(OPEN_KEY, "0");
    panel.hidden = true;
    bubble.setAttribute("aria-expanded", "false");
    el.iconChat.style.display = "";
    el.iconClose.style.display = "none";
    renderBadge();
    bubble.focus();
  }

  bubble.addEventListener("click", () => {
    if (isOpen) close();
    else open();
  });
  el.close.addEventListener("click", close);
  panel.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      ev.stopPropagation();
      close();
    }
  });

  /** @type {any} */ (window).SocketsvcWidget = { open, close };

  // A returning visitor reconnects at once (to see replies that came meanwhile); a new one only
  // when they open the chat, so that a page view alone starts no conversation.
  if (openAtStart) open();
  else if (token) start();
  for (const call of options.calls || []) {
    if (call === "open") open();
    else if (call === "close") close();
  }
}
