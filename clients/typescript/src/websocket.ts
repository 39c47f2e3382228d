/**
 * The browser's transport: a WebSocket (`ws://` or `wss://`) to the server's
 * `server.websocket_listen` port, one protocol body per binary message (PROTOCOL.md,
 * "WebSocket"). Works with any WHATWG `WebSocket` (browsers, Deno, Node 22+).
 *
 * A browser does not say why a WebSocket failed to open (refused, TLS, an HTTP answer): every
 * failure before `open` is reported as `refused` and retried with backoff. After `open`, a
 * close without a `Bye` before it is a `peer_eof` (browsers tell a reset from an end of stream
 * no better than that).
 */

import { DEFAULT_MAX_FRAME_BYTES } from "./codec.js";
import { transportEnd } from "./end.js";
import type { Dial, Link, LinkEvents } from "./link.js";

/** The part of the WHATWG WebSocket this link uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface WebSocketOptions {
  /** The WebSocket class; default the global one. */
  readonly WebSocket?: WebSocketConstructor;
  /** Largest message accepted from the server (default 65536, the server's default). */
  readonly maxFrameBytes?: number;
}

const OPEN = 1;

/** Dials `url` (`ws://host:port/` or `wss://...`) with the platform's WebSocket. */
export function webSocket(url: string, options: WebSocketOptions = {}): Dial {
  const Socket =
    options.WebSocket ?? (globalThis as unknown as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (Socket === undefined) {
    throw new Error("this platform has no WebSocket: in Node, use nodeWebSocket from the node entry");
  }
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  return (events: LinkEvents): Link => {
    let done = false;
    let opened = false;
    const finish = (end: Parameters<LinkEvents["end"]>[0]): void => {
      if (!done) {
        done = true;
        events.end(end);
      }
    };
    let ws: WebSocketLike;
    try {
      ws = new Socket(url);
    } catch (error) {
      // A malformed URL: no retry can help, but report it as an end like any other.
      queueMicrotask(() => finish({ kind: "opening", detail: String(error) }));
      return { send() {}, finish() {}, close() {}, abort() {}, info: () => null };
    }
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      if (!done) {
        opened = true;
        events.open();
      }
    };
    ws.onmessage = (message) => {
      if (done) {
        return;
      }
      const data = message.data;
      if (!(data instanceof ArrayBuffer)) {
        ws.close(1003);
        finish({ kind: "protocol", detail: "the server sent a text message" });
        return;
      }
      if (data.byteLength > maxFrameBytes) {
        ws.close(1009);
        finish({ kind: "protocol", detail: `a message of ${data.byteLength} bytes, over ${maxFrameBytes}` });
        return;
      }
      events.body(new Uint8Array(data));
    };
    ws.onclose = (closed) => {
      const how = `close code ${closed.code}${closed.reason ? ` ${closed.reason}` : ""}`;
      if (!opened) {
        finish(transportEnd("refused", `the WebSocket did not open (${how})`));
      } else if (closed.code === 1006) {
        finish(transportEnd("peer_eof", `the connection ended without a close frame (${how})`));
      } else {
        finish(transportEnd("peer_eof", `a close frame without a Bye (${how})`));
      }
    };
    ws.onerror = () => {
      // The close event that follows says how it ended.
    };
    return {
      send(body) {
        if (!done && ws.readyState === OPEN) {
          ws.send(body);
        }
      },
      finish() {
        // Over WebSocket the client's half-close is its Bye: the server answers with its Ack,
        // its Bye and its close frame, which the WebSocket answers by itself.
      },
      close() {
        done = true;
        ws.close(1000);
      },
      abort() {
        // A page cannot reset a connection; the close frame is the nearest it has.
        done = true;
        ws.close(1000);
      },
      info: () => null,
    };
  };
}
