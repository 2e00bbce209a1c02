// A minimal socketsvc bot worker (docs/writing-a-bot.md), on the official socket.io-client.
//
//   SOCKETSVC_URL=http://localhost:8080 BOT_NAME=helper BOT_KEY=... node docs/examples/bot-worker.mjs
//
// It answers every visitor message with "You said: ...", hands the conversation to a human
// when the visitor asks for one, and resolves it on "bye". Replace `answer` with your bot
// (a Rasa REST call, an LLM, a script). BOT_TOKEN (a JWT with role "bot") may replace BOT_KEY.
// BOT_REPLY_DELAY_MS makes it think before answering (the tests use it to keep work in flight).
import { io } from "socket.io-client";

const url = process.env.SOCKETSVC_URL ?? "http://localhost:8080";
const delay = Number(process.env.BOT_REPLY_DELAY_MS ?? 0);
const auth = { bot: process.env.BOT_NAME, capacity: 10 };
if (process.env.BOT_TOKEN) auth.token = process.env.BOT_TOKEN;
else auth.key = process.env.BOT_KEY;

const socket = io(`${url}/bot`, { auth, transports: ["websocket"] });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// What the bot says: a reply, a handoff to a human, or the end of the conversation.
function answer(text) {
  if (/\b(human|agent|person)\b/i.test(text)) {
    return { handoff: { reason: "visitor asked for a human", summary: `The visitor wrote: ${text}` } };
  }
  if (/^bye\b/i.test(text)) return { resolve: true };
  return { text: `You said: ${text}` };
}

socket.on("ready", (info) => console.log(`ready ${info.worker_id}`));

socket.on("connect_error", (err) => {
  // A refused handshake (bad credentials, unknown bot) is final; a network error is retried.
  console.log(`refused ${err.data?.code ?? "network"}: ${err.message}`);
  if (!socket.active) process.exit(1);
});

socket.on("visitor_message", async (delivery) => {
  const { delivery_id: id } = delivery;
  console.log(`got ${id} attempt ${delivery.attempt}`);
  const said = answer(delivery.message?.text ?? "");
  if (delay) {
    await socket.emitWithAck("typing", { delivery_id: id, typing: true });
    await sleep(delay);
  }
  let ack;
  if (said.handoff) ack = await socket.emitWithAck("handoff", { delivery_id: id, ...said.handoff });
  else if (said.resolve) ack = await socket.emitWithAck("resolve", { delivery_id: id });
  // The same client_id on every attempt: a redelivered message is never stored twice.
  else ack = await socket.emitWithAck("message", { delivery_id: id, client_id: "reply", text: said.text });
  console.log(ack.ok ? `answered ${id}` : `not stored ${id}: ${ack.error.code} ${ack.error.message}`);
});
