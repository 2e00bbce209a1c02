// The reference: Node socket.io 4.8 with the same echo/relay semantics as bare_socketio.py.
//
//   node bench/servers/node_server.mjs [--host 127.0.0.1] [--port 0] [--relay]
//
// `/chat` emits `session` on connection and acks `message` with {ok: true, message: {...}} (the
// payload echoed as a Message with a per-connection `seq`). With --relay the message is also
// pushed to the visitor's own connection and to `agent:<auth.agent_id>` in `/agent`.
// Ping interval/timeout match socketsvc's defaults (25 s / 20 s). Prints
// `listening on http://HOST:PORT` on stderr once it serves.
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { Server } from "socket.io";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const host = option("--host", "127.0.0.1");
const port = Number(option("--port", "0"));
const relay = args.includes("--relay");
const pingInterval = Number(option("--ping-interval", "25")) * 1000;
const pingTimeout = Number(option("--ping-timeout", "20")) * 1000;

const httpServer = createServer();
const io = new Server(httpServer, {
  pingInterval,
  pingTimeout,
  maxHttpBufferSize: 64 * 1024,
  serveClient: false,
});
const agents = io.of("/agent");

io.of("/chat").on("connection", (socket) => {
  const auth = socket.handshake.auth || {};
  const session = {
    visitorId: randomUUID(),
    conversationId: randomUUID(),
    seq: 0,
    agentId: typeof auth.agent_id === "string" ? auth.agent_id : null,
  };
  socket.emit("session", {
    visitor_token: "",
    visitor_id: session.visitorId,
    conversation_id: session.conversationId,
    state: "bot",
    last_seq: 0,
  });
  socket.on("message", (data, ack) => {
    if (typeof ack !== "function") {
      ack = () => {};
    }
    if (data === null || typeof data !== "object") {
      ack({ ok: false, error: { code: "invalid", message: "bad payload" } });
      return;
    }
    session.seq += 1;
    const message = {
      id: randomUUID(),
      conversation_id: session.conversationId,
      seq: session.seq,
      client_id: data.client_id ?? null,
      sender: { role: "visitor", id: session.visitorId, name: "Visitor" },
      text: data.text,
      created_at: new Date().toISOString(),
    };
    if (relay) {
      socket.emit("message", message);
      if (session.agentId !== null) {
        agents.to(`agent:${session.agentId}`).emit("message", message);
      }
    }
    ack({ ok: true, message });
  });
});

agents.use((socket, next) => {
  const agentId = (socket.handshake.auth || {}).agent_id;
  if (typeof agentId !== "string" || !agentId) {
    next(new Error("agent_id missing"));
    return;
  }
  next();
});
agents.on("connection", (socket) => {
  const agentId = socket.handshake.auth.agent_id;
  socket.join(`agent:${agentId}`);
  socket.emit("session", { agent_id: agentId });
});

httpServer.listen(port, host, 4096, () => {
  const address = httpServer.address();
  process.stderr.write(`listening on http://${address.address}:${address.port}\n`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    io.close();
    httpServer.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
