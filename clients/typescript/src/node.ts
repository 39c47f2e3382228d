/**
 * The client library for Node: everything of the main entry, plus transports over TCP, TLS
 * (`node:net`, `node:tls`) and WebSocket (the `ws` package), so that a bot or a test harness
 * can use any of the server's ports.
 *
 * ```js
 * import { GameClient } from "@gameserver/client/node";
 * const client = new GameClient({ url: "tcp://127.0.0.1:7777", playerId: "bot-1", room: "lobby" });
 * ```
 */

import { Client, type ClientOptions } from "./client.js";
import { dialUrl, type NodeWebSocketOptions } from "./node/transports.js";

export * from "./index.js";
export * from "./node/transports.js";

/** Options of a Node {@link GameClient}: a URL (`tcp://`, `tls://`, `ws://`, `wss://`) with
 * its TLS settings, or a dial of one's own. */
export type NodeGameClientOptions =
  | (Omit<ClientOptions, "dial"> & { readonly url: string; readonly tls?: NodeWebSocketOptions })
  | ClientOptions;

/** A {@link Client} over TCP, TLS or WebSocket, chosen by the URL's scheme. */
export class GameClient extends Client {
  constructor(options: NodeGameClientOptions) {
    super("dial" in options ? options : { ...options, dial: dialUrl(options.url, options.tls) });
  }
}
