/* socketsvc agent console (demo). Plain script, no build step; needs /vendor/socket.io.min.js.
 *
 * - signs in with an agent JWT (pasted, or minted by the service's dev-mode button) kept in
 *   localStorage, and connects to /agent with auth {token};
 * - keeps the queue and this agent's conversations from the `queue` / `assigned` snapshots (sent
 *   again on every reconnect) and the `conversation` events;
 * - shows one conversation at a time: history from the accept ack or `sync`, live messages ordered
 *   and deduplicated by seq, resync on reconnect and on seq gaps, typing and read marks both ways;
 * - sends with a client_id through an ordered outbox per conversation (outbox.js, loaded with
 *   import()): one message on the wire at a time, re-sent with the same client_id after a refusal,
 *   a reconnect or an ack timeout, so messages are stored once and in the order they were written.
 * All text from the service or from people is rendered with textContent, never as HTML.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "socketsvc.agent_token";
  var AVAILABILITY_KEY = "socketsvc.agent_availability";
  var ACK_TIMEOUT_MS = 8000;
  var MESSAGE_ACK_TIMEOUT_MS = 5000;
  var RETRY_DELAY_MS = 1000;
  var outboxModule = null; // outbox.js, loaded before the session starts
  var TYPING_IDLE_MS = 3000;
  var REMOTE_TYPING_TTL_MS = 10000;
  var SYNC_LIMIT = 200;
  var ALERT_MS = 15000;
  var TITLE = document.title;

  function $(id) {
    return document.getElementById(id);
  }

  var el = {
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
    typing: $("typing"),
    form: $("composer"),
    text: $("text"),
    send: $("send"),
  };

  // ---- helpers ---------------------------------------------------------------------------------

  function storageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (e) {
      return null;
    }
  }

  function storageSet(key, value) {
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) {
      /* storage unavailable: signed in for this page only */
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
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function newClientId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
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

  function formatWait(iso) {
    var since = Date.parse(iso);
    if (isNaN(since)) return "";
    var s = Math.max(0, Math.floor((Date.now() - since) / 1000));
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }

  function initial(name) {
    var t = String(name || "?").trim();
    return t ? t.charAt(0).toUpperCase() : "?";
  }

  /** The token's claims, for display only (the service is what checks the token). */
  function claimsOf(jwt) {
    try {
      var part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      while (part.length % 4) part += "=";
      var json = decodeURIComponent(
        Array.prototype.map
          .call(window.atob(part), function (c) {
            return "%" + ("00" + c.charCodeAt(0).toString(16)).slice(-2);
          })
          .join(""),
      );
      var claims = JSON.parse(json);
      if (claims && typeof claims.sub === "string") {
        return { id: claims.sub, name: typeof claims.name === "string" ? claims.name : claims.sub };
      }
    } catch (e) {
      /* not a JWT we can read: the service will say so */
    }
    return null;
  }

  function visitorName(summary) {
    return (summary && summary.visitor && summary.visitor.name) || "Visitor";
  }

  // ---- sound (best effort) ---------------------------------------------------------------------

  var audio = null;

  /** Browsers only let a page make sound after a user gesture: create the context on one. */
  function unlockAudio() {
    if (audio) return;
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (Ctx) audio = new Ctx();
    } catch (e) {
      audio = null;
    }
  }

  function beep() {
    try {
      if (!audio) return;
      if (audio.state === "suspended" && audio.resume) audio.resume().catch(function () {});
      var now = audio.currentTime;
      var osc = audio.createOscillator();
      var gain = audio.createGain();
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
    } catch (e) {
      /* no sound, no problem: the visible alert is what matters */
    }
  }

  document.addEventListener("pointerdown", unlockAudio, { once: true });
  document.addEventListener("keydown", unlockAudio, { once: true });

  // ---- state -----------------------------------------------------------------------------------

  var token = storageGet(TOKEN_KEY);
  var me = null;
  var socket = null;
  var everConnected = false;
  var refusedTimer = null;
  var queue = new Map(); // conversation_id -> Summary (waiting)
  var mine = new Map(); // conversation_id -> Summary (assigned to me)
  var chats = new Map(); // conversation_id -> Chat
  var selected = null;
  var localTyping = null; // conversation_id we told we're typing in
  var localTypingTimer = null;
  var readTimer = null;
  var alertTimer = null;
  var freshlyQueued = new Set();

  function chatOf(cid) {
    var chat = chats.get(cid);
    if (!chat) {
      chat = {
        id: cid,
        messages: new Map(), // seq -> Message
        nodes: new Map(), // seq -> element
        outbox: makeOutbox(), // this agent's unacknowledged messages, in the order written
        contiguous: 0,
        highest: 0,
        visitorRead: 0,
        lastReadSent: 0,
        unread: 0,
        typing: null,
        syncing: false,
        syncAgain: false,
      };
      chats.set(cid, chat);
    }
    return chat;
  }

  // ---- messages --------------------------------------------------------------------------------

  var ROLES = { visitor: true, bot: true, agent: true, system: true };

  function isMessage(msg) {
    return (
      msg &&
      typeof msg === "object" &&
      typeof msg.conversation_id === "string" &&
      Number.isInteger(msg.seq) &&
      msg.seq > 0 &&
      typeof msg.text === "string" &&
      msg.sender &&
      typeof msg.sender === "object"
    );
  }

  function isMe(sender) {
    return !!(sender && sender.role === "agent" && me && sender.id === me.id);
  }

  function buildMessageNode(role, name, text) {
    role = ROLES[role] ? role : "system";
    var node = h("article", { class: "msg", "data-role": role });
    node.appendChild(h("span", { class: "msg-sender", text: name || role }));
    node.appendChild(h("p", { class: "msg-text", text: text }));
    var meta = h("span", { class: "msg-meta" }, [h("time", { class: "msg-time" })]);
    if (role === "agent") meta.appendChild(h("span", { class: "msg-status" }));
    node.appendChild(meta);
    return node;
  }

  var STATUS_TEXT = { pending: "Sending…", offline: "Waiting for connection…", sent: "Sent", read: "Read" };

  function setStatus(node, status, text) {
    var span = node.querySelector(".msg-status");
    if (!span) return;
    var value = status === "offline" ? "pending" : status;
    span.setAttribute("data-status", value);
    span.textContent = text || STATUS_TEXT[status] || "";
    node.setAttribute("data-status", value);
  }

  function confirmNode(chat, node, msg) {
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
    if (msg.sender.role === "agent") setStatus(node, msg.seq <= chat.visitorRead ? "read" : "sent");
    if (selected === chat.id) stickToEnd();
  }

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

  /** Add a stored message to its conversation (idempotent by seq). True when it was new. */
  function addMessage(msg) {
    return showMessage(msg, null);
  }

  /** `addMessage`, in `pendingNode` when it is our own message just acked. */
  function showMessage(msg, pendingNode) {
    if (!isMessage(msg)) return false;
    var chat = chatOf(msg.conversation_id);
    if (chat.messages.has(msg.seq)) return false;
    chat.messages.set(msg.seq, msg);

    var node = pendingNode || null;
    if (!node && msg.sender.role === "agent" && msg.client_id) {
      // Ours, broadcast before its ack: stored, so the outbox moves on.
      var item = chat.outbox.settle(msg.client_id);
      if (item) node = item.data;
    }
    if (!node) node = buildMessageNode(msg.sender.role, isMe(msg.sender) ? "You" : msg.sender.name, msg.text);
    confirmNode(chat, node, msg);
    chat.nodes.set(msg.seq, node);
    if (msg.seq > chat.highest) chat.highest = msg.seq;
    while (chat.messages.has(chat.contiguous + 1)) chat.contiguous++;

    var summary = mine.get(chat.id) || queue.get(chat.id);
    if (summary && (!summary.last_message || summary.last_message.seq < msg.seq)) summary.last_message = msg;
    if (summary && msg.sender && msg.sender.role === "visitor") summary.last_visitor_message = msg;
    if (msg.sender.role === "visitor") {
      clearRemoteTyping(chat);
      if (selected !== chat.id && msg.seq > chat.lastReadSent) chat.unread++;
    }
    if (selected === chat.id) {
      placeNode(node, msg.seq);
      scrollToEnd();
      scheduleRead();
    }
    renderListsSoon();
    return true;
  }

  function renderReadMarks(chat) {
    chat.nodes.forEach(function (node, seq) {
      if (node.getAttribute("data-role") === "agent" && seq <= chat.visitorRead) setStatus(node, "read");
    });
    if (selected === chat.id) stickToEnd();
  }

  // ---- lists -----------------------------------------------------------------------------------

  var listsQueued = false;

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
    var last = summary.last_message;
    var visitor = summary.last_visitor_message;
    if (summary.state === "queued" && visitor && (!last || last.sender.role === "system")) {
      return visitor;
    }
    return last;
  }

  function lastText(summary) {
    var last = previewOf(summary);
    if (!last || typeof last.text !== "string" || !last.sender) return "";
    var role = last.sender.role;
    if (role === "visitor" || role === "system") return last.text;
    return (isMe(last.sender) ? "You" : last.sender.name) + ": " + last.text;
  }

  function lastClass(summary) {
    var last = previewOf(summary);
    return "item-last" + (last && last.sender && last.sender.role === "system" ? " system" : "");
  }

  function renderLists() {
    var waiting = Array.from(queue.values()).sort(function (a, b) {
      return String(a.waiting_since || "").localeCompare(String(b.waiting_since || ""));
    });
    el.queue.replaceChildren.apply(
      el.queue,
      waiting.map(function (s) {
        var name = visitorName(s);
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
            h("p", { class: lastClass(s), text: lastText(s) }),
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

    var own = Array.from(mine.values());
    el.mine.replaceChildren.apply(
      el.mine,
      own.map(function (s) {
        var name = visitorName(s);
        var chat = chatOf(s.conversation_id);
        var current = selected === s.conversation_id;
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
                chat.typing
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
    var spans = el.queue.querySelectorAll(".waiting[data-since]");
    for (var i = 0; i < spans.length; i++) {
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
    var cid = s.conversation_id;
    var wasQueued = queue.has(cid);
    var wasMine = mine.has(cid);
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
      var before = mine.get(cid);
      if (before && !s.last_message && before.last_message) s.last_message = before.last_message;
      mine.set(cid, s);
    } else if (wasMine) {
      mine.delete(cid);
      left(cid, s);
    }
    renderLists();
  }

  var LEFT_TEXT = {
    queued: "was returned to the queue",
    bot: "was handed back to the bot",
    resolved: "was resolved",
  };

  /** A conversation left this agent's set: drop its view and tell why. */
  function left(cid, s) {
    var chat = chats.get(cid);
    if (chat) {
      chat.outbox.clear();
      if (chat.typing) clearTimeout(chat.typing.timer);
      chats.delete(cid);
    }
    if (selected === cid) {
      var why = LEFT_TEXT[s.state] || "is no longer assigned to you";
      if (s.state === "assigned" && s.agent && s.agent.name) why = "was transferred to " + s.agent.name;
      deselect("The conversation with " + visitorName(s) + " " + why + ".");
    }
  }

  // ---- selection and the chat pane -------------------------------------------------------------

  function deselect(note) {
    stopLocalTyping();
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
    if (selected !== cid) stopLocalTyping();
    selected = cid;
    var summary = mine.get(cid);
    var chat = chatOf(cid);
    chat.unread = 0;
    var name = visitorName(summary);
    el.chatEmpty.hidden = true;
    el.chatMain.hidden = false;
    el.chatMain.setAttribute("data-conversation-id", cid);
    el.chatAvatar.textContent = initial(name);
    el.chatTitle.textContent = name;
    el.chatSub.textContent = "";
    el.chatSub.append(h("span", { class: "badge badge-assigned", text: "Assigned to you" }), " Conversation " + cid.slice(0, 8));
    el.chatError.textContent = "";

    var seqs = Array.from(chat.nodes.keys()).sort(function (a, b) {
      return a - b;
    });
    var children = seqs.map(function (seq) {
      return chat.nodes.get(seq);
    });
    chat.outbox.forEach(function (item) {
      children.push(item.data);
    });
    el.log.replaceChildren.apply(el.log, children);
    scrollToEnd();
    renderTyping();
    renderLists();
    requestSync(chat);
    scheduleRead();
    el.text.focus();
  }

  el.mine.addEventListener("click", function (ev) {
    var target = ev.target.closest("[data-conversation-id]");
    if (target) select(target.getAttribute("data-conversation-id"));
  });

  el.queue.addEventListener("click", function (ev) {
    var button = ev.target.closest("button.accept");
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
      var e = (ack && ack.error) || {};
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

  // ---- sync ------------------------------------------------------------------------------------

  function requestSync(chat) {
    if (chat.syncing) {
      chat.syncAgain = true;
      return;
    }
    if (!socket || !socket.connected || !mine.has(chat.id)) return;
    chat.syncing = true;
    chat.syncAgain = false;
    socket
      .timeout(ACK_TIMEOUT_MS)
      .emit("sync", { conversation_id: chat.id, after_seq: chat.contiguous, limit: SYNC_LIMIT }, function (err, ack) {
        chat.syncing = false;
        var more = false;
        if (!err && ack && ack.ok) {
          var got = Array.isArray(ack.messages) ? ack.messages : [];
          got.forEach(addMessage);
          more = got.length > 0 && Number.isInteger(ack.last_seq) && chat.contiguous < ack.last_seq;
        }
        if (chats.get(chat.id) === chat && (chat.syncAgain || more)) requestSync(chat);
      });
  }

  // ---- read receipts ---------------------------------------------------------------------------

  function scheduleRead() {
    if (readTimer) return;
    readTimer = setTimeout(function () {
      readTimer = null;
      if (!selected || document.visibilityState !== "visible" || !socket || !socket.connected) return;
      var chat = chatOf(selected);
      var seq = chat.highest;
      if (seq <= chat.lastReadSent) return;
      chat.lastReadSent = seq;
      socket.emit("read", { conversation_id: chat.id, seq: seq }, function () {});
    }, 300);
  }

  document.addEventListener("visibilitychange", scheduleRead);

  // ---- typing ----------------------------------------------------------------------------------

  function renderTyping() {
    var chat = selected ? chats.get(selected) : null;
    if (chat && chat.typing) {
      el.typing.hidden = false;
      el.typing.textContent = chat.typing.name + " is typing…";
    } else {
      el.typing.hidden = true;
      el.typing.textContent = "";
    }
    stickToEnd();
  }

  function clearRemoteTyping(chat) {
    if (!chat.typing) return;
    clearTimeout(chat.typing.timer);
    chat.typing = null;
    renderTyping();
    renderListsSoon();
  }

  function onTyping(ev) {
    if (!ev || !ev.sender || ev.sender.role !== "visitor" || typeof ev.conversation_id !== "string") return;
    var chat = chatOf(ev.conversation_id);
    clearRemoteTyping(chat);
    if (ev.typing === true) {
      chat.typing = {
        name: ev.sender.name || "The visitor",
        timer: setTimeout(function () {
          clearRemoteTyping(chat);
        }, REMOTE_TYPING_TTL_MS),
      };
      renderTyping();
      renderListsSoon();
    }
  }

  function stopLocalTyping(silently) {
    clearTimeout(localTypingTimer);
    localTypingTimer = null;
    if (localTyping && !silently && socket && socket.connected && mine.has(localTyping)) {
      socket.emit("typing", { conversation_id: localTyping, typing: false }, function () {});
    }
    localTyping = null;
  }

  el.text.addEventListener("input", function () {
    if (!el.text.value || !selected) {
      stopLocalTyping();
      return;
    }
    if (localTyping !== selected && socket && socket.connected) {
      stopLocalTyping();
      localTyping = selected;
      socket.emit("typing", { conversation_id: selected, typing: true }, function () {});
    }
    clearTimeout(localTypingTimer);
    localTypingTimer = setTimeout(stopLocalTyping, TYPING_IDLE_MS);
  });

  // ---- sending ---------------------------------------------------------------------------------

  function makeOutbox() {
    var outbox = outboxModule.messageOutbox({
      socket: function () {
        return socket;
      },
      setStatus: setStatus,
      show: showMessage,
      fail: failNode,
      onTimeout: function () {
        // No ack in 5 s: the link is probably dead; reconnect now (the heartbeat takes ~45 s).
        if (socket && socket.connected && socket.io.engine) socket.io.engine.close();
      },
      ackTimeoutMs: MESSAGE_ACK_TIMEOUT_MS,
      retryMs: RETRY_DELAY_MS,
    });
    if (socket && socket.connected) outbox.resume(); // else after the next `assigned` snapshot
    return outbox;
  }

  function failNode(node, why) {
    node.classList.remove("pending");
    node.classList.add("failed");
    node.removeAttribute("aria-busy");
    setStatus(node, "failed", "Not sent: " + why);
  }

  el.form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = el.text.value.trim();
    if (!text || !selected) return;
    var chat = chatOf(selected);
    var clientId = newClientId();
    var node = buildMessageNode("agent", "You", text);
    node.classList.add("pending");
    node.setAttribute("aria-busy", "true");
    node.setAttribute("data-client-id", clientId);
    el.log.appendChild(node);
    chat.outbox.push(clientId, { conversation_id: chat.id, client_id: clientId, text: text }, node);
    scrollToEnd();
    el.text.value = "";
    stopLocalTyping();
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
      var e = (ack && ack.error) || {};
      el.chatError.textContent = what + " failed: " + (err ? "no answer from the service" : e.message || e.code || "error");
    });
  }

  el.transferForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var target = el.transferTo.value.trim();
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
    var engine = socket && socket.io.engine;
    var transport = engine && engine.transport ? engine.transport.name : "";
    renderConn("online", "Connected" + (transport ? " · " + transport : ""));
  }

  function connect() {
    var io = window.io;
    socket = io("/agent", {
      forceNew: true, // a fresh connection per sign-in
      // On purpose: first retry after ~0.5 s, doubling up to 5 s, each delay spread ±50% so that a
      // service restart doesn't bring every console back in the same instant.
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
      randomizationFactor: 0.5,
      auth: function (cb) {
        cb({ token: token });
      },
    });
    var current = socket;

    current.io.on("open", function () {
      current.io.engine.on("upgrade", function () {
        if (current === socket && current.connected) renderConnected();
      });
    });

    current.on("connect", function () {
      if (current !== socket) return;
      everConnected = true;
      clearTimeout(refusedTimer);
      refusedTimer = null;
      renderConnected();
      sendAvailability();
    });

    current.on("disconnect", function (reason) {
      if (current !== socket) return;
      renderConn("reconnecting", "Reconnecting…");
      stopLocalTyping(true);
      chats.forEach(function (chat) {
        clearRemoteTyping(chat);
        chat.outbox.pause(); // acks on the old connection no longer count
      });
      if (reason === "io server disconnect") current.connect();
    });

    current.on("connect_error", function (err) {
      if (current !== socket) return;
      var data = err && err.data;
      if (data && (data.code === "unauthorized" || data.code === "forbidden")) {
        signOut("The service refused this token: " + (data.message || data.code) + ".");
        return;
      }
      if (data && typeof data.code === "string") {
        renderConn("refused", "Refused: " + (data.message || data.code) + " · retrying");
        if (!refusedTimer) {
          refusedTimer = setTimeout(function () {
            refusedTimer = null;
            if (current === socket && !current.connected) current.connect();
          }, 2000 + Math.random() * 3000);
        }
        return;
      }
      renderConn("reconnecting", everConnected ? "Reconnecting…" : "Connecting… (" + err.message + ")");
    });

    current.on("queue", function (snapshot) {
      var list = snapshot && Array.isArray(snapshot.conversations) ? snapshot.conversations : [];
      queue = new Map();
      list.forEach(function (s) {
        if (s && typeof s.conversation_id === "string") queue.set(s.conversation_id, s);
      });
      renderLists();
    });

    current.on("assigned", function (snapshot) {
      var list = snapshot && Array.isArray(snapshot.conversations) ? snapshot.conversations : [];
      var before = mine;
      mine = new Map();
      list.forEach(function (s) {
        if (s && typeof s.conversation_id === "string") mine.set(s.conversation_id, s);
      });
      before.forEach(function (s, cid) {
        if (!mine.has(cid)) left(cid, { conversation_id: cid, state: "", visitor: s.visitor });
      });
      // Back online: catch up on the open conversation, then resend what was never acknowledged.
      if (selected && mine.has(selected)) requestSync(chatOf(selected));
      chats.forEach(function (chat) {
        if (mine.has(chat.id)) chat.outbox.resume();
      });
      renderLists();
    });

    current.on("conversation", onSummary);

    current.on("message", function (msg) {
      if (!isMessage(msg)) return;
      var chat = chatOf(msg.conversation_id);
      var gap = msg.seq > chat.contiguous + 1 && !chat.messages.has(msg.seq);
      addMessage(msg);
      if (gap) requestSync(chat); // something was skipped: fetch the hole
    });

    current.on("typing", onTyping);

    current.on("read", function (ev) {
      if (!ev || !ev.reader || ev.reader.role !== "visitor" || !Number.isInteger(ev.seq)) return;
      var chat = chats.get(ev.conversation_id);
      if (!chat || ev.seq <= chat.visitorRead) return;
      chat.visitorRead = ev.seq;
      renderReadMarks(chat);
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
      var old = socket;
      socket = null;
      old.disconnect();
    }
    clearTimeout(refusedTimer);
    refusedTimer = null;
    token = null;
    storageSet(TOKEN_KEY, null);
    queue = new Map();
    mine = new Map();
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
    var value = el.token.value.trim();
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

  window.addEventListener("offline", function () {
    // The heartbeat would notice only after ~45 s: close now; the client keeps retrying.
    if (socket && socket.connected && socket.io.engine) socket.io.engine.close();
  });
  window.addEventListener("online", function () {
    if (socket && !socket.connected) {
      socket.disconnect(); // reconnect at once, not at the end of the backoff delay
      socket.connect();
    }
  });

  import("/outbox.js").then(
    function (module) {
      outboxModule = module;
      if (token) startSession();
      else {
        el.signin.hidden = false;
        el.token.focus();
      }
    },
    function () {
      el.signin.hidden = false;
      el.signinError.textContent = "The console could not be loaded (outbox.js). Reload the page.";
    },
  );
})();
