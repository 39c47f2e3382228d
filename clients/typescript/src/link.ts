/**
 * What the driver needs of a connection, whatever carries it (browser WebSocket, Node `ws`, TCP,
 * TLS): send a body, half-close after `Bye`, close, reset; and three events back.
 */

import type { End } from "./end.js";

/** What a link tells the driver. A link calls none of them synchronously from `dial`, calls
 * `end` exactly once, and nothing after it. */
export interface LinkEvents {
  /** The connection is open (TCP connected, TLS and WebSocket handshakes done): `Hello` may go. */
  open(): void;
  /** One whole message body from the server (its length prefix, over TCP, removed). */
  body(body: Uint8Array): void;
  /** The connection ended, and how: socket errors and ends of stream classified with the
   * server's names ({@link End}). */
  end(end: End): void;
}

/** Where a link runs, for logs and tests (what `ss` would show). */
export interface LinkInfo {
  readonly localAddress?: string;
  readonly localPort?: number;
  readonly remoteAddress?: string;
  readonly remotePort?: number;
}

/** One connection to the server. After `close` or `abort` the link reports nothing more. */
export interface Link {
  /** Sends one message body (framed as the transport frames it). */
  send(body: Uint8Array): void;
  /** The client said `Bye`: no more sending (a half-close where the transport has one); the
   * server's `Ack` and `Bye` are still read. */
  finish(): void;
  /** Done with the connection (the server said `Bye`, or it was refused): a normal close. */
  close(): void;
  /** Drops the connection at once, with a reset where the platform allows it: there is nobody
   * to say goodbye to (a silent server), or the game crashed on purpose (tests). */
  abort(): void;
  /** Where it runs, once known. */
  info(): LinkInfo | null;
}

/** Opens a link; what each transport module exports a maker of. */
export type Dial = (events: LinkEvents) => Link;
