// @ts-check
/* socketsvc ordered outbox: the client rule "a later message never overtakes an earlier one"
 * (docs/protocol.md, Client rules 3, 7-9), shared by the widget and the agent console.
 *
 * A sender's messages wait in one queue and only the head is on the wire. The next one goes out
 * once the head is acknowledged `ok`, or refused for good (shown as failed and dropped). A
 * retryable refusal (`rate_limited`: after its `retry_after_ms`; `unavailable`, `internal`: after a
 * growing pause), an ack timeout or a reconnect re-sends the head with the same client_id, which the
 * service stores once. So the service stores the messages in the order they were written, whatever
 * happens on the way.
 *
 * A native ES module with no dependencies; the pages load it with import().
 */

/** What a page shows for each status the outbox reports. */
export const STATUS_TEXT = {
  pending: "Sending…",
  offline: "Waiting for connection…",
  retrying: "Retrying…",
  busy: "Busy, retrying…",
};

/** Error codes after which the same message is sent again. */
export const RETRYABLE = new Set(["rate_limited", "unavailable", "internal"]);

/**
 * @typedef {object} OutboxItem
 * @property {string} clientId
 * @property {Record<string, unknown>} payload  what is emitted (it carries the client_id)
 * @property {any} data  the caller's own (e.g. the message's element)
 * @property {number} attempt  sends so far
 * @property {number} refusals  retryable refusals in a row
 */

/**
 * @typedef {object} OutboxOptions
 * @property {(payload: Record<string, unknown>, done: (err: unknown, ack: any) => void) => void} send
 *   emit the payload with an ack timeout; `done(err)` on a timeout, `done(null, ack)` on the ack
 * @property {(item: OutboxItem, status: "pending" | "offline" | "retrying" | "busy") => void} [onStatus]
 * @property {(item: OutboxItem, ack: any) => void} [onAcked]  the head was stored (`ack.ok`)
 * @property {(item: OutboxItem, error: {code?: string, message?: string, fields?: any}) => void} [onFailed]
 *   refused for good; it is dropped and the next message goes out
 * @property {(item: OutboxItem) => void} [onTimeout]  no ack in time (the connection may be gone)
 * @property {number} [retryMs]  base pause before re-sending after a timeout or `unavailable`
 * @property {number} [maxRetryMs]  the longest pause
 */

export class Outbox {
  /** @param {OutboxOptions} options */
  constructor(options) {
    this.options = options;
    /** @type {OutboxItem[]} */
    this.queue = [];
    /** @type {OutboxItem | null} */
    this.inFlight = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.active = false;
  }

  get size() {
    return this.queue.length;
  }

  /**
   * Queue a message; it is sent when every earlier one has been settled.
   * @param {string} clientId
   * @param {Record<string, unknown>} payload
   * @param {any} [data]
   * @returns {OutboxItem}
   */
  push(clientId, payload, data) {
    /** @type {OutboxItem} */
    const item = { clientId, payload, data, attempt: 0, refusals: 0 };
    this.queue.push(item);
    this.status(item, this.active ? "pending" : "offline");
    this.pump();
    return item;
  }

  /** @param {string} clientId */
  has(clientId) {
    return this.queue.some((item) => item.clientId === clientId);
  }

  /** @param {(item: OutboxItem) => void} fn */
  forEach(fn) {
    this.queue.slice().forEach(fn);
  }

  /**
   * The message was stored (e.g. its broadcast came before its ack): forget it and go on.
   * @param {string} clientId
   * @returns {OutboxItem | null}
   */
  settle(clientId) {
    const index = this.queue.findIndex((item) => item.clientId === clientId);
    if (index < 0) return null;
    const [item] = this.queue.splice(index, 1);
    if (this.inFlight === item) this.inFlight = null;
    if (index === 0) {
      this.clearTimer();
      this.pump();
    }
    return item;
  }

  /** The connection is gone: nothing is on the wire any more; everything waits. */
  pause() {
    this.active = false;
    this.inFlight = null;
    this.clearTimer();
    this.queue.forEach((item) => this.status(item, "offline"));
  }

  /** A session is (back): send the head again (same client_id), then the rest in order. */
  resume() {
    this.active = true;
    this.inFlight = null;
    this.clearTimer();
    this.queue.forEach((item) => this.status(item, "pending"));
    this.pump();
  }

  /** Forget everything (the conversation is no longer ours). */
  clear() {
    this.queue = [];
    this.inFlight = null;
    this.clearTimer();
  }

  /** @private */
  clearTimer() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * @private
   * @param {OutboxItem} item
   * @param {"pending" | "offline" | "retrying" | "busy"} status
   */
  status(item, status) {
    if (this.options.onStatus) this.options.onStatus(item, status);
  }

  /**
   * @private
   * @param {number} ms
   */
  later(ms) {
    this.clearTimer();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pump();
    }, ms);
  }

  /** @private Pause before re-sending after the n-th retryable failure in a row (jittered). */
  backoff(/** @type {number} */ n) {
    const base = this.options.retryMs ?? 1000;
    const max = this.options.maxRetryMs ?? 10000;
    const ms = Math.min(max, base * 2 ** Math.max(0, n - 1));
    return ms * (0.75 + Math.random() * 0.5);
  }

  /** @private Send the head if nothing is on the wire. */
  pump() {
    if (!this.active || this.inFlight || this.timer !== null || this.queue.length === 0) return;
    const item = this.queue[0];
    const attempt = ++item.attempt;
    this.inFlight = item;
    this.status(item, "pending");
    this.options.send(item.payload, (err, ack) => {
      if (this.inFlight !== item || item.attempt !== attempt) return; // superseded
      this.inFlight = null;
      if (err) {
        item.refusals++;
        this.status(item, "retrying");
        if (this.options.onTimeout) this.options.onTimeout(item);
        if (this.active) this.later(this.backoff(item.refusals));
        return;
      }
      if (ack && ack.ok) {
        this.queue.shift();
        if (this.options.onAcked) this.options.onAcked(item, ack);
        this.pump();
        return;
      }
      const error = (ack && ack.error) || {};
      if (RETRYABLE.has(error.code)) {
        item.refusals++;
        this.status(item, "busy");
        const wait =
          error.code === "rate_limited" && Number.isInteger(error.retry_after_ms)
            ? error.retry_after_ms
            : this.backoff(item.refusals);
        this.later(wait);
        return;
      }
      this.queue.shift();
      if (this.options.onFailed) this.options.onFailed(item, error);
      this.pump();
    });
  }
}

/**
 * @typedef {object} PageHooks
 * @property {() => any} socket  the current socket.io-client socket
 * @property {(node: any, status: string, text?: string) => void} setStatus  the message's mark
 * @property {(message: any, node: any) => boolean} show  show a stored message in `node`; false
 *   when it was already shown (its broadcast came first)
 * @property {(node: any, why: string) => void} fail  mark a message refused for good
 * @property {() => void} onTimeout  no ack in time: e.g. reconnect now
 * @property {number} [ackTimeoutMs]
 * @property {number} [retryMs]
 */

/**
 * The outbox of a chat page: items carry the message's element; `message` is emitted with an ack
 * timeout (5 s by default: a stored message is acked in milliseconds, so longer means a dead link).
 * @param {PageHooks} page
 */
export function messageOutbox(page) {
  return new Outbox({
    send(payload, done) {
      page.socket().timeout(page.ackTimeoutMs ?? 5000).emit("message", payload, done);
    },
    onStatus(item, status) {
      page.setStatus(item.data, status === "offline" ? "offline" : "pending", STATUS_TEXT[status]);
    },
    onAcked(item, ack) {
      const node = item.data;
      // Already shown (the broadcast won the race): just drop the pending bubble.
      if (!page.show(ack.message, node) && node.getAttribute("data-seq") === null) node.remove();
    },
    onFailed(item, error) {
      // Too long: the field's own words say the limit ("Longer than the maximum of 4000 characters.").
      const fields = error.fields && typeof error.fields === "object" ? error.fields : {};
      const detail = error.code === "too_large" && Array.isArray(fields.text) ? String(fields.text[0]) : "";
      page.fail(item.data, detail || error.message || error.code || "error");
    },
    onTimeout: page.onTimeout,
    retryMs: page.retryMs,
  });
}
