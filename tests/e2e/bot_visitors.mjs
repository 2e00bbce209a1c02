// Visitors for the /bot tests (tests/support/bot_workers.py): VISITORS visitors connect to
// SOCKETSVC_URL/chat with the official socket.io-client, each sends one message, and waits up to
// WAIT_MS for the reply of the bot BOT_NAME (then a little longer, to see a duplicate). Prints
// one JSON line: [{conversation_id, replies, replied_at, synced}] for every visitor (replied_at:
// the first reply's arrival, epoch milliseconds). A visitor that saw no reply then `sync`s, as a
// client does on its next reconnect or event (broadcast is best effort: a reply stored by a
// process killed before it published it reaches the visitor that way); `synced` counts the
// bot's replies that sync returned that were not seen live.
import { io } from "socket.io-client";

const url = process.env.SOCKETSVC_URL;
const count = Number(process.env.VISITORS ?? 200);
const bot = process.env.BOT_NAME;
const waitMs = Number(process.env.WAIT_MS ?? 15000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function visitor(i) {
  const socket = io(`${url}/chat`, { transports: ["websocket"], forceNew: true, reconnection: false });
  const replies = [];
  let repliedAt = null;
  let replied;
  const first = new Promise((resolve) => (replied = resolve));
  socket.on("message", (m) => {
    if (m.sender.role === "bot" && m.sender.name === bot) {
      replies.push(m.id);
      repliedAt ??= Date.now();
      replied();
    }
  });
  await new Promise((resolve, reject) => {
    socket.once("session", resolve);
    socket.once("connect_error", reject);
  });
  const ack = await socket.timeout(10000).emitWithAck("message", { client_id: `v${i}`, text: `question ${i}` });
  if (!ack.ok) throw new Error(`visitor ${i}: ${JSON.stringify(ack.error)}`);
  await Promise.race([first, sleep(waitMs)]);
  return { socket, conversation_id: ack.message.conversation_id, replies, repliedAt };
}

const started = [];
for (let i = 0; i < count; i += 25) {
  const wave = [];
  for (let j = i; j < Math.min(count, i + 25); j++) wave.push(visitor(j));
  started.push(...wave);
  await sleep(20);
}
const results = await Promise.all(started);
await sleep(500); // a duplicate reply would arrive by now
for (const r of results) {
  r.synced = 0;
  if (r.replies.length > 0) continue;
  const synced = await r.socket.timeout(10000).emitWithAck("sync", { after_seq: 0 });
  if (!synced.ok) throw new Error(`sync of ${r.conversation_id}: ${JSON.stringify(synced.error)}`);
  r.synced = synced.messages.filter((m) => m.sender.role === "bot" && m.sender.name === bot).length;
}
const summary = results.map((r) => ({
  conversation_id: r.conversation_id,
  replies: r.replies.length,
  replied_at: r.repliedAt,
  synced: r.synced,
}));
console.log(JSON.stringify(summary));
for (const r of results) r.socket.close();
process.exit(0);
