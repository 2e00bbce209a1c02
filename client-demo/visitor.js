/* socketsvc visitor widget (demo). Plain script, no build step; needs /vendor/socket.io.min.js.
 *
 * - connects to the /chat namespace with the visitor token kept in localStorage;
 * - shows the conversation ordered by seq, each seq once;
 * - sends each message with a fresh client_id, shows it as pending until the ack and retries it
 *   with the same client_id after a reconnect (the service stores it once);
 * - calls `sync` on every (re)connect and whenever a message arrives past a gap.
 * All text from the server or the visitor is rendered with textContent, never as HTML.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "socketsvc.visitor_token";
  var ACK_TIMEOUT_MS = 15000;
  var TYPING_IDLE_MS = 3000;
  var REMOTE_TYPING_TTL_MS = 15000;
  var SYNC_LIMIT = 200;

  var el = {
    log: document.getElementById("log"),
    text: document.getElementById("text"),
    send: document.getElementById("send"),
    form: document.getElementById("composer"),
    handoff: document.getElementById("handoff"),
    state: document.getElementById("state"),
    typing: document.getElementById("typing"),
    transport: document.getElementById("transport"),
    connection: document.getElementById("connection"),
    error: document.getElementById("composer-error"),
  };

  // ---- storage -------------------------------------------------------------------------------

  function loadToken() {
    try {
      return window.localStorage.getItem(TOKEN_KEY);
    } catch (e) {
      return null;
    }
  }

  function saveToken(token) {
    try {
      if (token) window.localStorage.setItem(TOKEN_KEY, token);
      else window.localStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* storage unavailable (private mode): the session lasts as long as the page */
    }
  }

  // ---- state ---------------------------------------------------------------------------------

  var token = loadToken();
  var conversationId = null;
  var messages = new Map(); // seq -> Message
  var contiguousSeq = 0; // every seq 1..contiguousSeq has been seen
  var highestSeq = 0;
  var pending = new Map(); // client_id -> {text, node, attempt}
  var typingBy = new Map(); // sender key -> {name, timer}
  var syncing = false;
  var syncAgain = false;
  var lastReadSent = 0;
  var readTimer = null;
  var localTyping = false;
  var localTypingTimer = null;
  var resetOnce = false;
  var convState = null;

  // ---- rendering -----------------------------------------------------------------------------

  var ROLE_LABEL = { visitor: "You", bot: "Bot", agent: "Agent", system: "System" };

  function formatTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function buildMessageNode(role, name, text) {
    var node = document.createElement("article");
    node.className = "msg msg-" + (ROLE_LABEL[role] ? role : "system");
    node.setAttribute("data-role", ROLE_LABEL[role] ? role : "system");

    var head = document.createElement("header");
    head.className = "msg-head";
    var who = document.createElement("span");
    who.className = "msg-sender";
    who.textContent = role === "visitor" ? "You" : name || ROLE_LABEL[role] || role;
    var when = document.createElement("time");
    when.className = "msg-time";
    head.appendChild(who);
    head.appendChild(document.createTextNode(" "));
    head.appendChild(when);

    var body = document.createElement("p");
    body.className = "msg-text";
    body.textContent = text;

    var note = document.createElement("span");
    note.className = "msg-note";

    node.appendChild(head);
    node.appendChild(body);
    node.appendChild(note);
    return node;
  }

  function setNote(node, text) {
    var note = node.querySelector(".msg-note");
    if (note) note.textContent = text;
  }

  function confirmNode(node, msg) {
    node.setAttribute("data-seq", String(msg.seq));
    node.setAttribute("data-id", msg.id);
    if (msg.client_id) node.setAttribute("data-client-id", msg.client_id);
    node.classList.remove("pending", "failed");
    node.removeAttribute("aria-busy");
    setNote(node, "");
    var when = node.querySelector(".msg-time");
    if (when) {
      when.dateTime = msg.created_at;
      when.textContent = formatTime(msg.created_at);
    }
  }

  /** Put a confirmed node at its place: ordered by seq, before any pending message. */
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

  function isValidMessage(msg) {
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

  /** Add one stored message to the view (idempotent by seq). Returns true if it was new. */
  function addMessage(msg) {
    if (!isValidMessage(msg)) return false;
    if (conversationId && msg.conversation_id && msg.conversation_id !== conversationId) {
      return false;
    }
    if (messages.has(msg.seq)) return false;
    messages.set(msg.seq, msg);

    var node = null;
    if (msg.client_id && pending.has(msg.client_id) && msg.sender.role === "visitor") {
      node = pending.get(msg.client_id).node;
      pending.delete(msg.client_id);
    }
    if (!node) node = buildMessageNode(msg.sender.role, msg.sender.name, msg.text);
    confirmNode(node, msg);
    placeNode(node, msg.seq);

    if (msg.seq > highestSeq) highestSeq = msg.seq;
    while (messages.has(contiguousSeq + 1)) contiguousSeq++;

    clearRemoteTyping(senderKey(msg.sender));
    scheduleRead();
    scrollToEnd();
    return true;
  }

  function clearLog() {
    messages.clear();
    contiguousSeq = 0;
    highestSeq = 0;
    lastReadSent = 0;
    var nodes = Array.prototype.slice.call(el.log.querySelectorAll(".msg[data-seq]"));
    nodes.forEach(function (n) {
      n.remove();
    });
  }

  var STATE_TEXT = {
    bot: "You are chatting with the bot.",
    queued: "Waiting for a human agent…",
    assigned: "You are chatting with a human agent.",
    resolved: "This conversation has been resolved.",
  };

  function renderState(info) {
    if (!info || typeof info.state !== "string") return;
    convState = info.state;
    var text = STATE_TEXT[info.state] || "State: " + info.state;
    if (info.state === "queued" && Number.isInteger(info.queue_position)) {
      text = "Waiting for a human agent (position " + info.queue_position + " in the queue)…";
    }
    if (info.state === "assigned" && info.agent && typeof info.agent.name === "string") {
      text = "You are chatting with " + info.agent.name + ".";
    }
    el.state.textContent = text;
    el.state.setAttribute("data-state", info.state);
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
    // Sending stays possible while offline: the message waits as pending and goes out on reconnect.
    el.handoff.disabled = !socket.connected || convState === "queued" || convState === "assigned";
  }

  function renderConnection(connected, label) {
    el.connection.textContent = label;
    el.connection.setAttribute("data-connected", connected ? "true" : "false");
    var engine = socket.io.engine;
    el.transport.textContent = connected && engine && engine.transport ? engine.transport.name : "none";
    updateControls();
  }

  // ---- typing (remote) -----------------------------------------------------------------------

  function senderKey(sender) {
    return sender ? String(sender.role) + ":" + String(sender.id) : "";
  }

  function renderTyping() {
    var names = [];
    typingBy.forEach(function (v) {
      names.push(v.name);
    });
    if (names.length === 0) {
      el.typing.hidden = true;
      el.typing.textContent = "";
    } else {
      el.typing.hidden = false;
      el.typing.textContent = names.join(", ") + (names.length > 1 ? " are" : " is") + " typing…";
    }
  }

  function clearRemoteTyping(key) {
    var entry = typingBy.get(key);
    if (!entry) return;
    clearTimeout(entry.timer);
    typingBy.delete(key);
    renderTyping();
  }

  function onTyping(ev) {
    if (!ev || !ev.sender || ev.sender.role === "visitor") return;
    if (conversationId && ev.conversation_id && ev.conversation_id !== conversationId) return;
    var key = senderKey(ev.sender);
    clearRemoteTyping(key);
    if (ev.typing) {
      var name = ev.sender.name || ROLE_LABEL[ev.sender.role] || "Someone";
      var timer = setTimeout(function () {
        clearRemoteTyping(key);
      }, REMOTE_TYPING_TTL_MS);
      typingBy.set(key, { name: name, timer: timer });
      renderTyping();
    }
  }

  // ---- socket --------------------------------------------------------------------------------

  var params = new URLSearchParams(window.location.search);
  var options = {
    // A function, so that every (re)connect presents the latest token.
    auth: function (cb) {
      cb(token ? { visitor_token: token } : {});
    },
  };
  var forced = params.get("transport");
  if (forced === "polling" || forced === "websocket") options.transports = [forced];

  var socket = window.io("/chat", options);

  // Each (re)opened Engine.IO connection may upgrade from polling to WebSocket: show it.
  socket.io.on("open", function () {
    socket.io.engine.on("upgrade", function () {
      if (socket.connected) renderConnection(true, "online");
    });
  });

  socket.on("connect", function () {
    renderConnection(true, "online");
  });

  socket.on("disconnect", function (reason) {
    // After "io server disconnect" the client does not reconnect by itself; otherwise it does.
    renderConnection(
      false,
      reason === "io server disconnect" ? "disconnected by the service" : "offline (" + reason + "), reconnecting…",
    );
    typingBy.forEach(function (_, key) {
      clearRemoteTyping(key);
    });
    pending.forEach(function (p) {
      p.attempt++; // acks of the old connection no longer count: resent after reconnecting
      setNote(p.node, "waiting for connection…");
    });
  });

  socket.on("connect_error", function (err) {
    var data = err && err.data;
    if (data && data.code === "unauthorized" && token && !resetOnce) {
      // The stored token expired or is unknown: start over as a new visitor.
      resetOnce = true;
      token = null;
      saveToken(null);
      socket.connect();
      return;
    }
    var why = data && typeof data.message === "string" ? data.message : err.message;
    renderConnection(false, "cannot connect: " + why);
  });

  socket.on("session", function (s) {
    if (!s || typeof s !== "object") return;
    if (typeof s.visitor_token === "string" && s.visitor_token) {
      token = s.visitor_token;
      saveToken(token);
    }
    resetOnce = false;
    if (conversationId && s.conversation_id !== conversationId) clearLog();
    conversationId = s.conversation_id;
    el.log.setAttribute("data-conversation-id", String(s.conversation_id));
    renderStateName(s.state);
    requestSync();
    flushPending();
  });

  socket.on("message", function (msg) {
    if (!isValidMessage(msg)) return;
    var gap = msg.seq > contiguousSeq + 1 && !messages.has(msg.seq);
    addMessage(msg);
    if (gap) requestSync();
  });

  socket.on("typing", onTyping);
  socket.on("state", function (info) {
    if (conversationId && info && info.conversation_id && info.conversation_id !== conversationId) {
      return;
    }
    renderState(info);
  });

  // ---- sync ----------------------------------------------------------------------------------

  function requestSync() {
    if (syncing) {
      syncAgain = true;
      return;
    }
    if (!socket.connected) return;
    syncing = true;
    syncAgain = false;
    var from = contiguousSeq;
    socket.timeout(ACK_TIMEOUT_MS).emit("sync", { after_seq: from, limit: SYNC_LIMIT }, function (err, ack) {
      syncing = false;
      var more = false;
      if (!err && ack && ack.ok) {
        var got = Array.isArray(ack.messages) ? ack.messages : [];
        got.forEach(addMessage);
        renderStateName(ack.state);
        // A limited page: keep going until we have everything up to last_seq.
        more = got.length > 0 && Number.isInteger(ack.last_seq) && contiguousSeq < ack.last_seq;
      }
      if (syncAgain || more) requestSync();
    });
  }

  // ---- read receipts -------------------------------------------------------------------------

  function scheduleRead() {
    if (readTimer) return;
    readTimer = setTimeout(function () {
      readTimer = null;
      if (document.visibilityState !== "visible" || !socket.connected) return;
      var seq = contiguousSeq;
      if (seq <= lastReadSent) return;
      lastReadSent = seq;
      socket.emit("read", { seq: seq }, function () {});
    }, 800);
  }

  document.addEventListener("visibilitychange", scheduleRead);

  // ---- sending -------------------------------------------------------------------------------

  function newClientId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    // Fallback for non-secure contexts (plain http on a LAN address).
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) {
        return (b + 0x100).toString(16).slice(1);
      })
      .join("");
  }

  function transmit(clientId) {
    var p = pending.get(clientId);
    if (!p || !socket.connected) return;
    var attempt = ++p.attempt;
    setNote(p.node, "sending…");
    socket
      .timeout(ACK_TIMEOUT_MS)
      .emit("message", { client_id: clientId, text: p.text }, function (err, ack) {
        var cur = pending.get(clientId);
        if (!cur || cur.attempt !== attempt) return; // confirmed already, or superseded by a retry
        if (err) {
          // No ack in time: retry with the same client_id (the service stores it once).
          setNote(cur.node, "not delivered yet, retrying…");
          setTimeout(function () {
            if (pending.get(clientId) === cur && cur.attempt === attempt) transmit(clientId);
          }, 2000);
          return;
        }
        if (ack && ack.ok && ack.message) {
          if (!addMessage(ack.message)) {
            // Already shown (the broadcast won the race): just drop the pending bubble.
            pending.delete(clientId);
            if (cur.node.getAttribute("data-seq") === null) cur.node.remove();
          }
          return;
        }
        var error = (ack && ack.error) || {};
        if (error.code === "rate_limited" || error.code === "unavailable") {
          setNote(cur.node, "busy, retrying…");
          setTimeout(function () {
            if (pending.get(clientId) === cur && cur.attempt === attempt) transmit(clientId);
          }, 3000);
          return;
        }
        pending.delete(clientId);
        cur.node.classList.remove("pending");
        cur.node.classList.add("failed");
        cur.node.removeAttribute("aria-busy");
        setNote(cur.node, "Not sent: " + (error.message || error.code || "error"));
      });
  }

  function flushPending() {
    pending.forEach(function (_, clientId) {
      transmit(clientId);
    });
  }

  function sendText(raw) {
    var text = raw.trim();
    el.error.textContent = "";
    if (!text) return false;
    if (text.length > 4000) {
      el.error.textContent = "Messages can be at most 4000 characters.";
      return false;
    }
    var clientId = newClientId();
    var node = buildMessageNode("visitor", "You", text);
    node.classList.add("pending");
    node.setAttribute("aria-busy", "true");
    node.setAttribute("data-client-id", clientId);
    setNote(node, socket.connected ? "sending…" : "waiting for connection…");
    el.log.appendChild(node);
    scrollToEnd();
    pending.set(clientId, { text: text, node: node, attempt: 0 });
    transmit(clientId);
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

  // ---- typing (local) ------------------------------------------------------------------------

  function stopLocalTyping() {
    clearTimeout(localTypingTimer);
    localTypingTimer = null;
    if (localTyping && socket.connected) socket.emit("typing", { typing: false }, function () {});
    localTyping = false;
  }

  el.text.addEventListener("input", function () {
    if (!el.text.value) {
      stopLocalTyping();
      return;
    }
    if (!localTyping && socket.connected) {
      localTyping = true;
      socket.emit("typing", { typing: true }, function () {});
    }
    clearTimeout(localTypingTimer);
    localTypingTimer = setTimeout(stopLocalTyping, TYPING_IDLE_MS);
  });

  // ---- handoff -------------------------------------------------------------------------------

  el.handoff.addEventListener("click", function () {
    if (!socket.connected) return;
    el.handoff.disabled = true;
    el.error.textContent = "";
    socket.timeout(ACK_TIMEOUT_MS).emit("handoff", {}, function (err, ack) {
      if (!err && ack && ack.ok) {
        if (ack.state && typeof ack.state === "object") renderState(ack.state);
        else renderStateName(ack.state);
      } else {
        var e = (ack && ack.error) || {};
        el.error.textContent = "Could not reach a human: " + (e.message || e.code || "no answer");
      }
      updateControls();
    });
  });

  renderConnection(false, "connecting…");
})();
