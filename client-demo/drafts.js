// @ts-check
/* socketsvc demo pages: streamed bot replies (`message_delta`, docs/protocol.md).
 *
 * A reply being written arrives as `message_delta` events with a `draft_id` and the whole text so
 * far (cumulative: a lost event is repaired by the next one). It is shown as a draft bubble at the
 * end of the log, without a seq. The stored reply is a normal `message` carrying the same
 * `draft_id`: it replaces the draft. `discarded: true` (a handoff or a failure cut the reply
 * short) removes it. Drafts are never synced: a reconnect drops them (the stored message, if any,
 * comes through `sync`).
 */

import { appendNode, buildMessageNode, followEnd, markDays, stickToEnd } from "./format.js";

/** The drafts of one log, by draft_id. */
export class Drafts {
  /**
   * @param {() => Element} log  the element the drafts go at the end of
   * @param {string} markedRole  the page's own role (as for buildMessageNode)
   */
  constructor(log, markedRole) {
    this.log = log;
    this.markedRole = markedRole;
    /** @type {Map<string, Element>} */
    this.nodes = new Map();
  }

  /**
   * A `message_delta` event: create, grow or drop its draft. False if the event is not one.
   * @param {any} ev
   */
  delta(ev) {
    if (!ev || typeof ev.draft_id !== "string" || typeof ev.text !== "string") return false;
    if (ev.discarded === true) {
      this.drop(ev.draft_id);
      return true;
    }
    let node = this.nodes.get(ev.draft_id);
    const fresh = !node;
    if (!node) {
      const sender = ev.sender && typeof ev.sender === "object" ? ev.sender : {};
      node = buildMessageNode(sender.role || "bot", sender.name || "", "", this.markedRole);
      node.classList.add("draft");
      node.setAttribute("data-draft-id", ev.draft_id);
      node.setAttribute("aria-busy", "true");
      this.nodes.set(ev.draft_id, node);
    }
    const text = node.querySelector(".msg-text");
    if (text) text.textContent = ev.text;
    const log = this.log();
    if (node.parentNode !== log || node !== log.lastElementChild) appendNode(log, node);
    // A new reply scrolls into view only if the reader is at the end (not reading history).
    if (fresh) followEnd(log);
    else stickToEnd(log);
    return true;
  }

  /**
   * A stored `message`: its draft (if it had one) is replaced by it.
   * @param {any} msg
   */
  settle(msg) {
    if (msg && typeof msg.draft_id === "string") this.drop(msg.draft_id);
  }

  /** @param {string} draftId */
  drop(draftId) {
    const node = this.nodes.get(draftId);
    if (node) {
      node.remove();
      markDays(this.log()); // no separator left over the draft's place
    }
    this.nodes.delete(draftId);
  }

  /** Drop every draft (a reconnect: whatever was stored comes back through `sync`). */
  clear() {
    this.nodes.forEach((node) => node.remove());
    if (this.nodes.size) markDays(this.log());
    this.nodes.clear();
  }
}
