/**
 * The game server's client library: a session that survives every disconnect the server
 * survives. This entry runs anywhere (browsers included) and has no dependency; Node's
 * transports (TCP, TLS, `ws`) are in `@gameserver/client/node`.
 *
 * ```js
 * const client = new GameClient({ url: "wss://game.example.com:7778/", playerId: "alice", room: "lobby" });
 * client.on("event", ({ seq, payload }) => game.apply(payload));
 * await client.connect();
 * ```
 */

import { Client, type ClientOptions } from "./client.js";
import { webSocket, type WebSocketOptions } from "./websocket.js";

export * from "./backoff.js";
export * from "./client.js";
export * from "./codec.js";
export * from "./core.js";
export * from "./demo.js";
export * from "./end.js";
export * from "./link.js";
export * from "./websocket.js";

/** Options of a {@link GameClient}: a WebSocket URL, or a dial of one's own. */
export type GameClientOptions =
  | (Omit<ClientOptions, "dial"> & { readonly url: string; readonly webSocket?: WebSocketOptions })
  | ClientOptions;

/** A {@link Client} over the platform's WebSocket (`ws://` or `wss://`), or over `dial`. */
export class GameClient extends Client {
  constructor(options: GameClientOptions) {
    super("dial" in options ? options : { ...options, dial: webSocket(options.url, options.webSocket) });
  }
}
