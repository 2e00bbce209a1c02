/* socketsvc chat widget. Plain script, no build step, no dependencies outside this service.
 *
 * Embed it with ONE tag; everything else comes from the origin that served this file:
 *
 *     <script src="https://chat.example.com/widget.js" defer></script>
 *
 * Options (all optional):
 *   data-open="true" on the tag, or ?open=1 on the page's URL: open the panel right away;
 *   ?transport=polling (or websocket) on the page's URL: force one Socket.IO transport.
 * A page script may also call window.SocketsvcWidget.open() / .close().
 *
 * The client habits it demonstrates (see docs/client-demo.md):
 *   - reconnect with exponential backoff and jitter (options below);
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
(function () {
  "use strict";

  if (window.__socketsvcWidgetLoaded) return; // the tag was included twice
  window.__socketsvcWidgetLoaded = true;

  // ---- where we come from --------------------------------------------------------------------

  var script = document.currentScript;
  if (!script) {
    var tags = document.querySelectorAll('script[src*="widget.js"]');
    script = tags[tags.length - 1] || null;
  }
  var ORIGIN = new URL(script && script.src ? script.src : "/", window.location.href).origin;
  var pageParams = new URLSearchParams(window.location.search);

  var TOKEN_KEY = "socketsvc.visitor_token";
  var READ_KEY = "socketsvc.visitor_read";
  var OPEN_KEY = "socketsvc.widget_open";
  var ACK_TIMEOUT_MS = 8000;
  var MESSAGE_ACK_TIMEOUT_MS = 5000; // a stored message is acked in milliseconds: longer means a dead link
  var RETRY_DELAY_MS = 1000;
  var TYPING_IDLE_MS = 3000;
  var REMOTE_TYPING_TTL_MS = 10000;
  var SYNC_LIMIT = 200;
  var MAX_TEXT = 4000;

  var forcedTransport = pageParams.get("transport");
  if (forcedTransport !== "polling" && forcedTransport !== "websocket") forcedTransport = null;
  var openAtStart =
    pageParams.get("open") === "1" ||
    (script && script.getAttribute("data-open") === "true") ||
    sessionGet(OPEN_KEY) === "1";

  // ---- small helpers -------------------------------------------------------------------------

  function storageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (e) {
      return null; // storage disabled: the session lasts as long as the page
    }
  }

  function storageSet(key, value) {
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) {
      /* ignore */
    }
  }

  function sessionGet(key) {
    try {
      return window.sessionStorage.getItem(key);
    } catch (e) {
      return null;
    }
  }

  function sessionSet(key, value) {
    try {
      window.sessionStorage.setItem(key, value);
    } catch (e) {
      /* ignore */
    }
  }

  /** An element with attributes and children; strings become text nodes (never HTML). */
  function h(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) return;
        if (name === "text") node.textContent = value;
        else node.setAttribute(name, value === true ? "" : String(value));
      });
    }
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  var SVG_NS = "http://www.w3.org/2000/svg";
  var ICONS = {
    chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z",
    close: "M6 6l12 12M18 6L6 18",
    send: "M3 11.5L21 3l-8.5 18-2.2-7.3L3 11.5z",
  };

  function icon(name, filled) {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "22");
    svg.setAttribute("height", "22");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", ICONS[name]);
    path.setAttribute("fill", filled ? "currentColor" : "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke-linecap", "round");
    path.setAttribute("stroke-linejoin", "round");
    svg.appendChild(path);
    return svg;
  }

  function newClientId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    // Non-secure contexts (plain http on a LAN address) have no randomUUID.
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) {
        return (b + 0x100).toString(16).slice(1);
      })
      .join("");
  }

  function formatTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // ---- styles (inside the shadow root) -------------------------------------------------------

  var CSS = [
    // !important here wins over the page's own !important rules for the host element (the page's
    // normal rules would otherwise beat :host); everything else is out of the page's reach.
    ":host { all: initial !important; display: block !important; position: fixed !important;",
    "  right: 20px !important; bottom: 20px !important; z-index: 2147483000 !important;",
    "  visibility: visible !important; opacity: 1 !important; }",
    ".root { all: initial; display: block; text-align: left; direction: ltr;",
    "  font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif;",
    "  color: #172033; --brand: #4f46e5; --brand-dark: #4338ca; --ink: #172033; --muted: #667085;",
    "  --line: #e4e7ec; --bg: #f6f7fb; --ok: #027a48; --warn: #b54708; --bad: #b42318; }",
    ".root input, .root button { font-family: inherit; }",
    "*, *::before, *::after { box-sizing: border-box; }",
    "[hidden] { display: none !important; }",
    "button { font: inherit; cursor: pointer; }",
    ".sr-only { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden;",
    "  clip: rect(0 0 0 0); white-space: nowrap; border: 0; }",
    ".bubble { position: relative; display: grid; place-items: center; width: 60px; height: 60px; margin-left: auto;",
    "  border: 0; border-radius: 50%; color: #fff; background: linear-gradient(135deg, #6366f1, #4338ca);",
    "  box-shadow: 0 10px 25px rgba(67, 56, 202, .35), 0 2px 6px rgba(16, 24, 40, .2); transition: transform .15s; }",
    ".bubble:hover { transform: translateY(-2px); }",
    ".bubble:focus-visible, .icon-btn:focus-visible, .send:focus-visible, .human:focus-visible {",
    "  outline: 3px solid #a5b4fc; outline-offset: 2px; }",
    ".bubble svg { width: 28px; height: 28px; }",
    ".badge { position: absolute; top: -2px; right: -2px; min-width: 22px; height: 22px; padding: 0 6px;",
    "  border-radius: 11px; background: #f04438; color: #fff; font-size: 12px; font-weight: 700;",
    "  line-height: 22px; text-align: center; box-shadow: 0 0 0 2px #fff; }",
    ".panel { display: flex; flex-direction: column; width: min(380px, calc(100vw - 40px));",
    "  height: min(600px, calc(100vh - 110px)); margin-bottom: 14px; overflow: hidden; border-radius: 18px;",
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
    ".msg[data-role='visitor'] { align-self: flex-end; align-items: flex-end; }",
    ".msg[data-role='visitor'] .msg-sender { display: none; }",
    ".msg[data-role='visitor'] .msg-text { color: #fff; background: var(--brand); border-radius: 16px 16px 4px 16px; }",
    ".msg[data-role='system'] { align-self: center; max-width: 92%; text-align: center; }",
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
    ".composer { display: flex; gap: 8px; align-items: center; padding: 10px 12px 10px 14px;",
    "  border-top: 1px solid var(--line); background: #fff; }",
    ".composer input { flex: 1; min-width: 0; padding: 10px 12px; font: inherit; color: var(--ink);",
    "  border: 1px solid #d0d5dd; border-radius: 12px; background: #fff; }",
    ".composer input:focus { outline: none; border-color: #818cf8; box-shadow: 0 0 0 3px #e0e7ff; }",
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

  // ---- the DOM ---------------------------------------------------------------------------------

  // A custom element name: the page's `div { ... }` rules cannot match the host.
  var host = h("socketsvc-widget", { id: "socketsvc-widget" });
  var root = host.attachShadow({ mode: "open" });
  if (root.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === "function") {
    try {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } catch (e) {
      root.appendChild(h("style", { text: CSS }));
    }
  } else {
    root.appendChild(h("style", { text: CSS }));
  }

  var el = {};
  el.connection = h("span", { id: "connection", "data-connected": "false" }, [
    h("span", { class: "dot", "aria-hidden": "true" }),
    (el.connectionText = h("span", { text: "Connecting…" })),
  ]);
  el.close = h("button", { id: "close", class: "icon-btn", type: "button", "aria-label": "Close chat" }, [
    icon("close"),
  ]);
  el.state = h("p", { id: "state", class: "state", role: "status", "data-state": "" }, ["Connecting…"]);
  el.reconnecting = h("p", { id: "reconnecting", class: "reconnecting", role: "status", hidden: true }, [
    h("span", { class: "spinner", "aria-hidden": "true" }),
    (el.reconnectingText = h("span", { text: "Reconnecting…" })),
  ]);
  el.log = h("div", {
    id: "log",
    class: "log",
    role: "log",
    "aria-live": "polite",
    "aria-relevant": "additions text",
    "aria-label": "Conversation",
    tabindex: "0",
  });
  el.typing = h("p", { id: "typing", class: "typing", "aria-live": "polite", hidden: true }, [
    h("span", { class: "dots", "aria-hidden": "true" }, [h("i"), h("i"), h("i")]),
    (el.typingText = h("span", { class: "typing-text" })),
  ]);
  el.error = h("p", { id: "composer-error", class: "error", role: "alert" });
  el.text = h("input", {
    id: "text",
    name: "text",
    type: "text",
    maxlength: String(MAX_TEXT),
    autocomplete: "off",
    placeholder: "Write a message…",
    "aria-describedby": "composer-error",
  });
  el.send = h("button", { id: "send", class: "send", type: "submit", "aria-label": "Send" }, [icon("send", true)]);
  el.form = h("form", { id: "composer", class: "composer", autocomplete: "off" }, [
    h("label", { for: "text", class: "sr-only", text: "Your message" }),
    el.text,
    el.send,
  ]);
  el.handoff = h("button", { id: "handoff", class: "human", type: "button", text: "Talk to a human" });
  el.transport = h("b", { id: "transport", text: "none" });
  el.panel = h(
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
      el.typing,
      el.error,
      el.form,
      h("footer", { class: "foot" }, [el.handoff, h("span", { class: "meta" }, ["via ", el.transport])]),
    ],
  );
  el.badge = h("span", { id: "badge", class: "badge", "aria-hidden": "true", hidden: true });
  el.bubble = h(
    "button",
    {
      id: "bubble",
      class: "bubble",
      type: "button",
      "aria-label": "Open support chat",
      "aria-expanded": "false",
      "aria-controls": "panel",
    },
    [(el.iconChat = icon("chat", false)), (el.iconClose = icon("close", false)), el.badge],
  );
  el.iconClose.style.display = "none";
  root.appendChild(h("div", { class: "root" }, [el.panel, el.bubble]));

  function mount() {
    document.body.appendChild(host);
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  // ---- conversation state ----------------------------------------------------------------------

  var token = storageGet(TOKEN_KEY);
  var socket = null;
  var everConnected = false;
  var conversationId = null;
  var convState = null;
  var agentName = null;
  var botName = null;
  var messages = new Map(); // seq -> Message
  var nodes = new Map(); // seq -> element
  var contiguousSeq = 0; // every seq 1..contiguousSeq is here
  var highestSeq = 0;
  var agentReadSeq = 0; // an agent has seen everything up to this seq
  var outbox = null; // the ordered outbox (outbox.js) once loaded; items carry the message's element
  var unsent = []; // [client_id, payload, element] written before outbox.js had loaded
  var agentsOnline = null; // from `session` and `availability`: is any agent online?
  var typingBy = new Map(); // "role:id" -> {name, timer}
  var syncing = false;
  var syncAgain = false;
  var seenSeq = 0; // the visitor has had everything up to this seq on screen
  var lastReadSent = 0; // ...and the service has been told up to this one
  var readTimer = null;
  var localTyping = false;
  var localTypingTimer = null;
  var resetOnce = false;
  var refusedTimer = null;
  var isOpen = false;

  function loadReadSeq(cid) {
    try {
      var saved = JSON.parse(storageGet(READ_KEY) || "null");
      if (saved && saved.conversation_id === cid && Number.isInteger(saved.seq)) return saved.seq;
    } catch (e) {
      /* ignore */
    }
    return 0;
  }

  // ---- rendering -------------------------------------------------------------------------------

  var ROLES = { visitor: true, bot: true, agent: true, system: true };

  function buildMessageNode(role, name, text) {
    role = ROLES[role] ? role : "system";
    var node = h("article", { class: "msg", "data-role": role });
    node.appendChild(h("span", { class: "msg-sender", text: name || role }));
    node.appendChild(h("p", { class: "msg-text", text: text }));
    var meta = h("span", { class: "msg-meta" });
    meta.appendChild(h("time", { class: "msg-time" }));
    if (role === "visitor") meta.appendChild(h("span", { class: "msg-status" }));
    node.appendChild(meta);
    return node;
  }

  var STATUS_TEXT = { pending: "Sending…", offline: "Waiting for connection…", sent: "Sent", read: "Read" };

  function setStatus(node, status, text) {
    var span = node.querySelector(".msg-status");
    if (!span) return;
    span.setAttribute("data-status", status === "offline" ? "pending" : status);
    span.textContent = text || STATUS_TEXT[status] || "";
    node.setAttribute("data-status", status === "offline" ? "pending" : status);
  }

  function confirmNode(node, msg) {
    node.setAttribute("data-seq", String(msg.seq));
    node.setAttribute("data-id", msg.id);
    if (msg.client_id) node.setAttribute("data-client-id", msg.client_id);
    node.classList.remove("pending", "failed");
    node.removeAttribute("aria-busy");
    var when = node.querySelector(".msg-time");
    if (when) {
      when.setAttribute("datetime", msg.created_at);
      when.textContent = formatTime(msg.created_at);
    }
    if (msg.sender.role === "visitor") setStatus(node, msg.seq <= agentReadSeq ? "read" : "sent");
    stickToEnd();
  }

  /** Put a stored message's node in seq order, before any still-pending message. */
  function placeNode(node, seq) {
    var children = el.log.children;
    for (var i = 0; i < children.length; i++) {
      var child = children[i];
      if (child === node) continue;
      var s = child.getAttribute("data-seq");
      if (s === null || Number(s) > seq) {
        el.log.insertBefore(node, child);
        return;
      }
    }
    el.log.appendChild(node);
  }

  function scrollToEnd() {
    el.log.scrollTop = el.log.scrollHeight;
  }

  /** After something near the end grew (a mark, the typing line): stay at the end if we were. */
  function stickToEnd() {
    if (el.log.scrollHeight - el.log.scrollTop - el.log.clientHeight < 120) scrollToEnd();
  }

  function isMessage(msg) {
    return (
      msg &&
      typeof msg === "object" &&
      Number.isInteger(msg.seq) &&
      msg.seq > 0 &&
      typeof msg.text === "string" &&
      msg.sender &&
      typeof msg.sender === "object"
    );
  }

  /** Show one stored message (idempotent by seq). Returns true when it was new. */
  function addMessage(msg) {
    return showMessage(msg, null);
  }

  /** `addMessage`, in `pendingNode` when it is our own message just acked. */
  function showMessage(msg, pendingNode) {
    if (!isMessage(msg)) return false;
    if (conversationId && msg.conversation_id && msg.conversation_id !== conversationId) return false;
    if (messages.has(msg.seq)) return false;
    messages.set(msg.seq, msg);
    var role = msg.sender.role;
    if ((role === "bot" || role === "agent") && typeof msg.sender.name === "string") {
      var before = role === "bot" ? botName : agentName;
      if (role === "bot") botName = msg.sender.name;
      else agentName = msg.sender.name;
      // The banner names whoever answers; a resumed session learns the name from the history.
      if (before !== msg.sender.name && convState === (role === "bot" ? "bot" : "assigned")) {
        renderState(lastStateInfo);
      }
    }

    var node = pendingNode || null;
    if (!node && role === "visitor" && msg.client_id && outbox) {
      // Our own message, broadcast before its ack arrived: stored, so the outbox moves on.
      var item = outbox.settle(msg.client_id);
      if (item) node = item.data;
    }
    if (!node) node = buildMessageNode(role, msg.sender.name, msg.text);
    confirmNode(node, msg);
    nodes.set(msg.seq, node);
    placeNode(node, msg.seq);

    if (msg.seq > highestSeq) highestSeq = msg.seq;
    while (messages.has(contiguousSeq + 1)) contiguousSeq++;

    clearRemoteTyping(msg.sender.role + ":" + msg.sender.id);
    scheduleRead();
    renderBadge();
    scrollToEnd();
    return true;
  }

  function clearConversation() {
    messages.clear();
    nodes.forEach(function (n) {
      n.remove();
    });
    nodes.clear();
    contiguousSeq = 0;
    highestSeq = 0;
    agentReadSeq = 0;
    agentName = null;
  }

  function renderReadMarks() {
    nodes.forEach(function (node, seq) {
      if (node.getAttribute("data-role") === "visitor" && seq <= agentReadSeq) setStatus(node, "read");
    });
    stickToEnd();
  }

  var lastStateInfo = null;

  function renderState(info) {
    if (!info || typeof info.state !== "string") return;
    lastStateInfo = info;
    convState = info.state;
    if (info.agent && typeof info.agent.name === "string") agentName = info.agent.name;
    el.state.textContent = "";
    var s = info.state;
    if (s === "bot") {
      el.state.append("You're chatting with ", h("strong", { text: botName || "our bot" }), " (bot).");
    } else if (s === "queued") {
      if (Number.isInteger(info.queue_position)) {
        el.state.append(
          "Waiting for an agent · ",
          h("strong", { text: "#" + info.queue_position }),
          " in the queue",
        );
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

  /** A bare state name (session, sync and handoff acks): keep the details a `state` event gave. */
  function renderStateName(name) {
    if (typeof name === "string" && name !== convState) renderState({ state: name });
  }

  function updateControls() {
    var connected = !!(socket && socket.connected);
    // Sending stays possible offline: the message waits as pending and goes out on reconnect.
    el.handoff.disabled = !connected || convState === "queued" || convState === "assigned";
  }

  function renderConnection() {
    var connected = !!(socket && socket.connected) && !networkDown;
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
    var engine = socket && socket.io.engine;
    el.transport.textContent = connected && engine && engine.transport ? engine.transport.name : "none";
    updateControls();
  }

  function renderBadge() {
    var unread = 0;
    if (!isOpen) {
      messages.forEach(function (m) {
        if (m.seq > seenSeq && m.sender.role !== "visitor" && m.sender.role !== "system") unread++;
      });
    }
    el.badge.hidden = unread === 0;
    el.badge.textContent = unread > 9 ? "9+" : String(unread);
    el.bubble.setAttribute(
      "aria-label",
      isOpen ? "Close support chat" : unread ? "Open support chat (" + unread + " unread)" : "Open support chat",
    );
  }

  // ---- typing (shown) --------------------------------------------------------------------------

  function renderTyping() {
    var names = [];
    typingBy.forEach(function (v) {
      names.push(v.name);
    });
    el.typing.hidden = names.length === 0;
    el.typingText.textContent = names.length
      ? names.join(", ") + (names.length > 1 ? " are" : " is") + " typing…"
      : "";
    stickToEnd();
  }

  function clearRemoteTyping(key) {
    var entry = typingBy.get(key);
    if (!entry) return;
    clearTimeout(entry.timer);
    typingBy.delete(key);
    renderTyping();
  }

  function clearAllTyping() {
    typingBy.forEach(function (entry) {
      clearTimeout(entry.timer);
    });
    typingBy.clear();
    renderTyping();
  }

  function onTyping(ev) {
    if (!ev || !ev.sender || ev.sender.role === "visitor") return; // our own, from another tab
    if (conversationId && ev.conversation_id && ev.conversation_id !== conversationId) return;
    var key = ev.sender.role + ":" + ev.sender.id;
    clearRemoteTyping(key);
    if (ev.typing !== true) return;
    var name = typeof ev.sender.name === "string" && ev.sender.name ? ev.sender.name : "Someone";
    typingBy.set(key, {
      name: name,
      // A lost "typing: false" must not leave the indicator up forever.
      timer: setTimeout(function () {
        clearRemoteTyping(key);
      }, REMOTE_TYPING_TTL_MS),
    });
    renderTyping();
  }

  // ---- the connection --------------------------------------------------------------------------

  function connect(io) {
    var options = {
      // Reconnection is on by default; these numbers are chosen on purpose. The first retry comes
      // after ~0.5 s (a blip or a rolling restart heals fast), each next one waits twice as long, up
      // to 5 s. randomizationFactor 0.5 spreads every delay over ±50%: when a deploy drops a
      // thousand widgets at once they do not all come back in the same instant (no thundering herd).
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
      randomizationFactor: 0.5,
      // A function, so that every (re)connect presents the latest token.
      auth: function (cb) {
        cb(token ? { visitor_token: token } : {});
      },
    };
    // ?transport=polling on the page's URL: long-polling only (e.g. behind a proxy without WebSocket).
    if (forcedTransport) options.transports = [forcedTransport];
    socket = io(ORIGIN + "/chat", options);

    // Every (re)opened Engine.IO connection may upgrade from polling to WebSocket: show it.
    socket.io.on("open", function () {
      socket.io.engine.on("upgrade", renderConnection);
    });

    socket.on("connect", function () {
      everConnected = true;
      if (refusedTimer) clearTimeout(refusedTimer);
      refusedTimer = null;
      renderConnection();
    });

    socket.on("disconnect", function (reason) {
      renderConnection();
      if (reason === "io server disconnect") {
        el.reconnectingText.textContent = "Disconnected by the service. Reconnecting…";
        socket.connect(); // the client does not come back by itself after a server-side disconnect
      }
      clearAllTyping();
      if (outbox) outbox.pause(); // acks of the old connection no longer count: resent after `session`
      stopLocalTyping(true);
    });

    socket.on("connect_error", function (err) {
      var data = err && err.data;
      if (data && data.code === "unauthorized" && token && !resetOnce) {
        // The stored token expired or is unknown here: start over as a new visitor.
        resetOnce = true;
        token = null;
        storageSet(TOKEN_KEY, null);
        socket.connect();
        return;
      }
      renderConnection();
      if (data && typeof data.code === "string") {
        // Refused by the namespace (e.g. `unavailable` while the database is down): Socket.IO does
        // not retry a refusal by itself, so try again after a jittered pause.
        el.reconnectingText.textContent = "Chat unavailable (" + (data.message || data.code) + "). Retrying…";
        if (!refusedTimer) {
          refusedTimer = setTimeout(function () {
            refusedTimer = null;
            if (!socket.connected) socket.connect();
          }, 2000 + Math.random() * 3000);
        }
      }
    });

    socket.on("session", function (s) {
      if (!s || typeof s !== "object") return;
      if (typeof s.visitor_token === "string" && s.visitor_token) {
        token = s.visitor_token; // refreshed on each connect: keeps a returning visitor's token young
        storageSet(TOKEN_KEY, token);
      }
      resetOnce = false;
      if (conversationId && s.conversation_id !== conversationId) clearConversation();
      if (conversationId !== s.conversation_id) {
        seenSeq = loadReadSeq(s.conversation_id);
        lastReadSent = 0;
      }
      conversationId = s.conversation_id;
      el.log.setAttribute("data-conversation-id", String(s.conversation_id));
      renderStateName(s.state);
      if (typeof s.agents_online === "boolean") agentsOnline = s.agents_online;
      renderConnection();
      requestSync(); // catch up on whatever happened while we were away
      if (outbox) outbox.resume(); // then resend what was never acknowledged, in order, same client_ids
      scheduleRead(); // and a read receipt that could not go out while offline
    });

    socket.on("availability", function (a) {
      if (!a || typeof a.agents_online !== "boolean") return;
      agentsOnline = a.agents_online;
      renderConnection();
    });

    socket.on("message", function (msg) {
      if (!isMessage(msg)) return;
      var gap = msg.seq > contiguousSeq + 1 && !messages.has(msg.seq);
      addMessage(msg);
      if (gap) requestSync(); // a seq was skipped (a lost event): fetch the hole
    });

    socket.on("typing", onTyping);

    socket.on("read", function (ev) {
      if (!ev || !ev.reader || ev.reader.role !== "agent" || !Number.isInteger(ev.seq)) return;
      if (conversationId && ev.conversation_id && ev.conversation_id !== conversationId) return;
      if (ev.seq > agentReadSeq) {
        agentReadSeq = ev.seq;
        renderReadMarks();
      }
    });

    socket.on("state", function (info) {
      if (conversationId && info && info.conversation_id && info.conversation_id !== conversationId) return;
      renderState(info);
    });

    renderConnection();
  }

  // ---- sync ------------------------------------------------------------------------------------

  function requestSync() {
    if (syncing) {
      syncAgain = true;
      return;
    }
    if (!socket || !socket.connected) return;
    syncing = true;
    syncAgain = false;
    socket
      .timeout(ACK_TIMEOUT_MS)
      .emit("sync", { after_seq: contiguousSeq, limit: SYNC_LIMIT }, function (err, ack) {
        syncing = false;
        var more = false;
        if (!err && ack && ack.ok) {
          var got = Array.isArray(ack.messages) ? ack.messages : [];
          got.forEach(addMessage);
          renderStateName(ack.state);
          // A full page: keep going until we have everything up to last_seq.
          more = got.length > 0 && Number.isInteger(ack.last_seq) && contiguousSeq < ack.last_seq;
        }
        if (syncAgain || more) requestSync();
      });
  }

  // ---- read receipts ---------------------------------------------------------------------------

  function scheduleRead() {
    if (readTimer) return;
    readTimer = setTimeout(sendRead, 300);
  }

  function sendRead() {
    clearTimeout(readTimer);
    readTimer = null;
    // Only what the visitor can actually see counts as read.
    if (!isOpen || document.visibilityState !== "visible") return;
    if (highestSeq > seenSeq) {
      seenSeq = highestSeq;
      storageSet(READ_KEY, JSON.stringify({ conversation_id: conversationId, seq: seenSeq }));
      renderBadge();
    }
    if (seenSeq > lastReadSent && socket && socket.connected) {
      lastReadSent = seenSeq;
      socket.emit("read", { seq: seenSeq }, function () {});
    }
  }

  document.addEventListener("visibilitychange", scheduleRead);

  // ---- sending ---------------------------------------------------------------------------------

  function makeOutbox(outboxModule) {
    return outboxModule.messageOutbox({
      socket: function () {
        return socket;
      },
      setStatus: setStatus,
      show: showMessage,
      fail: function (node, why) {
        node.classList.remove("pending");
        node.classList.add("failed");
        node.removeAttribute("aria-busy");
        setStatus(node, "failed", "Not sent: " + why);
      },
      // No ack within 5 s: the link is probably dead (the heartbeat would take ~45 s to say so).
      // Reconnect now; the outbox re-sends with the same client_id after the new `session`.
      onTimeout: restartTransport,
      ackTimeoutMs: MESSAGE_ACK_TIMEOUT_MS,
      retryMs: RETRY_DELAY_MS,
    });
  }

  function queueMessage(clientId, text, node) {
    var payload = { client_id: clientId, text: text };
    if (outbox) {
      outbox.push(clientId, payload, node); // sent at once when online, else after `session`
    } else {
      unsent.push([clientId, payload, node]);
      setStatus(node, "offline");
    }
  }

  // ---- the network -----------------------------------------------------------------------------

  var networkDown = typeof navigator.onLine === "boolean" && !navigator.onLine;

  /** Close the transport so that the client reconnects now (its backoff starts over). */
  function restartTransport() {
    if (!socket) return;
    if (socket.connected && socket.io.engine) socket.io.engine.close();
    renderConnection();
  }

  window.addEventListener("offline", function () {
    networkDown = true;
    if (outbox) outbox.pause();
    restartTransport(); // the heartbeat would notice only after ~45 s
  });

  window.addEventListener("online", function () {
    networkDown = false;
    if (socket && !socket.connected) {
      // Reconnect at once instead of at the end of the current backoff delay.
      socket.disconnect();
      socket.connect();
    }
    renderConnection();
  });

  function sendText(raw) {
    var text = raw.trim();
    el.error.textContent = "";
    if (!text) return false;
    if (text.length > MAX_TEXT) {
      el.error.textContent = "Messages can be at most " + MAX_TEXT + " characters.";
      return false;
    }
    var clientId = newClientId();
    var node = buildMessageNode("visitor", "You", text);
    node.classList.add("pending");
    node.setAttribute("aria-busy", "true");
    node.setAttribute("data-client-id", clientId);
    el.log.appendChild(node);
    queueMessage(clientId, text, node);
    scrollToEnd();
    return true;
  }

  el.form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (sendText(el.text.value)) {
      el.text.value = "";
      stopLocalTyping();
    }
    el.text.focus();
  });

  // ---- typing (ours) ---------------------------------------------------------------------------

  function stopLocalTyping(silently) {
    clearTimeout(localTypingTimer);
    localTypingTimer = null;
    if (localTyping && !silently && socket && socket.connected) socket.emit("typing", { typing: false }, function () {});
    localTyping = false;
  }

  el.text.addEventListener("input", function () {
    if (!el.text.value) {
      stopLocalTyping();
      return;
    }
    if (!localTyping && socket && socket.connected) {
      localTyping = true;
      socket.emit("typing", { typing: true }, function () {});
    }
    clearTimeout(localTypingTimer);
    localTypingTimer = setTimeout(stopLocalTyping, TYPING_IDLE_MS); // idle for 3 s: stopped typing
  });

  // ---- handoff ---------------------------------------------------------------------------------

  el.handoff.addEventListener("click", function () {
    if (!socket || !socket.connected) return;
    el.handoff.disabled = true;
    el.error.textContent = "";
    socket.timeout(ACK_TIMEOUT_MS).emit("handoff", {}, function (err, ack) {
      if (!err && ack && ack.ok) {
        renderStateName(ack.state);
      } else {
        var e = (ack && ack.error) || {};
        el.error.textContent = "Could not reach a human: " + (e.message || e.code || "no answer, try again");
      }
      updateControls();
    });
  });

  // ---- open / close ----------------------------------------------------------------------------

  var loading = false;

  /** Load the Socket.IO client from our own origin (never a CDN), without clobbering the page's. */
  function loadSocketIo() {
    return new Promise(function (resolve, reject) {
      var hadIo = Object.prototype.hasOwnProperty.call(window, "io");
      var pageIo = window.io;
      var tag = document.createElement("script");
      tag.src = ORIGIN + "/vendor/socket.io.min.js";
      tag.async = true;
      tag.onload = function () {
        var io = window.io;
        if (hadIo) window.io = pageIo;
        else delete window.io;
        resolve(io);
      };
      tag.onerror = reject;
      (document.head || document.documentElement).appendChild(tag);
    });
  }

  /** Load the Socket.IO client and the outbox module (ours, by CORS), then connect. */
  function start() {
    if (socket || loading) return;
    loading = true;
    Promise.all([loadSocketIo(), import(ORIGIN + "/outbox.js")]).then(
      function (loaded) {
        loading = false;
        outbox = makeOutbox(loaded[1]);
        unsent.forEach(function (u) {
          outbox.push(u[0], u[1], u[2]);
        });
        unsent = [];
        connect(loaded[0]);
      },
      function () {
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
    el.panel.hidden = false;
    el.bubble.setAttribute("aria-expanded", "true");
    el.iconChat.style.display = "none";
    el.iconClose.style.display = "";
    start();
    renderBadge();
    scrollToEnd();
    scheduleRead();
    el.text.focus();
  }

  function close() {
    if (!isOpen) return;
    sendRead(); // what was on screen until now has been seen
    isOpen = false;
    sessionSet(OPEN_KEY, "0");
    el.panel.hidden = true;
    el.bubble.setAttribute("aria-expanded", "false");
    el.iconChat.style.display = "";
    el.iconClose.style.display = "none";
    renderBadge();
    el.bubble.focus();
  }

  el.bubble.addEventListener("click", function () {
    if (isOpen) close();
    else open();
  });
  el.close.addEventListener("click", close);
  el.panel.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") {
      ev.stopPropagation();
      close();
    }
  });

  window.SocketsvcWidget = { open: open, close: close };

  // A returning visitor reconnects at once (to see replies that came meanwhile); a new one only
  // when they open the chat, so that a page view alone starts no conversation.
  if (openAtStart) open();
  else if (token) start();
})();
