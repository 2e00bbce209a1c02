/* socketsvc agent console (demo). A native ES module, no build step; needs /vendor/socket.io.min.js
 * (the global `io`), and imports the modules it shares with the visitor widget: conversation.js
 * (seq ordering, sync on gaps, dedupe by client_id, read marks, typing), format.js (elements,
 * storage, times, message bubbles) and, through conversation.js, outbox.js.
 *
 * - signs in with an agent JWT (pasted, or minted by the service's dev-mode button) kept in
 *   localStorage, and connects to /agent with auth {token};
 * - keeps the queue and this agent's conversations from the `queue` / `assigned` snapshots (sent
 *   again on every reconnect) and the `conversation` events;
 * - shows one conversation at a time: history from the accept ack or `sync`, live messages ordered
 *   and deduplicated by seq, resync on reconnect and on seq gaps, typing and read marks both ways;
 * - sends with a client_id through an ordered outbox per conversation (outbox.js): one message on
 *   the wire at a time, re-sent with the same client_id after a refusal, a reconnect or an ack
 *   timeout, so messages are stored once and in the order they were written.
 * All text from the service or from people is rendered with textContent, never as HTML.
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
import {
  appendNode,
  buildMessageNode,
  composer,
  fitHeight,
  followEnd,
  formatWait,
  h,
  initial,
  markDays,
  newClientId,
  renderLimit as showLimit,
  pendingMessageNode,
  placeNode,
  scrollToEnd,
  stickToEnd,
  storageGet,
  storageSet,
  watchLog,
} from "./format.js";

const TOKEN_KEY = "socketsvc.agent_token";
const AVAILABILITY_KEY = "socketsvc.agent_availability";
const ALERT_MS = 15000;
const TITLE = document.title;

function $(id) {
  return document.getElementById(id);
}

const el = {
  sessionBar: $("session-bar"),
  conn: $("conn"),
  availability: $("availability"),
  availabilityLabel: $("availability-label"),
  me: $("me"),
  signOut: $("sign-out"),
  alert: $("alert"),
  alertText: $("alert-text"),
  alertClose: $("alert-close"),
  signin: $("signin"),
  signinForm: $("signin-form"),
  token: $("token"),
  signinError: $("signin-error"),
  dev: $("dev"),
  devId: $("dev-id"),
  devName: $("dev-name"),
  devMint: $("dev-mint"),
  console: $("console"),
  queue: $("queue"),
  queueCount: $("queue-count"),
  queueEmpty: $("queue-empty"),
  mine: $("mine"),
  mineCount: $("mine-count"),
  mineEmpty: $("mine-empty"),
  chatEmpty: $("chat-empty"),
  chatEmptyNote: $("chat-empty-note"),
  chatMain: $("chat-main"),
  chatAvatar: $("chat-avatar"),
  chatTitle: $("chat-title"),
  chatSub: $("chat-sub"),
  chatError: $("chat-error"),
  transferForm: $("transfer-form"),
  transferTo: $("transfer-to"),
  releaseQueue: $("release-queue"),
  releaseBot: $("release-bot"),
  resolve: $("resolve"),
  log: $("log"),
  jump: $("jump"),
  typing: $("typing"),
  limit: $("limit"),
  form: $("composer"),
  text: $("text"),
  send: $("send"),
};

// ---- helpers ---------------------------------------------------------------------------------

/** The token's claims, for display only (the service is what checks the token). */
function claimsOf(jwt) {
  try {
    let part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    while (part.length % 4) part += "=";
    const json = decodeURIComponent(
      Array.from(window.atob(part), (c) => "%" + ("00" + c.charCodeAt(0).toString(16)).slice(-2)).join(""),
    );
    const claims = JSON.parse(json);
    if (claims && typeof claims.sub === "string") {
      return { id: claims.sub, name: typeof claims.name === "string" ? claims.name : claims.sub };
    }
  } catch {
    /* not a JWT we can read: the service will say so */
  }
  return null;
}

function visitorName(summary) {
  return (summary && summary.visitor && summary.visitor.name) || "Visitor";
}

// ---- sound (best effort) ---------------------------------------------------------------------

let audio = null;

/** Browsers only let a page make sound after a user gesture: create the context on one. */
function unlockAudio() {
  if (audio) return;
  try {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (Ctx) audio = new Ctx();
  } catch {
    audio = null;
  }
}

function beep() {
  try {
    if (!audio) return;
    if (audio.state === "suspended" && audio.resume) audio.resume().catch(function () {});
    const now = audio.currentTime;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "sine";
    osc.frequency.setValueAtTime(880, now);
    osc.frequency.setValueAtTime(1175, now + 0.09);
    gain.gain.setValueAtTime(0.0001, now);
    gain.gain.exponentialRampToValueAtTime(0.15, now + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + 0.25);
    osc.connect(gain);
    gain.connect(audio.destination);
    osc.start(now);
    osc.stop(now + 0.26);
  } catch {
    /* no sound, no problem: the visible alert is what matters */
  }
}

document.addEventListener("pointerdown", unlockAudio, { once: true });
document.addEventListener("keydown", unlockAudio, { once: true });

// ---- state -----------------------------------------------------------------------------------

let token = storageGet(TOKEN_KEY);
let me = null;
let socket = null;
let everConnected = false;
let refusedTimer = null;
let queue = new Map(); // conversation_id -> Summary (waiting)
let mine = new Map(); // conversation_id -> Summary (assigned to me)
let chats = new Map(); // conversation_id -> Chat
let selected = null;
let readTimer = null;
let alertTimer = null;
let maxText = DEFAULT_MAX_TEXT; // until the `queue` snapshot says (the service's MAX_TEXT_LENGTH)
const freshlyQueued = new Set();
const localTyping = new LocalTyping({
  socket: () => socket,
  payload: (cid) => ({ conversation_id: cid }),
  canStop: (cid) => mine.has(cid),
});

/** A conversation's view: its messages (conversation.js), outbox, unread count and who types. */
function chatOf(cid) {
  let chat = chats.get(cid);
  if (!chat) {
    chat = {
      id: cid,
      conv: new Conversation(cid, {
        socket: () => socket,
        add: addMessage,
        markedRole: "agent",
        extra: { conversation_id: cid },
        canSync: () => mine.has(cid),
      }),
      outbox: makeOutbox(), // this agent's unacknowledged messages, in the order written
      unread: 0,
      typing: new RemoteTyping(() => {
        renderTyping();
        renderListsSoon();
      }),
    };
    chats.set(cid, chat);
  }
  return chat;
}

// ---- messages --------------------------------------------------------------------------------

function isMe(sender) {
  return !!(sender && sender.role === "agent" && me && sender.id === me.id);
}

/** Add a stored message to its conversation (idempotent by seq). True when it was new. */
function addMessage(msg) {
  return showMessage(msg, null);
}

/** `addMessage`, in `pendingNode` when it is our own message just acked. */
function showMessage(msg, pendingNode) {
  if (!isMessage(msg) || typeof msg.conversation_id !== "string") return false;
  const chat = chatOf(msg.conversation_id);
  if (chat.conv.has(msg.seq)) return false;
  const node =
    pendingNode ||
    claimPending(msg, "agent", chat.outbox) ||
    buildMessageNode(msg.sender.role, isMe(msg.sender) ? "You" : msg.sender.name, msg.text, "agent");
  chat.conv.record(msg, node);

  const summary = mine.get(chat.id) || queue.get(chat.id);
  if (summary && (!summary.last_message || summary.last_message.seq < msg.seq)) summary.last_message = msg;
  if (summary && msg.sender && msg.sender.role === "visitor") summary.last_visitor_message = msg;
  if (msg.sender.role === "visitor") {
    chat.typing.clearAll();
    if (selected !== chat.id && msg.seq > chat.conv.lastReadSent) chat.unread++;
  }
  if (selected === chat.id) {
    placeNode(el.log, node, msg.seq);
    followEnd(el.log); // reading history: the log stays put, a "new messages" button shows
    scheduleRead();
  }
  renderListsSoon();
  return true;
}

// ---- lists -----------------------------------------------------------------------------------

let listsQueued = false;

function renderListsSoon() {
  if (listsQueued) return;
  listsQueued = true;
  window.requestAnimationFrame(function () {
    listsQueued = false;
    renderLists();
  });
}

// In the queue, what the visitor last wrote says more than the service's handoff notice.
function previewOf(summary) {
  if (!summary) return null;
  const last = summary.last_message;
  const visitor = summary.last_visitor_message;
  if (summary.state === "queued" && visitor && (!last || last.sender.role === "system")) {
    return visitor;
  }
  return last;
}

function lastText(summary) {
  const last = previewOf(summary);
  if (!last || typeof last.text !== "string" || !last.sender) return "";
  const role = last.sender.role;
  if (role === "visitor" || role === "system") return last.text;
  return (isMe(last.sender) ? "You" : last.sender.name) + ": " + last.text;
}

/** The question the visitor came with (`first_text`, on queued Summaries), "" without one. */
function firstText(summary) {
  return summary && typeof summary.first_text === "string" ? summary.first_text : "";
}

/** The card's last line would repeat the first question (`first_text` may be cut, with "…"). */
function sameAsFirst(summary) {
  const first = firstText(summary);
  const last = lastText(summary);
  if (!first || !last) return false;
  return last === first || (first.endsWith("…") && last.startsWith(first.slice(0, -1)));
}

function lastClass(summary) {
  const last = previewOf(summary);
  return "item-last" + (last && last.sender && last.sender.role === "system" ? " system" : "");
}

/**
 * The list control that has the focus (a conversation item, an Accept button), to give the focus
 * back to its new element once the lists are drawn again: a keyboard user keeps their place.
 */
function focusedListControl() {
  const active = document.activeElement;
  if (!active || !(el.mine.contains(active) || el.queue.contains(active))) return null;
  const cid = active.getAttribute("data-conversation-id");
  if (!cid) return null;
  return { list: el.mine.contains(active) ? el.mine : el.queue, cls: active.classList.contains("accept") ? "accept" : "item-btn", cid };
}

function renderLists() {
  const focused = focusedListControl();
  drawLists();
  if (focused) {
    const again = Array.from(focused.list.querySelectorAll("." + focused.cls)).find(function (b) {
      return b.getAttribute("data-conversation-id") === focused.cid;
    });
    if (again) again.focus({ preventScroll: true });
  }
}

function drawLists() {
  const waiting = Array.from(queue.values()).sort(function (a, b) {
    return String(a.waiting_since || "").localeCompare(String(b.waiting_since || ""));
  });
  el.queue.replaceChildren.apply(
    el.queue,
    waiting.map(function (s) {
      const name = visitorName(s);
      return h(
        "li",
        {
          class: "item queued" + (freshlyQueued.has(s.conversation_id) ? " fresh" : ""),
          "data-conversation-id": s.conversation_id,
        },
        [
          h("div", { class: "item-head" }, [
            h("span", { class: "avatar small", "aria-hidden": "true", text: initial(name) }),
            h("div", { class: "item-who" }, [
              h("strong", { class: "item-name", text: name }),
              h("span", { class: "waiting", "data-since": s.waiting_since || "", text: "Waiting " + formatWait(s.waiting_since) }),
            ]),
          ]),
          firstText(s) ? h("p", { class: "item-first", title: firstText(s), text: firstText(s) }) : null,
          sameAsFirst(s) ? null : h("p", { class: lastClass(s), text: lastText(s) }),
          h("button", {
            class: "btn btn-primary btn-small accept",
            type: "button",
            "data-conversation-id": s.conversation_id,
            "aria-label": "Accept " + name,
            text: "Accept",
          }),
        ],
      );
    }),
  );
  el.queueCount.textContent = String(waiting.length);
  el.queueEmpty.hidden = waiting.length > 0;

  const own = Array.from(mine.values());
  el.mine.replaceChildren.apply(
    el.mine,
    own.map(function (s) {
      const name = visitorName(s);
      const chat = chatOf(s.conversation_id);
      const current = selected === s.conversation_id;
      return h("li", { class: "item mine" + (current ? " current" : ""), "data-conversation-id": s.conversation_id }, [
        h(
          "button",
          {
            class: "item-btn",
            type: "button",
            "data-conversation-id": s.conversation_id,
            "aria-current": current ? "true" : null,
          },
          [
            h("span", { class: "avatar small", "aria-hidden": "true", text: initial(name) }),
            h("span", { class: "item-who" }, [
              h("strong", { class: "item-name", text: name }),
              chat.typing.size
                ? h("span", { class: "item-last typing-note", text: "typing…" })
                : h("span", { class: lastClass(s), text: lastText(s) }),
            ]),
            chat.unread > 0 && !current
              ? h("span", { class: "unread", "aria-label": chat.unread + " unread", text: String(chat.unread) })
              : null,
          ],
        ),
      ]);
    }),
  );
  el.mineCount.textContent = String(own.length);
  el.mineEmpty.hidden = own.length > 0;
}

function tickWaiting() {
  const spans = el.queue.querySelectorAll(".waiting[data-since]");
  for (let i = 0; i < spans.length; i++) {
    spans[i].textContent = "Waiting " + formatWait(spans[i].getAttribute("data-since"));
  }
}

setInterval(tickWaiting, 1000);

// ---- alert -----------------------------------------------------------------------------------

function showAlert(text) {
  el.alertText.textContent = text;
  el.alert.hidden = false;
  el.alert.setAttribute("data-count", String(Number(el.alert.getAttribute("data-count") || 0) + 1));
  document.title = "● " + TITLE;
  clearTimeout(alertTimer);
  alertTimer = setTimeout(hideAlert, ALERT_MS);
  beep();
}

function hideAlert() {
  clearTimeout(alertTimer);
  el.alert.hidden = true;
  document.title = TITLE;
}

el.alertClose.addEventListener("click", hideAlert);

// ---- summaries -------------------------------------------------------------------------------

function onSummary(s) {
  if (!s || typeof s.conversation_id !== "string") return;
  const cid = s.conversation_id;
  const wasQueued = queue.has(cid);
  const wasMine = mine.has(cid);
  if (s.state === "queued") {
    queue.set(cid, s);
    if (!wasQueued && !wasMine) {
      freshlyQueued.add(cid);
      setTimeout(function () {
        freshlyQueued.delete(cid);
        renderListsSoon();
      }, ALERT_MS);
      showAlert(visitorName(s) + " is waiting for an agent.");
    }
  } else {
    queue.delete(cid);
    freshlyQueued.delete(cid);
  }
  if (s.state === "assigned" && s.agent && me && s.agent.id === me.id) {
    const before = mine.get(cid);
    if (before && !s.last_message && before.last_message) s.last_message = before.last_message;
    mine.set(cid, s);
  } else if (wasMine) {
    mine.delete(cid);
    left(cid, s);
  }
  renderLists();
}

const LEFT_TEXT = {
  queued: "was returned to the queue",
  bot: "was handed back to the bot",
  resolved: "was resolved",
};

/** A conversation left this agent's set: drop its view and tell why. */
function left(cid, s) {
  const chat = chats.get(cid);
  if (chat) {
    chat.outbox.clear();
    chat.typing.clearAll(true);
    chat.conv.closed = true; // a `sync` answer still on its way is ignored
    chats.delete(cid);
  }
  if (selected === cid) {
    let why = LEFT_TEXT[s.state] || "is no longer assigned to you";
    if (s.state === "assigned" && s.agent && s.agent.name) why = "was transferred to " + s.agent.name;
    deselect("The conversation with " + visitorName(s) + " " + why + ".");
  }
}

// ---- selection and the chat pane -------------------------------------------------------------

function deselect(note) {
  localTyping.stop();
  selected = null;
  el.chatMain.hidden = true;
  el.chatMain.removeAttribute("data-conversation-id");
  el.chatEmpty.hidden = false;
  el.chatEmptyNote.textContent = note || "Pick one of your conversations, or accept a visitor from the queue.";
  el.log.replaceChildren();
  renderTyping();
  renderLists();
}

function select(cid) {
  if (!mine.has(cid)) return;
  if (selected !== cid) localTyping.stop();
  selected = cid;
  const summary = mine.get(cid);
  const chat = chatOf(cid);
  chat.unread = 0;
  const name = visitorName(summary);
  el.chatEmpty.hidden = true;
  el.chatMain.hidden = false;
  el.chatMain.setAttribute("data-conversation-id", cid);
  el.chatAvatar.textContent = initial(name);
  el.chatTitle.textContent = name;
  el.chatSub.textContent = "";
  el.chatSub.append(h("span", { class: "badge badge-assigned", text: "Assigned to you" }), " Conversation " + cid.slice(0, 8));
  el.chatError.textContent = "";

  const seqs = Array.from(chat.conv.nodes.keys()).sort(function (a, b) {
    return a - b;
  });
  const children = seqs.map(function (seq) {
    return chat.conv.nodes.get(seq);
  });
  chat.outbox.forEach(function (item) {
    children.push(item.data);
  });
  el.log.replaceChildren.apply(el.log, children);
  markDays(el.log);
  scrollToEnd(el.log);
  renderTyping();
  renderLists();
  chat.conv.sync();
  scheduleRead();
  el.text.focus();
}

el.mine.addEventListener("click", function (ev) {
  const target = ev.target.closest("[data-conversation-id]");
  if (target) select(target.getAttribute("data-conversation-id"));
});

el.queue.addEventListener("click", function (ev) {
  const button = ev.target.closest("button.accept");
  if (button) accept(button.getAttribute("data-conversation-id"), button);
});

function accept(cid, button) {
  if (!socket || !socket.connected) return;
  button.disabled = true;
  button.textContent = "Accepting…";
  socket.timeout(ACK_TIMEOUT_MS).emit("accept", { conversation_id: cid }, function (err, ack) {
    if (!err && ack && ack.ok && ack.conversation) {
      if (!me && ack.conversation.agent) me = { id: ack.conversation.agent.id, name: ack.conversation.agent.name };
      queue.delete(cid);
      mine.set(cid, ack.conversation);
      (Array.isArray(ack.messages) ? ack.messages : []).forEach(addMessage);
      hideAlert();
      renderLists();
      select(cid);
      return;
    }
    const e = (ack && ack.error) || {};
    if (e.code === "conflict" || e.code === "not_found") {
      queue.delete(cid);
      renderLists();
      showNotice("Too late: " + (e.message || "someone else took this conversation") + ".");
    } else {
      button.disabled = false;
      button.textContent = "Accept";
      showNotice("Could not accept: " + (err ? "no answer from the service" : e.message || e.code || "error"));
    }
  });
}

function showNotice(text) {
  el.alertText.textContent = text;
  el.alert.hidden = false;
  clearTimeout(alertTimer);
  alertTimer = setTimeout(hideAlert, ALERT_MS);
}

// ---- read receipts ---------------------------------------------------------------------------

function scheduleRead() {
  if (readTimer) return;
  readTimer = setTimeout(() => {
    readTimer = null;
    if (!selected || document.visibilityState !== "visible") return;
    const chat = chatOf(selected);
    chat.conv.sendRead(chat.conv.highest);
  }, 300);
}

document.addEventListener("visibilitychange", scheduleRead);

// ---- typing ----------------------------------------------------------------------------------

function renderTyping() {
  const chat = selected ? chats.get(selected) : null;
  const names = chat ? chat.typing.names : [];
  el.typing.hidden = names.length === 0;
  el.typing.textContent = names.length ? names[0] + " is typing…" : "";
  stickToEnd(el.log);
}

function onTyping(ev) {
  if (!ev || !ev.sender || ev.sender.role !== "visitor" || typeof ev.conversation_id !== "string") return;
  chatOf(ev.conversation_id).typing.set("visitor", ev.sender.name || "The visitor", ev.typing === true);
}

el.text.addEventListener("input", () => {
  renderLimit();
  localTyping.input(selected, !!el.text.value);
});
composer(el.text, el.form); // Enter sends, Shift+Enter: a new line
watchLog(el.log, el.jump); // new messages do not move a log being read

/** The notice over the composer while the reply is over the service's limit; false then. */
function renderLimit() {
  return showLimit(el.text, el.limit, maxText);
}

// ---- sending ---------------------------------------------------------------------------------

function makeOutbox() {
  const outbox = pageOutbox({
    socket: () => socket,
    show: showMessage,
    // No ack in 5 s: the link is probably dead; reconnect now (the heartbeat takes ~45 s).
    onTimeout: () => restartTransport(socket),
  });
  if (isConnected(socket)) outbox.resume(); // else after the next `assigned` snapshot
  return outbox;
}

el.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = el.text.value.trim();
  if (!text || !selected) return;
  if (!renderLimit()) return; // over the limit: refused here, the text stays in the input
  const chat = chatOf(selected);
  const clientId = newClientId();
  const node = pendingMessageNode("agent", text, clientId);
  appendNode(el.log, node);
  chat.outbox.push(clientId, { conversation_id: chat.id, client_id: clientId, text }, node);
  scrollToEnd(el.log);
  el.text.value = "";
  fitHeight(el.text);
  localTyping.stop();
  el.text.focus();
});

// ---- conversation actions --------------------------------------------------------------------

function act(event, payload, what) {
  if (!selected || !socket || !socket.connected) return;
  el.chatError.textContent = "";
  socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, function (err, ack) {
    if (!err && ack && ack.ok && ack.conversation) {
      onSummary(ack.conversation);
      return;
    }
    const e = (ack && ack.error) || {};
    el.chatError.textContent = what + " failed: " + (err ? "no answer from the service" : e.message || e.code || "error");
  });
}

el.transferForm.addEventListener("submit", function (ev) {
  ev.preventDefault();
  const target = el.transferTo.value.trim();
  if (!target) return;
  act("transfer", { conversation_id: selected, agent_id: target }, "Transfer");
  el.transferTo.value = "";
});
el.releaseQueue.addEventListener("click", function () {
  act("release", { conversation_id: selected, to: "queue" }, "Release to queue");
});
el.releaseBot.addEventListener("click", function () {
  act("release", { conversation_id: selected, to: "bot" }, "Release to bot");
});
el.resolve.addEventListener("click", function () {
  act("resolve", { conversation_id: selected }, "Resolve");
});

// ---- availability ----------------------------------------------------------------------------

function availability() {
  return el.availability.checked ? "online" : "away";
}

function renderAvailability() {
  el.availabilityLabel.textContent = el.availability.checked ? "Online" : "Away";
  el.availability.parentNode.setAttribute("data-status", availability());
}

function sendAvailability() {
  if (socket && socket.connected) socket.emit("availability", { status: availability() }, function () {});
}

el.availability.checked = storageGet(AVAILABILITY_KEY) !== "away";
renderAvailability();
el.availability.addEventListener("change", function () {
  storageSet(AVAILABILITY_KEY, availability());
  renderAvailability();
  sendAvailability();
});

// ---- the connection --------------------------------------------------------------------------

function renderConn(status, text) {
  el.conn.setAttribute("data-status", status);
  el.conn.textContent = text;
}

function renderConnected() {
  const transport = transportName(socket);
  renderConn("online", "Connected" + (transport ? " · " + transport : ""));
}

function connect() {
  const current = io("/agent", {
    forceNew: true, // a fresh connection per sign-in
    ...RECONNECT_OPTIONS,
    auth: (cb) => cb({ token }),
  });
  socket = current;

  current.io.on("open", () => {
    current.io.engine.on("upgrade", () => {
      if (current === socket && current.connected) renderConnected();
    });
  });

  current.on("connect", () => {
    if (current !== socket) return;
    everConnected = true;
    clearTimeout(refusedTimer);
    refusedTimer = null;
    renderConnected();
    sendAvailability();
  });

  current.on("disconnect", (reason) => {
    if (current !== socket) return;
    renderConn("reconnecting", "Reconnecting…");
    localTyping.stop(true);
    chats.forEach((chat) => {
      chat.typing.clearAll();
      chat.outbox.pause(); // acks on the old connection no longer count
    });
    if (reason === "io server disconnect") current.connect();
  });

  current.on("connect_error", (err) => {
    if (current !== socket) return;
    const data = err && err.data;
    if (data && (data.code === "unauthorized" || data.code === "forbidden")) {
      signOut("The service refused this token: " + (data.message || data.code) + ".");
      return;
    }
    if (data && typeof data.code === "string") {
      renderConn("refused", "Refused: " + (data.message || data.code) + " · retrying");
      if (!refusedTimer) {
        refusedTimer = setTimeout(() => {
          refusedTimer = null;
          if (current === socket && !current.connected) current.connect();
        }, refusedRetryDelay());
      }
      return;
    }
    renderConn("reconnecting", everConnected ? "Reconnecting…" : "Connecting… (" + err.message + ")");
  });

  current.on("queue", (snapshot) => {
    const list = snapshot && Array.isArray(snapshot.conversations) ? snapshot.conversations : [];
    if (snapshot && Number.isInteger(snapshot.max_text_length) && snapshot.max_text_length > 0) {
      maxText = snapshot.max_text_length; // the service's MAX_TEXT_LENGTH
      renderLimit();
    }
    queue = new Map();
    list.forEach((s) => {
      if (s && typeof s.conversation_id === "string") queue.set(s.conversation_id, s);
    });
    renderLists();
  });

  current.on("assigned", (snapshot) => {
    const list = snapshot && Array.isArray(snapshot.conversations) ? snapshot.conversations : [];
    const before = mine;
    mine = new Map();
    list.forEach((s) => {
      if (s && typeof s.conversation_id === "string") mine.set(s.conversation_id, s);
    });
    before.forEach((s, cid) => {
      if (!mine.has(cid)) left(cid, { conversation_id: cid, state: "", visitor: s.visitor });
    });
    // Back online: catch up on the open conversation, then resend what was never acknowledged.
    if (selected && mine.has(selected)) chatOf(selected).conv.sync();
    chats.forEach((chat) => {
      if (mine.has(chat.id)) chat.outbox.resume();
    });
    renderLists();
  });

  current.on("conversation", onSummary);

  current.on("message", (msg) => {
    // Something skipped (a lost event): conv.receive fetches the hole with `sync`.
    if (isMessage(msg) && typeof msg.conversation_id === "string") chatOf(msg.conversation_id).conv.receive(msg);
  });

  current.on("typing", onTyping);

  current.on("read", (ev) => {
    if (!ev || !ev.reader || ev.reader.role !== "visitor" || !Number.isInteger(ev.seq)) return;
    const chat = chats.get(ev.conversation_id);
    if (chat && chat.conv.markRead(ev.seq) && selected === chat.id) stickToEnd(el.log);
  });

  renderConn("connecting", "Connecting…");
}

// ---- sign in / out ---------------------------------------------------------------------------

function startSession() {
  me = claimsOf(token);
  el.me.textContent = me ? me.name : "";
  if (me) el.me.setAttribute("title", "Agent id: " + me.id);
  el.signin.hidden = true;
  el.console.hidden = false;
  el.sessionBar.hidden = false;
  el.signinError.textContent = "";
  everConnected = false;
  renderLists();
  deselect();
  connect();
}

function signOut(message) {
  if (socket) {
    const old = socket;
    socket = null;
    old.disconnect();
  }
  clearTimeout(refusedTimer);
  refusedTimer = null;
  token = null;
  storageSet(TOKEN_KEY, null);
  queue = new Map();
  mine = new Map();
  chats.forEach((chat) => {
    chat.conv.closed = true;
    chat.outbox.clear();
  });
  chats = new Map();
  selected = null;
  me = null;
  hideAlert();
  el.console.hidden = true;
  el.sessionBar.hidden = true;
  el.signin.hidden = false;
  el.signinError.textContent = message || "";
  el.token.value = "";
  el.token.focus();
}

el.signinForm.addEventListener("submit", function (ev) {
  ev.preventDefault();
  unlockAudio();
  const value = el.token.value.trim();
  if (value.split(".").length !== 3) {
    el.signinError.textContent = "That doesn't look like a JWT (three dot-separated parts).";
    return;
  }
  token = value;
  storageSet(TOKEN_KEY, token);
  startSession();
});

el.signOut.addEventListener("click", function () {
  signOut("");
});

el.devMint.addEventListener("click", function () {
  unlockAudio();
  el.devMint.disabled = true;
  el.signinError.textContent = "";
  fetch("/dev/agent-token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id: el.devId.value.trim(), name: el.devName.value.trim() }),
  })
    .then(function (res) {
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.json();
    })
    .then(function (body) {
      if (!body || typeof body.token !== "string") throw new Error("no token in the answer");
      token = body.token;
      storageSet(TOKEN_KEY, token);
      startSession();
    })
    .catch(function (e) {
      el.signinError.textContent = "Could not mint a dev token: " + e.message;
    })
    .then(function () {
      el.devMint.disabled = false;
    });
});

fetch("/config.json")
  .then(function (res) {
    return res.ok ? res.json() : {};
  })
  .then(function (config) {
    el.dev.hidden = !(config && config.dev_mode === true);
  })
  .catch(function () {
    el.dev.hidden = true;
  });

document.addEventListener("keydown", function (ev) {
  if (ev.key === "Escape" && !el.alert.hidden) hideAlert();
});

window.addEventListener("offline", () => {
  // The heartbeat would notice only after ~45 s: close now; the client keeps retrying.
  restartTransport(socket);
});
window.addEventListener("online", () => {
  reconnectNow(socket); // reconnect at once, not at the end of the backoff delay
});

if (token) startSession();
else {
  el.signin.hidden = false;
  el.token.focus();
}
