// @ts-check
/* socketsvc demo pages: the protocol core the visitor widget and the agent console share
 * (docs/protocol.md, "Client rules"):
 *
 *   - a conversation's messages are kept by seq, each seq once, however they arrive (live event,
 *     ack, or `sync`); `contiguous` is the highest seq with no gap below it;
 *   - a live message that skips a seq, and every (re)connect, calls `sync` with
 *     `after_seq: contiguous`, paging until `last_seq`;
 *   - one's own message broadcast before its ack settles its outbox item (dedupe by client_id);
 *   - read marks both ways (`read` events received, `read` emitted for what is on screen);
 *   - typing both ways (`typing: true` once, `false` after 3 s idle; others' dropped after 10 s);
 *   - the ordered outbox of a page (outbox.js) and the connection's small habits (reconnect
 *     options with jitter, closing the transport when the network is gone).
 *
 * A native ES module; the pages load it with import() (the widget, from the service's origin).
 */

import { messageOutbox } from "./outbox.js";
import { confirmNode, failNode, setStatus } from "./format.js";

export const ACK_TIMEOUT_MS = 8000;
/** A stored message is acked in milliseconds: no ack in 5 s means a dead link. */
export const MESSAGE_ACK_TIMEOUT_MS = 5000;
export const RETRY_DELAY_MS = 1000;
export const TYPING_IDLE_MS = 3000;
export const REMOTE_TYPING_TTL_MS = 10000;
export const SYNC_LIMIT = 200;
/** The longest text until the service says (the visitor `session`'s `max_text_length`). */
export const DEFAULT_MAX_TEXT = 4000;

/**
 * Socket.IO's reconnection, chosen on purpose: the first retry after ~0.5 s (a blip or a rolling
 * restart heals fast), each next one twice as long up to 5 s, every delay spread ±50% so that the
 * clients a deploy drops at once do not all come back in the same instant (no thundering herd).
 */
export const RECONNECT_OPTIONS = Object.freeze({
  reconnectionDelay: 500,
  reconnectionDelayMax: 5000,
  randomizationFactor: 0.5,
});

/**
 * The parts of a socket.io-client socket used here.
 * @typedef {object} Socket
 * @property {boolean} connected
 * @property {(event: string, ...args: any[]) => unknown} emit
 * @property {(ms: number) => {emit: (event: string, ...args: any[]) => unknown}} timeout
 * @property {{engine?: {close(): void, transport?: {name: string}}}} io
 * @property {() => unknown} connect
 * @property {() => unknown} disconnect
 */

/**
 * @typedef {object} Sender
 * @property {string} role  visitor, bot, agent or system
 * @property {string} [id]
 * @property {string} [name]
 */

/**
 * A stored message as the service sends it.
 * @typedef {object} Message
 * @property {string} id
 * @property {string} [conversation_id]
 * @property {number} seq
 * @property {string} text
 * @property {string | null} [client_id]
 * @property {string} created_at
 * @property {Sender} sender
 */

/**
 * @param {any} msg
 * @returns {msg is Message}
 */
export function isMessage(msg) {
  return !!(
    msg &&
    typeof msg === "object" &&
    Number.isInteger(msg.seq) &&
    msg.seq > 0 &&
    typeof msg.text === "string" &&
    msg.sender &&
    typeof msg.sender === "object"
  );
}

/**
 * @param {Socket | null | undefined} socket
 * @returns {socket is Socket}
 */
export function isConnected(socket) {
  return !!(socket && socket.connected);
}

/**
 * Close the transport so that the client reconnects now (its backoff starts over): the heartbeat
 * would notice a dead link only after ~45 s.
 * @param {Socket | null | undefined} socket
 */
export function restartTransport(socket) {
  if (isConnected(socket) && socket.io.engine) socket.io.engine.close();
}

/**
 * The network is back: reconnect at once instead of at the end of the current backoff delay.
 * @param {Socket | null | undefined} socket
 */
export function reconnectNow(socket) {
  if (socket && !socket.connected) {
    socket.disconnect();
    socket.connect();
  }
}

/**
 * `polling` or `websocket`; "" when there is no transport.
 * @param {Socket | null | undefined} socket
 */
export function transportName(socket) {
  const engine = socket && socket.io.engine;
  return engine && engine.transport ? engine.transport.name : "";
}

/** A connection the service refused is not retried by Socket.IO itself: retry after 2-5 s. */
export function refusedRetryDelay() {
  return 2000 + Math.random() * 3000;
}

/**
 * @typedef {object} ConversationHooks
 * @property {() => Socket | null} socket
 * @property {(msg: Message) => unknown} add  the page shows one message (it calls `record`)
 * @property {string} markedRole  the page's own side, whose messages carry Sent / Read marks
 * @property {Record<string, unknown>} [extra]  sent with `sync` and `read` (the agent's conversation_id)
 * @property {() => boolean} [canSync]  e.g. the conversation is still the agent's
 * @property {(ack: any) => void} [onSyncAck]  after each `sync` page that was ok
 */

/** One conversation's messages by seq, their elements, and its sync and read-receipt state. */
export class Conversation {
  /**
   * @param {string | null} id
   * @param {ConversationHooks} hooks
   */
  constructor(id, hooks) {
    this.id = id;
    this.hooks = hooks;
    /** @type {Map<number, Message>} */
    this.messages = new Map();
    /** @type {Map<number, Element>} */
    this.nodes = new Map();
    /** Every seq 1..contiguous is here. */
    this.contiguous = 0;
    this.highest = 0;
    /** The other side has read up to this seq. */
    this.readBy = 0;
    /** We have told the service we read up to this seq. */
    this.lastReadSent = 0;
    this.syncing = false;
    this.syncAgain = false;
    /** Set when the conversation is dropped: a `sync` answer coming later is ignored. */
    this.closed = false;
  }

  /** @param {number} seq */
  has(seq) {
    return this.messages.has(seq);
  }

  /**
   * Would this message leave a hole below it (a seq was skipped: an event lost in between)?
   * @param {Message} msg
   */
  isGap(msg) {
    return msg.seq > this.contiguous + 1 && !this.messages.has(msg.seq);
  }

  /**
   * Keep a message and the element that shows it, marked Sent or Read if it is our own.
   * False when that seq is already here (nothing is kept then).
   * @param {Message} msg
   * @param {Element} node
   */
  record(msg, node) {
    if (this.messages.has(msg.seq)) return false;
    this.messages.set(msg.seq, msg);
    this.nodes.set(msg.seq, node);
    confirmNode(node, msg, this.hooks.markedRole, this.readBy);
    if (msg.seq > this.highest) this.highest = msg.seq;
    while (this.messages.has(this.contiguous + 1)) this.contiguous++;
    return true;
  }

  /**
   * A live `message` event: show it, and fetch the hole if it skipped a seq.
   * @param {Message} msg
   */
  receive(msg) {
    const gap = this.isGap(msg);
    this.hooks.add(msg);
    if (gap) this.sync();
  }

  /**
   * Ask for everything after `contiguous`, page after page up to `last_seq`. A call while one is
   * under way runs again when it is answered.
   */
  sync() {
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    const socket = this.hooks.socket();
    if (!isConnected(socket) || (this.hooks.canSync && !this.hooks.canSync())) return;
    this.syncing = true;
    this.syncAgain = false;
    const payload = { ...this.hooks.extra, after_seq: this.contiguous, limit: SYNC_LIMIT };
    socket.timeout(ACK_TIMEOUT_MS).emit("sync", payload, (/** @type {unknown} */ err, /** @type {any} */ ack) => {
      this.syncing = false;
      let more = false;
      if (!err && ack && ack.ok) {
        const got = Array.isArray(ack.messages) ? ack.messages : [];
        got.forEach((/** @type {Message} */ m) => this.hooks.add(m));
        if (this.hooks.onSyncAck) this.hooks.onSyncAck(ack);
        // A full page: keep going until we have everything up to last_seq.
        more = got.length > 0 && Number.isInteger(ack.last_seq) && this.contiguous < ack.last_seq;
      }
      if (!this.closed && (this.syncAgain || more)) this.sync();
    });
  }

  /**
   * A `read` event from the other side: mark our messages up to `seq` Read. False if nothing new.
   * @param {number} seq
   */
  markRead(seq) {
    if (seq <= this.readBy) return false;
    this.readBy = seq;
    this.nodes.forEach((node, s) => {
      if (node.getAttribute("data-role") === this.hooks.markedRole && s <= this.readBy) setStatus(node, "read");
    });
    return true;
  }

  /**
   * Tell the service we have seen everything up to `seq` (once per seq, only while connected).
   * @param {number} seq
   */
  sendRead(seq) {
    const socket = this.hooks.socket();
    if (seq <= this.lastReadSent || !isConnected(socket)) return false;
    this.lastReadSent = seq;
    socket.emit("read", { ...this.hooks.extra, seq }, () => {});
    return true;
  }

  /** Forget every message (e.g. the visitor's conversation was replaced); removes their elements. */
  clear() {
    this.messages.clear();
    this.nodes.forEach((n) => n.remove());
    this.nodes.clear();
    this.contiguous = 0;
    this.highest = 0;
    this.readBy = 0;
  }
}

/**
 * The element of our own message `msg` when it is still in the outbox: its broadcast came before
 * its ack, so it is stored, and the outbox moves on (the same message is never shown twice).
 * @param {Message} msg
 * @param {string} ownRole
 * @param {{settle(clientId: string): {data: any} | null} | null} outbox
 * @returns {Element | null}
 */
export function claimPending(msg, ownRole, outbox) {
  if (!outbox || msg.sender.role !== ownRole || !msg.client_id) return null;
  const item = outbox.settle(msg.client_id);
  return item ? item.data : null;
}

/**
 * The ordered outbox of a page (outbox.js), its items carrying the message's element.
 * @param {object} page
 * @param {() => Socket | null} page.socket
 * @param {(msg: any, node: any) => boolean} page.show  show a stored message in `node`
 * @param {() => void} page.onTimeout  no ack in 5 s: reconnect now
 */
export function pageOutbox(page) {
  return messageOutbox({
    socket: page.socket,
    setStatus,
    show: page.show,
    fail: failNode,
    onTimeout: page.onTimeout,
    ackTimeoutMs: MESSAGE_ACK_TIMEOUT_MS,
    retryMs: RETRY_DELAY_MS,
  });
}

/** Who else is typing: a name per key, each dropped after 10 s if the "stopped" event is lost. */
export class RemoteTyping {
  /** @param {() => void} onChange */
  constructor(onChange) {
    this.onChange = onChange;
    /** @type {Map<string, {name: string, timer: ReturnType<typeof setTimeout>}>} */
    this.by = new Map();
  }

  get names() {
    return Array.from(this.by.values(), (v) => v.name);
  }

  get size() {
    return this.by.size;
  }

  /**
   * A `typing` event.
   * @param {string} key  who (e.g. "agent:alice")
   * @param {string} name
   * @param {boolean} typing
   */
  set(key, name, typing) {
    this.clear(key);
    if (!typing) return;
    // A lost "typing: false" must not leave the indicator up forever.
    this.by.set(key, { name, timer: setTimeout(() => this.clear(key), REMOTE_TYPING_TTL_MS) });
    this.onChange();
  }

  /** @param {string} key */
  clear(key) {
    const entry = this.by.get(key);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.by.delete(key);
    this.onChange();
  }

  /** @param {boolean} [silently]  no onChange */
  clearAll(silently) {
    if (this.by.size === 0) return;
    this.by.forEach((entry) => clearTimeout(entry.timer));
    this.by.clear();
    if (!silently) this.onChange();
  }
}

/**
 * Our own typing: `typing: true` once when typing starts in a conversation, `typing: false` after
 * 3 s without a keystroke, on send, or when moving to another conversation.
 */
export class LocalTyping {
  /**
   * @param {object} options
   * @param {() => Socket | null} options.socket
   * @param {(key: string) => Record<string, unknown>} [options.payload]  what to send besides `typing`
   * @param {(key: string) => boolean} [options.canStop]  whether to still tell `false` there
   */
  constructor(options) {
    this.options = options;
    /** @type {string | null} the conversation we told we are typing in */
    this.active = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
  }

  /**
   * A keystroke in the input.
   * @param {string | null} key  where (null: nowhere)
   * @param {boolean} hasText  the input is not empty
   */
  input(key, hasText) {
    if (!hasText || key === null) {
      this.stop();
      return;
    }
    const socket = this.options.socket();
    if (this.active !== key && isConnected(socket)) {
      this.stop();
      this.active = key;
      socket.emit("typing", { ...this.payload(key), typing: true }, () => {});
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.stop(), TYPING_IDLE_MS); // idle for 3 s: stopped typing
  }

  /** @param {boolean} [silently]  forget it without telling (e.g. the connection is gone) */
  stop(silently) {
    clearTimeout(this.timer);
    this.timer = undefined;
    const key = this.active;
    this.active = null;
    if (key === null || silently) return;
    const socket = this.options.socket();
    if (isConnected(socket) && (!this.options.canStop || this.options.canStop(key))) {
      socket.emit("typing", { ...this.payload(key), typing: false }, () => {});
    }
  }

  /** @param {string} key */
  payload(key) {
    return this.options.payload ? this.options.payload(key) : {};
  }
}
