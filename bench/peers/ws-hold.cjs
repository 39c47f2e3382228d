// The bench's WebSocket peer: Node's most used WebSocket server library, `ws`, holding idle
// connections with the keepalive its README recommends (a ping every interval; a connection
// that did not answer the last one is terminated). Run by the bench as
// `node ws-hold.cjs WS_DIR INTERVAL_MS`, where WS_DIR is a directory whose node_modules holds
// `ws` (the TypeScript client's, clients/typescript). Prints `listening PORT` once it listens.
"use strict";
const path = require("node:path");
const { WebSocketServer } = require(path.join(process.argv[2], "node_modules", "ws"));
const interval = Number(process.argv[3] || "10000");

const server = new WebSocketServer({ host: "127.0.0.1", port: 0, clientTracking: true });
server.on("listening", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
server.on("connection", (socket) => {
  socket.isAlive = true;
  socket.on("pong", () => {
    socket.isAlive = true;
  });
  socket.on("message", () => {});
  socket.on("error", () => {});
});
setInterval(() => {
  for (const socket of server.clients) {
    if (!socket.isAlive) {
      socket.terminate();
      continue;
    }
    socket.isAlive = false;
    socket.ping();
  }
}, interval);
