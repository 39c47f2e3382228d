/**
 * Node's transports: plain TCP (`node:net`), TLS (`node:tls`) and WebSocket (`ws`, over either),
 * so that a bot or a test harness can use any of the server's ports.
 *
 * Each owns its TCP socket, so that a silent server's connection is reset (`resetAndDestroy`:
 * RST, as the Rust client's `SO_LINGER {on, 0}`), and socket errors are classified by errno with
 * the server's names for them.
 */

import * as net from "node:net";
import * as tls from "node:tls";

import { WebSocket as NodeWebSocketClass } from "ws";

import { DEFAULT_MAX_FRAME_BYTES, frame, FrameDecoder } from "../codec.js";
import { type End, transportEnd, transportOfErrno } from "../end.js";
import type { Dial, Link, LinkEvents, LinkInfo } from "../link.js";

/** TLS settings: whom to trust and which name the certificate must carry. */
export interface TlsOptions {
  /** PEM certificates to trust (a private CA, or a self-signed server certificate); default
   * Node's public roots. */
  readonly ca?: string | Buffer | (string | Buffer)[];
  /** The name the server's certificate must carry (SNI); default the host dialled, unless it
   * is an IP address. */
  readonly servername?: string;
  /** False accepts any certificate: for tests only. */
  readonly rejectUnauthorized?: boolean;
}

export interface StreamOptions {
  readonly host: string;
  readonly port: number;
  /** Largest body accepted from the server (default 65536, the server's default). */
  readonly maxFrameBytes?: number;
}

interface NodeError extends Error {
  code?: string;
}

/** TLS error codes that mean the server's certificate (or its TLS) was refused: trying again
 * meets the same answer. */
function isTlsRefusal(error: NodeError): boolean {
  const code = error.code ?? "";
  return (
    code.startsWith("ERR_TLS_") ||
    code.startsWith("ERR_SSL_") ||
    code.includes("CERT") ||
    code.includes("SIGNATURE") ||
    code === "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
  );
}

/** Classifies an error before the connection was open (connect, TLS handshake, upgrade). */
export function openingEnd(error: NodeError): End {
  const detail = error.message;
  if (isTlsRefusal(error)) {
    return { kind: "opening", detail };
  }
  switch (error.code) {
    case "ECONNRESET":
    case "ECONNABORTED":
    case "EPIPE":
      return transportEnd("closed_while_opening", detail);
    default:
      return transportOfErrno(error.code, detail);
  }
}

function socketInfo(socket: net.Socket): LinkInfo {
  const info: { -readonly [K in keyof LinkInfo]: LinkInfo[K] } = {};
  if (socket.localAddress !== undefined) info.localAddress = socket.localAddress;
  if (socket.localPort !== undefined) info.localPort = socket.localPort;
  if (socket.remoteAddress !== undefined) info.remoteAddress = socket.remoteAddress;
  if (socket.remotePort !== undefined) info.remotePort = socket.remotePort;
  return info;
}

/** A raw TCP connection, with Nagle off (small frames go at once). */
function connectTcp(host: string, port: number): net.Socket {
  const socket = net.connect({ host, port });
  socket.setNoDelay(true);
  return socket;
}

/**
 * A framed byte stream (TCP or TLS over `raw`): `stream` carries the frames; `raw` is the TCP
 * socket underneath, for the reset.
 */
function streamLink(
  events: LinkEvents,
  raw: net.Socket,
  stream: net.Socket,
  openEvent: "connect" | "secureConnect",
  maxFrameBytes: number,
): Link {
  const decoder = new FrameDecoder(maxFrameBytes);
  let done = false;
  let opened = false;
  let firstError: NodeError | null = null;
  const finish = (end: End): void => {
    if (!done) {
      done = true;
      events.end(end);
    }
  };
  stream.once(openEvent, () => {
    if (!done) {
      opened = true;
      events.open();
    }
  });
  stream.on("data", (chunk: Buffer) => {
    if (done) {
      return;
    }
    decoder.push(chunk);
    try {
      for (let body = decoder.next(); body !== null && !done; body = decoder.next()) {
        events.body(body);
      }
    } catch (error) {
      stream.destroy();
      finish({ kind: "protocol", detail: (error as Error).message });
    }
  });
  stream.on("end", () => {
    if (!opened) {
      finish(transportEnd("closed_while_opening", "the server closed the connection while it was opening"));
      return;
    }
    // The stream ended: between frames a clean end, inside one a truncation.
    finish(decoder.buffered > 0 ? transportEnd("truncated_frame", `${decoder.buffered} bytes of a frame`) : transportEnd("peer_eof"));
  });
  const onError = (error: NodeError): void => {
    // A reset is reported once, to whichever call comes first: classify from the first error.
    firstError ??= error;
    finish(opened ? transportOfErrno(firstError.code, firstError.message) : openingEnd(firstError));
  };
  stream.on("error", onError);
  if (raw !== stream) {
    raw.on("error", onError);
  }
  stream.on("close", () => {
    finish(opened ? transportEnd("peer_eof", "the socket closed") : transportEnd("closed_while_opening", "the socket closed"));
  });
  return {
    send(body) {
      if (!done && opened) {
        stream.write(frame(body));
      }
    },
    finish() {
      // Said Bye: FIN (after close_notify over TLS); the server's Ack and Bye are still read.
      stream.end();
    },
    close() {
      done = true;
      stream.end();
      // The server closes its side after its Bye; should it not, do not hold the socket.
      setTimeout(() => stream.destroy(), 2000).unref();
    },
    abort() {
      done = true;
      if (!raw.destroyed && raw.readyState === "open") {
        raw.resetAndDestroy();
      } else {
        raw.destroy();
      }
      stream.destroy();
    },
    info: () => socketInfo(raw),
  };
}

/** Dials the server's game port over plain TCP. */
export function tcp(options: StreamOptions): Dial {
  return (events) => {
    const socket = connectTcp(options.host, options.port);
    return streamLink(events, socket, socket, "connect", options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
  };
}

/** Dials the server's game port over TLS (the server's `[tls]`). */
export function tlsStream(options: StreamOptions & TlsOptions): Dial {
  return (events) => {
    const raw = connectTcp(options.host, options.port);
    const secure = tls.connect({ socket: raw, ...tlsSettings(options.host, options) });
    return streamLink(events, raw, secure, "secureConnect", options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
  };
}

function tlsSettings(host: string, options: TlsOptions): tls.ConnectionOptions {
  const settings: tls.ConnectionOptions = {};
  const servername = options.servername ?? (net.isIP(host) === 0 ? host : undefined);
  if (servername !== undefined) settings.servername = servername;
  if (options.ca !== undefined) settings.ca = options.ca;
  if (options.rejectUnauthorized !== undefined) settings.rejectUnauthorized = options.rejectUnauthorized;
  // An IP address without a name to check: check the address against the certificate.
  if (servername === undefined && net.isIP(host) !== 0) {
    settings.checkServerIdentity = (_name, certificate) => tls.checkServerIdentity(host, certificate);
  }
  return settings;
}

export interface NodeWebSocketOptions extends TlsOptions {
  /** Largest message accepted from the server (default 65536, the server's default). */
  readonly maxFrameBytes?: number;
}

/** Dials the server's WebSocket port (`ws://host:port/`, or `wss://` with TLS) with the `ws`
 * package, over a TCP socket of its own. */
export function nodeWebSocket(url: string, options: NodeWebSocketOptions = {}): Dial {
  const parsed = new URL(url);
  const secure = parsed.protocol === "wss:";
  if (!secure && parsed.protocol !== "ws:") {
    throw new RangeError(`not a WebSocket URL: ${url}`);
  }
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  const port = Number(parsed.port || (secure ? 443 : 80));
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  return (events) => {
    let done = false;
    let opened = false;
    let raw: net.Socket | null = null;
    let socketError: NodeError | null = null;
    const finish = (end: End): void => {
      if (!done) {
        done = true;
        events.end(end);
      }
    };
    const ws = new NodeWebSocketClass(url, {
      createConnection: () => {
        raw = connectTcp(host, port);
        raw.on("error", (error: NodeError) => {
          socketError ??= error;
        });
        return secure ? tls.connect({ socket: raw, ...tlsSettings(host, options) }) : raw;
      },
      maxPayload: maxFrameBytes,
      perMessageDeflate: false,
    });
    ws.binaryType = "nodebuffer";
    ws.on("open", () => {
      if (!done) {
        opened = true;
        events.open();
      }
    });
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (done) {
        return;
      }
      if (!isBinary) {
        ws.close(1003);
        finish({ kind: "protocol", detail: "the server sent a text message" });
        return;
      }
      events.body(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    });
    ws.on("unexpected-response", (request, response) => {
      const status = response.statusCode ?? 0;
      request.destroy();
      const detail = `the WebSocket upgrade was answered ${status} ${response.statusMessage ?? ""}`.trim();
      // A proxy in front with nowhere to send the upgrade now (502, 503, 504): like a refused
      // connect, worth another try. Any other answer will be the same next time.
      finish(status >= 500 ? transportEnd("refused", detail) : { kind: "opening", detail });
    });
    ws.on("error", (error: NodeError) => {
      socketError ??= error;
      if (!opened) {
        finish(openingEnd(error));
      }
    });
    ws.on("close", (code: number, reason: Buffer) => {
      if (!opened) {
        finish(socketError !== null ? openingEnd(socketError) : transportEnd("closed_while_opening", `close code ${code}`));
        return;
      }
      if (socketError !== null) {
        finish(transportOfErrno(socketError.code, socketError.message));
      } else if (code === 1006) {
        finish(transportEnd("peer_eof", "the connection ended without a close frame"));
      } else {
        finish(transportEnd("peer_eof", `a close frame without a Bye (code ${code}${reason.length > 0 ? ` ${reason.toString()}` : ""})`));
      }
    });
    const socket = (): net.Socket | null => raw;
    return {
      send(body) {
        if (!done && ws.readyState === NodeWebSocketClass.OPEN) {
          ws.send(body);
        }
      },
      finish() {
        // The client's Bye is its half-close: the server answers with its Ack, its Bye and its
        // close frame, which `ws` answers by itself.
      },
      close() {
        done = true;
        ws.close(1000);
        setTimeout(() => ws.terminate(), 2000).unref();
      },
      abort() {
        done = true;
        const tcpSocket = socket();
        if (tcpSocket !== null && !tcpSocket.destroyed && tcpSocket.readyState === "open") {
          tcpSocket.resetAndDestroy();
        }
        ws.terminate();
      },
      info: () => {
        const tcpSocket = socket();
        return tcpSocket === null ? null : socketInfo(tcpSocket);
      },
    };
  };
}

/**
 * Dials by URL: `tcp://host:port` (the game port), `tls://host:port` (the game port with TLS),
 * `ws://host:port/` or `wss://host:port/` (the WebSocket port).
 */
export function dialUrl(url: string, options: NodeWebSocketOptions = {}): Dial {
  const parsed = new URL(url);
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  const port = Number(parsed.port);
  switch (parsed.protocol) {
    case "tcp:":
      return tcp({ host, port, ...(options.maxFrameBytes !== undefined ? { maxFrameBytes: options.maxFrameBytes } : {}) });
    case "tls:":
      return tlsStream({ host, port, ...options });
    case "ws:":
    case "wss:":
      return nodeWebSocket(url, options);
    default:
      throw new RangeError(`unknown scheme in ${url}: use tcp://, tls://, ws:// or wss://`);
  }
}
