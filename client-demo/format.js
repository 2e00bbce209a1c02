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
  const day = dayKey(msg.created_at);
  if (day) node.setAttribute("data-day", day);
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
 * Put a stored message's node in seq order, before any still-pending message (day separators are
 * skipped, then set again by `markDays`).
 * @param {Element} log
 * @param {Element} node
 * @param {number} seq
 */
export function placeNode(log, node, seq) {
  let placed = false;
  for (const child of Array.from(log.children)) {
    if (child === node || child.classList.contains("day-sep")) continue;
    const s = child.getAttribute("data-seq");
    if (s === null || Number(s) > seq) {
      log.insertBefore(node, child);
      placed = true;
      break;
    }
  }
  if (!placed) log.appendChild(node);
  markDays(log);
}

/**
 * Add a node without a seq at the end of the log (a message being sent, a draft).
 * @param {Element} log
 * @param {Element} node
 */
export function appendNode(log, node) {
  log.appendChild(node);
  markDays(log);
}

// ---- day separators ----------------------------------------------------------------------------

/**
 * The reader's local day of a timestamp or date, "2026-12-03"; "" for a missing or bad one.
 * @param {string | Date | null | undefined} when
 */
export function dayKey(when) {
  const d = when instanceof Date ? when : new Date(when ?? "");
  if (isNaN(d.getTime())) return "";
  const pad = (/** @type {number} */ n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
}

/**
 * What a day separator says: "Today", "Yesterday" (Intl.RelativeTimeFormat, so in the reader's
 * language), else the date in the reader's locale (Intl.DateTimeFormat: "Tuesday 1 December" in
 * en-GB, with the year when it is not this year's).
 * @param {string} key  a `dayKey`
 * @param {Date} [now]
 */
export function dayLabel(key, now = new Date()) {
  const [y, m, d] = key.split("-").map(Number);
  const day = new Date(y, m - 1, d);
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const days = Math.round((today.getTime() - day.getTime()) / 86_400_000); // DST days: 23 or 25 h
  if (days === 0 || days === 1) {
    const words = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }).format(days === 0 ? 0 : -1, "day");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }
  /** @type {Intl.DateTimeFormatOptions} */
  const options = { weekday: "long", day: "numeric", month: "long" };
  if (y !== now.getFullYear()) options.year = "numeric";
  return new Intl.DateTimeFormat(undefined, options).format(day);
}

/**
 * A separator before the first message of each day in the log (by the messages' `created_at`, in
 * the reader's time zone; a message not stored yet, or a draft, counts as today's). Idempotent:
 * separators still in the right place are kept (their label refreshed), the others removed.
 * @param {Element} log
 */
export function markDays(log) {
  const today = dayKey(new Date());
  /** @type {Set<Element>} */
  const keep = new Set();
  let previous = "";
  for (const child of Array.from(log.children)) {
    if (child.classList.contains("day-sep")) continue;
    const day = child.getAttribute("data-day") || today;
    if (day === previous) continue;
    previous = day;
    let sep = child.previousElementSibling;
    if (!sep || !sep.classList.contains("day-sep") || sep.getAttribute("data-day") !== day || keep.has(sep)) {
      sep = h("div", { class: "day-sep", "data-day": day }, [h("span", { class: "day-label" })]);
      log.insertBefore(sep, child);
    }
    const label = sep.querySelector(".day-label");
    const text = dayLabel(day);
    if (label && label.textContent !== text) label.textContent = text;
    keep.add(sep);
  }
  for (const sep of Array.from(log.querySelectorAll(":scope > .day-sep"))) {
    if (!keep.has(sep)) sep.remove();
  }
}

// ---- following the end of the log ----------------------------------------------------------------

/** Within this many pixels of the bottom, the log counts as "at the end" and follows new messages. */
export const FOLLOW_PX = 32;

/**
 * @typedef {object} LogState
 * @property {boolean} atEnd  the reader is at the bottom: new messages scroll into view
 * @property {number} unseen  messages that arrived while the reader was scrolled up
 * @property {HTMLElement | null} jump  the "new messages" button
 */

/** @type {WeakMap<Element, LogState>} */
const logStates = new WeakMap();

/**
 * Follow the reader's scrolling in `log`: at the bottom, new messages scroll into view; scrolled up
 * (reading history), they do not move the log, and `jump` (a button, hidden until then) offers
 * to go to them ("2 new messages").
 * @param {HTMLElement} log
 * @param {HTMLElement | null} [jump]
 */
export function watchLog(log, jump = null) {
  /** @type {LogState} */
  const state = { atEnd: true, unseen: 0, jump };
  logStates.set(log, state);
  log.addEventListener(
    "scroll",
    () => {
      state.atEnd = log.scrollHeight - log.scrollTop - log.clientHeight <= FOLLOW_PX;
      if (state.atEnd) hideJump(state);
    },
    { passive: true },
  );
  if (jump) {
    jump.hidden = true;
    jump.addEventListener("click", () => scrollToEnd(log));
  }
}

/** @param {LogState} state */
function hideJump(state) {
  state.unseen = 0;
  if (state.jump) state.jump.hidden = true;
}

/**
 * Go to the end of the log (opening a conversation, one's own message just written).
 * @param {Element} log
 */
export function scrollToEnd(log) {
  log.scrollTop = log.scrollHeight;
  const state = logStates.get(log);
  if (state) {
    state.atEnd = true;
    hideJump(state);
  }
}

/**
 * A new message is in the log: scroll to it if the reader was at the end; if they are reading
 * history, leave the log where it is and count it on the "new messages" button.
 * @param {Element} log
 */
export function followEnd(log) {
  const state = logStates.get(log);
  if (!state || state.atEnd) {
    scrollToEnd(log);
    return;
  }
  state.unseen++;
  if (state.jump) {
    state.jump.textContent = state.unseen === 1 ? "1 new message ↓" : state.unseen + " new messages ↓";
    state.jump.hidden = false;
  }
}

/**
 * After something near the end grew (a mark, the typing line, a draft): stay at the end if we were.
 * @param {Element} log
 */
export function stickToEnd(log) {
  const state = logStates.get(log);
  const atEnd = state ? state.atEnd : log.scrollHeight - log.scrollTop - log.clientHeight < 120;
  if (atEnd) scrollToEnd(log);
}

// ---- the composer --------------------------------------------------------------------------------

/**
 * How long the service counts `text`: trimmed, in Unicode code points (an emoji is one, not two as
 * in `String.length`).
 * @param {string} text
 */
export function textLength(text) {
  return Array.from(text.trim()).length;
}

/**
 * The notice for a text over the service's limit ("" when it fits).
 * @param {number} length  `textLength` of the text
 * @param {number} max  the service's `max_text_length`
 */
export function overLimitText(length, max) {
  if (length <= max) return "";
  const over = length - max;
  return (
    "Too long to send: " + length + " characters, the limit is " + max + ". Remove " + over +
    (over === 1 ? " character." : " characters.")
  );
}

/**
 * Show `input`'s over-limit notice in `notice` (hidden, and `aria-invalid` dropped, when the text
 * fits); whether the text fits.
 * @param {HTMLTextAreaElement} input
 * @param {HTMLElement} notice
 * @param {number} max  the service's `max_text_length`
 */
export function renderLimit(input, notice, max) {
  const text = overLimitText(textLength(input.value), max);
  notice.textContent = text;
  notice.hidden = !text;
  if (text) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
  return !text;
}

/**
 * A <textarea> composer: Enter sends (submits `form`), Shift+Enter starts a new line, and Enter
 * while an input method is composing is left to it. The box grows with its text up to its CSS
 * `max-height`.
 * @param {HTMLTextAreaElement} input
 * @param {HTMLFormElement} form
 */
export function composer(input, form) {
  input.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter" || ev.shiftKey || ev.isComposing || ev.keyCode === 229) return;
    ev.preventDefault();
    form.requestSubmit();
  });
  input.addEventListener("input", () => fitHeight(input));
}

/**
 * Size a composer to its text (call after setting its value from code, e.g. clearing it).
 * @param {HTMLTextAreaElement} input
 */
export function fitHeight(input) {
  input.style.height = "auto";
  if (!input.value) return; // empty: its rows="1" height
  const cs = getComputedStyle(input);
  const borders = parseFloat(cs.borderTopWidth) + parseFloat(cs.borderBottomWidth);
  input.style.height = input.scrollHeight + borders + "px";
}
