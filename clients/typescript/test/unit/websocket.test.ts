/** The browser transport over a fake WHATWG WebSocket: how each way it ends is classified. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import type { End } from "../../src/end.js";
import { webSocket, type WebSocketLike } from "../../src/websocket.js";

class FakeSocket implements WebSocketLike {
  static last: FakeSocket | null = null;
  binaryType = "blob";
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  sent: Uint8Array[] = [];
  closedWith: number | null = null;

  constructor(readonly url: string) {
    FakeSocket.last = this;
  }
  send(data: Uint8Array): void {
    this.sent.push(data);
  }
  close(code?: number): void {
    this.closedWith = code ?? 1000;
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  closed(code: number): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: "", wasClean: code !== 1006 });
  }
}

function dial(): { socket: FakeSocket; ends: End[]; bodies: Uint8Array[]; opened: () => boolean; link: ReturnType<ReturnType<typeof webSocket>> } {
  const ends: End[] = [];
  const bodies: Uint8Array[] = [];
  let opened = false;
  const link = webSocket("ws://127.0.0.1:7778/", { WebSocket: FakeSocket })({
    open: () => (opened = true),
    body: (body) => bodies.push(body),
    end: (end) => ends.push(end),
  });
  return { socket: FakeSocket.last!, ends, bodies, opened: () => opened, link };
}

describe("the browser WebSocket transport", () => {
  it("passes binary messages as bodies and sends bodies as binary messages", () => {
    const { socket, bodies, opened, link } = dial();
    assert.equal(socket.binaryType, "arraybuffer");
    socket.open();
    assert.ok(opened());
    socket.onmessage?.({ data: Uint8Array.of(3, 0, 0, 0, 0, 0, 0, 0, 1).buffer });
    assert.deepEqual(bodies, [Uint8Array.of(3, 0, 0, 0, 0, 0, 0, 0, 1)]);
    link.send(Uint8Array.of(4));
    assert.deepEqual(socket.sent, [Uint8Array.of(4)]);
  });

  it("a socket that never opens is a refused connection (the browser does not say why), retried", () => {
    const { socket, ends } = dial();
    socket.closed(1006);
    assert.equal(ends.length, 1);
    assert.equal(ends[0]?.kind === "transport" ? ends[0].cause : null, "refused");
  });

  it("after open, a close without a Bye is a peer_eof, reported once", () => {
    const { socket, ends } = dial();
    socket.open();
    socket.closed(1006);
    socket.closed(1000);
    assert.equal(ends.length, 1);
    assert.equal(ends[0]?.kind === "transport" ? ends[0].cause : null, "peer_eof");
  });

  it("a text message is a protocol error, and the socket is closed with 1003", () => {
    const { socket, ends } = dial();
    socket.open();
    socket.onmessage?.({ data: "hello" });
    assert.deepEqual(ends, [{ kind: "protocol", detail: "the server sent a text message" }]);
    assert.equal(socket.closedWith, 1003);
  });

  it("after close or abort the link reports nothing more", () => {
    const { socket, ends, link } = dial();
    socket.open();
    link.close();
    socket.closed(1000);
    assert.deepEqual(ends, []);
    assert.equal(socket.closedWith, 1000);
  });
});
