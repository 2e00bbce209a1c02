// @ts-check
/* socketsvc demo pages: the small helpers the visitor widget and the agent console share (storage,
 * elements built without HTML, times, client ids, message bubbles and their marks).
 *
 * A native ES module with no dependencies; the pages load it with import().
 * Everything from the service or from people is rendered with textContent, never as HTML; the
 * light markdown of bot and agent messages (renderMarkdown) builds elements and text nodes only.
 */

// ---- storage (either may be disabled: then state lasts as long as the page) ---------------------

/** @param {string} key */
export function storageGet(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null;
  }
}

/**
 * @param {string} key
 * @param {string | null} value  null removes the key
 */
export function storageSet(key, value) {
  try {
    if (value === null) window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, value);
  } catch {
    /* storage unavailable */
  }
}

/** @param {string} key */
export function sessionGet(key) {
  try {
    return window.sessionStorage.getItem(key);
  } catch {
    return null;
  }
}

/**
 * @param {string} key
 * @param {string} value
 */
export function sessionSet(key, value) {
  try {
    window.sessionStorage.setItem(key, value);
  } catch {
    /* storage unavailable */
  }
}

// ---- elements --------------------------------------------------------------------------------

/** @typedef {Record<string, string | number | boolean | null | undefined>} Attrs */

/**
 * An element with attributes and children; strings become text nodes (never HTML). The attribute
 * `text` sets the textContent; `true` sets an empty attribute; null, undefined and false set none.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs | null} [attrs]
 * @param {(Node | string | null | undefined)[]} [children]  null and undefined are skipped
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs, children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children || []) {
    if (child === null || child === undefined) continue;
    node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

// ---- text --------------------------------------------------------------------------------------

/** A fresh client_id: a UUID, or 32 random hex digits where randomUUID is missing. */
export function newClientId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  // Non-secure contexts (plain http on a LAN address) have no randomUUID.
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => (b + 0x100).toString(16).slice(1)).join("");
}

/**
 * "14:05" in the reader's locale; "" for a missing or bad timestamp.
 * @param {string | null | undefined} iso
 */
export function formatTime(iso) {
  const d = new Date(iso ?? "");
  if (isNaN(d.getTime())) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/**
 * How long since `iso`: "42s", "3m 05s", "1h 02m"; "" for a bad timestamp.
 * @param {string | null | undefined} iso
 */
export function formatWait(iso) {
  const since = Date.parse(iso ?? "");
  if (isNaN(since)) return "";
  const s = Math.max(0, Math.floor((Date.now() - since) / 1000));
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m " + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
}

/**
 * The capital first letter of a name, for an avatar ("?" when there is none).
 * @param {unknown} name
 */
export function initial(name) {
  const t = String(name || "?").trim();
  return t ? t.charAt(0).toUpperCase() : "?";
}

/**
 * What a refusal says: `ack.error.message`, else its code, else `fallback`.
 * @param {any} ack
 * @param {string} fallback
 */
export function refusalText(ack, fallback) {
  const e = (ack && ack.error) || {};
  return e.message || e.code || fallback;
}

// ---- message bubbles ---------------------------------------------------------------------------

/** The sender roles a message may have; anything else is drawn as `system`. */
export const ROLES = new Set(["visitor", "bot", "agent", "system"]);

/** The marks of one's own messages. */
export const STATUS_TEXT = /** @type {Record<string, string>} */ ({
  pending: "Sending…",
  offline: "Waiting for connection…",
  sent: "Sent",
  read: "Read",
});

// ---- light markdown ------------------------------------------------------------------------------

/** Inline marks: `code`, [label](url) and **bold**. */
const INLINE = /`([^`\n]+)`|\[([^\]\n]+)\]\(([^()\s]+)\)|\*\*([^*\n]+)\*\*/g;
const BULLET = /^\s*[-*]\s+(.*)$/;
const NUMBERED = /^\s*\d{1,3}[.)]\s+(.*)$/;

/**
 * The URL of a link if it is safe to follow: absolute http(s) or mailto only, else null.
 * @param {string} raw
 */
export function safeHref(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" || url.protocol === "mailto:" ? url.href : null;
}

/**
 * One line's inline marks as nodes: <code>, <a> (safe URLs only, opened in a new tab without
 * access to this page), <strong>; everything else, a link with an unsafe URL included, as text.
 * @param {string} text
 * @returns {Node[]}
 */
function inlineNodes(text) {
  /** @type {Node[]} */
  const nodes = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    const at = m.index ?? 0;
    if (at > last) nodes.push(document.createTextNode(text.slice(last, at)));
    if (m[1] !== undefined) nodes.push(h("code", { text: m[1] }));
    else if (m[2] !== undefined) {
      const href = safeHref(m[3]);
      nodes.push(
        href
          ? h("a", { href, target: "_blank", rel: "noopener noreferrer", text: m[2] })
          : document.createTextNode(m[0]),
      );
    } else nodes.push(h("strong", { text: m[4] }));
    last = at + m[0].length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

/**
 * Light markdown as a fragment of elements and text nodes (never HTML): paragraphs (blank
 * lines), "- " / "* " and "1. " lists, `code`, [links](https://...) and **bold**. Line breaks
 * inside a paragraph stay newlines (the bubbles use white-space: pre-wrap).
 * @param {string} text
 * @returns {DocumentFragment}
 */
export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  /** @type {string[]} */
  let para = [];
  /** @type {HTMLElement | null} */
  let list = null;
  const flush = () => {
    if (para.length) out.appendChild(h("p", null, inlineNodes(para.join("\n"))));
    para = [];
  };
  for (const line of String(text).split(/\r?\n/)) {
    const bullet = BULLET.exec(line);
    const numbered = bullet ? null : NUMBERED.exec(line);
    if (bullet || numbered) {
      flush();
      const tag = bullet ? "ul" : "ol";
      if (!list || list.tagName.toLowerCase() !== tag) {
        list = h(tag);
        out.appendChild(list);
      }
      list.appendChild(h("li", null, inlineNodes((bullet || numbered || [])[1] || "")));
      continue;
    }
    list = null;
    if (line.trim() === "") flush();
    else para.push(line);
  }
  flush();
  return out;
}

/** Roles whose messages are rendered as light markdown (the bot's answers, agents' replies). */
export const MARKDOWN_ROLES = new Set(["bot", "agent"]);

/**
 * A message bubble: sender, text (light markdown for MARKDOWN_ROLES, else plain), time, and a
 * status mark when `role` is `markedRole` (the page's own side: the visitor in the widget, the
 * agent in the console).
 * @param {string} role
 * @param {string | null | undefined} name
 * @param {string} text
 * @param {string} markedRole
 */
export function buildMessageNode(role, name, text, markedRole) {
  role = ROLES.has(role) ? role : "system";
  const node = h("article", { class: "msg", "data-role": role });
  node.appendChild(h("span", { class: "msg-sender", text: name || role }));
  node.appendChild(
    MARKDOWN_ROLES.has(role)
      ? h("div", { class: "msg-text" }, [renderMarkdown(text)])
      : h("p", { class: "msg-text", text }),
  );
  const meta = h("span", { class: "msg-meta" }, [h("time", { class: "msg-time" })]);
  if (role === markedRole) meta.appendChild(h("span", { class: "msg-status" }));
  node.appendChild(meta);
  return node;
}

/**
 * The bubble of a message just written, shown at once and marked pending until it is stored.
 * @param {string} role
 * @param {string} text
 * @param {string} clientId
 */
export function pendingMessageNode(role, text, clientId) {
  const node = buildMessageNode(role, "You", text, role);
  node.classList.add("pending");
  node.setAttribute("aria-busy", "true");
  node.setAttribute("data-client-id", clientId);
  return node;
}

/**
 * Set a bubble's mark (`offline` shows as pending, with its own text).
 * @param {Element} node
 * @param {string} status  pending, offline, sent, read or failed
 * @param {string} [text]  instead of STATUS_TEXT[status]
 */
export function setStatus(node, status, text) {
  const span = node.querySelector(".msg-status");
  if (!span) return;
  const value = status === "offline" ? "pending" : status;
  span.setAttribute("data-status", value);
  span.textContent = text || STATUS_TEXT[status] || "";
  node.setAttribute("data-status", value);
}

/**
 * Mark a bubble refused for good.
 * @param {Element} node
 * @param {string} why
 */
export function failNode(node, why) {
  node.classList.remove("pending");
  node.classList.add("failed");
  node.removeAttribute("aria-busy");
  setStatus(node, "failed", "Not sent: " + why);
}

/**
 * A bubble now shows a stored message: its seq, id, client_id, time, and (on the page's own
 * messages) Sent or Read.
 * @param {Element} node
 * @param {import("./conversation.js").Message} msg
 * @param {string} markedRole
 * @param {number} readSeq  the other side has read up to this seq
 */
export function confirmNode(node, msg, markedRole, readSeq) {
  node.setAttribute("data-seq", String(msg.seq));
  node.setAttribute("data-id", String(msg.id));
  if (msg.client_id) node.setAttribute("data-client-id", msg.client_id);
  node.classList.remove("pending", "failed");
  node.removeAttribute("aria-busy");
  const when = node.querySelector(".msg-time");
  if (when) {
    when.setAttribute("datetime", String(msg.created_at));
    when.textContent = formatTime(msg.created_at);
  }
  if (msg.sender.role === markedRole) setStatus(node, msg.seq <= readSeq ? "read" : "sent");
}

// ---- the log -----------------------------------------------------------------------------------

/**
 * Put a stored message's node in seq order, before any still-pending message.
 * @param {Element} log
 * @param {Element} node
 * @param {number} seq
 */
export function placeNode(log, node, seq) {
  for (const child of Array.from(log.children)) {
    if (child === node) continue;
    const s = child.getAttribute("data-seq");
    if (s === null || Number(s) > seq) {
      log.insertBefore(node, child);
      return;
    }
  }
  log.appendChild(node);
}

/** @param {Element} log */
export function scrollToEnd(log) {
  log.scrollTop = log.scrollHeight;
}

/**
 * After something near the end grew (a mark, the typing line): stay at the end if we were.
 * @param {Element} log
 */
export function stickToEnd(log) {
  if (log.scrollHeight - log.scrollTop - log.clientHeight < 120) scrollToEnd(log);
}
