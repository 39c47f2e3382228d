/**
 * The codec against PROTOCOL.md's own vectors, read out of the document: every vector decodes
 * to the message described and encodes back to the same bytes, and every negative vector is
 * rejected with the named error by the named side. A vector added, changed or removed in the
 * document without this table fails here.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  type ClientMessage,
  CodecError,
  decodeClientMessage,
  decodeServerMessage,
  encodeClientMessage,
  encodeServerMessage,
  frame,
  FrameDecoder,
  type ServerMessage,
} from "../../src/codec.js";
import { decodeDemoEvent, type DemoEvent, encodeDemoEvent } from "../../src/demo.js";
import { hex, vectorsOf } from "../support/vectors.js";

const token = (first: number): Uint8Array => Uint8Array.from({ length: 16 }, (_, i) => first + i);
const NONCE = 0x0102030405060708n;
const AUTH = "ann.1767225600.9c1f";

type Expected =
  | { readonly to: "server"; readonly message: ClientMessage }
  | { readonly to: "client"; readonly message: ServerMessage; readonly demo?: DemoEvent };

function event(seq: number, demo: DemoEvent): Expected {
  return { to: "client", message: { kind: "event", seq, payload: encodeDemoEvent(demo) }, demo };
}

const TEAM = new TextEncoder().encode('{"team":"red"}');

const hello = (
  room: string,
  authToken: string | null,
  resume: boolean,
  version = 3,
  options = new Uint8Array(0),
): ClientMessage => ({
  kind: "hello",
  version,
  playerId: "ann",
  room,
  authToken,
  resume: resume ? { token: token(0xa0), lastEventSeq: 42 } : null,
  options,
});

const EXPECTED: Record<string, Expected> = {
  "hello-minimal": { to: "server", message: hello("", null, false) },
  "hello-room-auth": { to: "server", message: hello("lobby", AUTH, false) },
  "hello-resume": { to: "server", message: hello("lobby", null, true) },
  "hello-auth-resume": { to: "server", message: hello("", AUTH, true) },
  "hello-options": { to: "server", message: hello("lobby", null, false, 3, TEAM) },
  "hello-version-2": { to: "server", message: hello("", null, false, 2) },
  "hello-version-4": { to: "server", message: hello("", null, false, 4) },
  "client-ping": { to: "server", message: { kind: "ping", nonce: NONCE } },
  "client-pong": { to: "server", message: { kind: "pong", nonce: NONCE } },
  input: { to: "server", message: { kind: "input", seq: 1, payload: hex("de ad be ef") } },
  "input-empty-payload": { to: "server", message: { kind: "input", seq: 2, payload: new Uint8Array() } },
  "client-ack": { to: "server", message: { kind: "ack", seq: 7 } },
  "client-bye": { to: "server", message: { kind: "bye", code: "client_quit", text: "" } },
  "client-bye-text": { to: "server", message: { kind: "bye", code: "client_quit", text: "done" } },
  join: { to: "server", message: { kind: "join", room: "arena-2", options: new Uint8Array(0) } },
  "join-options": { to: "server", message: { kind: "join", room: "arena-2", options: TEAM } },
  welcome: {
    to: "client",
    message: {
      kind: "welcome",
      sessionId: 1n,
      heartbeatIntervalMs: 5000,
      idleTimeoutMs: 15000,
      resumeToken: new Uint8Array(16),
      resumed: false,
      lastInputSeq: 0,
      room: "auto-1",
    },
  },
  "welcome-resumed": {
    to: "client",
    message: {
      kind: "welcome",
      sessionId: 1n,
      heartbeatIntervalMs: 5000,
      idleTimeoutMs: 15000,
      resumeToken: token(0xb0),
      resumed: true,
      lastInputSeq: 41,
      room: "lobby",
    },
  },
  "server-ping": { to: "client", message: { kind: "ping", nonce: NONCE } },
  "server-pong": { to: "client", message: { kind: "pong", nonce: NONCE } },
  "event-relay": event(1, { tag: "relay", from: "ann", inputSeq: 1, data: hex("de ad be ef") }),
  "event-state": event(2, { tag: "state", tick: 100n, members: 2, inputs: 3 }),
  "event-presence-joined": event(3, { tag: "presence", joined: true, player: "bob" }),
  "event-presence-left": event(4, { tag: "presence", joined: false, player: "bob" }),
  "server-ack": { to: "client", message: { kind: "ack", seq: 1 } },
  "server-bye-client-quit": { to: "client", message: { kind: "bye", code: "client_quit", text: "" } },
  "bye-version-mismatch": {
    to: "client",
    message: { kind: "bye", code: "version_mismatch", text: "this server speaks protocol version 3, the client sent 4" },
  },
  "bye-server-full": { to: "client", message: { kind: "bye", code: "server_full", text: "" } },
  "bye-kicked-utf8": { to: "client", message: { kind: "bye", code: "kicked", text: "à bientôt" } },
  joined: { to: "client", message: { kind: "joined", room: "arena-2" } },
  "join-refused": { to: "client", message: { kind: "joinRefused", room: "arena-2", text: "the room is full" } },
  "bye-join-refused": { to: "client", message: { kind: "bye", code: "join_refused", text: "the room is full" } },
  "bye-game-ended": { to: "client", message: { kind: "bye", code: "game_ended", text: "the match is over" } },
};

type Side = "server" | "client";

/** Which side rejects each negative vector, and with what. */
const REJECTED: Record<string, { readonly sides: readonly Side[]; readonly error: string }> = {
  "neg-oversized-prefix": { sides: ["server", "client"], error: "FrameTooLarge" },
  "neg-huge-prefix": { sides: ["server", "client"], error: "FrameTooLarge" },
  "neg-zero-length": { sides: ["server", "client"], error: "EmptyFrame" },
  "neg-unknown-kind": { sides: ["server", "client"], error: "UnknownKind" },
  "neg-kind-zero": { sides: ["server", "client"], error: "UnknownKind" },
  "neg-welcome-to-server": { sides: ["server"], error: "WrongDirection" },
  "neg-hello-to-client": { sides: ["client"], error: "WrongDirection" },
  "neg-join-refused-to-server": { sides: ["server"], error: "WrongDirection" },
  "neg-ping-trailing-byte": { sides: ["server", "client"], error: "Malformed" },
  "neg-ping-short": { sides: ["server", "client"], error: "Malformed" },
  "neg-hello-bad-presence-flag": { sides: ["server"], error: "Malformed" },
  "neg-hello-invalid-utf8": { sides: ["server"], error: "Malformed" },
  "neg-hello-empty-player-id": { sides: ["server"], error: "Malformed" },
  "neg-join-string-overrun": { sides: ["server"], error: "Malformed" },
  "neg-bye-invalid-utf8": { sides: ["server", "client"], error: "Malformed" },
  "neg-bye-unknown-code": { sides: ["server", "client"], error: "Malformed" },
  "neg-welcome-bad-resumed-flag": { sides: ["client"], error: "Malformed" },
  "neg-truncated-body": { sides: ["server", "client"], error: "Truncated" },
  "neg-truncated-prefix": { sides: ["server", "client"], error: "Truncated" },
};

/** Reads one frame from a stream that then ends, as `side` decodes it. */
function readFrame(bytes: Uint8Array, side: Side): ClientMessage | ServerMessage {
  const decoder = new FrameDecoder();
  decoder.push(bytes);
  const body = decoder.next();
  if (body === null) {
    decoder.finish();
    throw new Error("the stream ended cleanly without a frame");
  }
  assert.equal(decoder.buffered, 0, "one frame, nothing after it");
  return side === "server" ? decodeClientMessage(body) : decodeServerMessage(body);
}

describe("PROTOCOL.md test vectors", () => {
  const vectors = vectorsOf("Test vectors");

  it("are exactly the vectors this table describes", () => {
    assert.deepEqual(vectors.map((v) => v.name).sort(), Object.keys(EXPECTED).sort());
  });

  for (const vector of vectors) {
    it(`${vector.name}: decodes to the message described and encodes to the same bytes`, () => {
      const expected = EXPECTED[vector.name];
      assert.ok(expected, `no expectation for ${vector.name}`);
      const direction = expected.to === "server" ? "Client → server." : "Server → client.";
      assert.ok(vector.text.startsWith(direction), `${vector.name}: the document says "${vector.text.slice(0, 20)}"`);
      assert.deepEqual(readFrame(vector.bytes, expected.to), expected.message);
      const body =
        expected.to === "server" ? encodeClientMessage(expected.message) : encodeServerMessage(expected.message);
      assert.deepEqual(frame(body), vector.bytes);
      if (expected.to === "client" && expected.demo !== undefined && expected.message.kind === "event") {
        assert.deepEqual(decodeDemoEvent(expected.message.payload), expected.demo);
      }
    });
  }
});

describe("PROTOCOL.md negative test vectors", () => {
  const vectors = vectorsOf("Negative test vectors");

  it("are exactly the vectors this table describes", () => {
    assert.deepEqual(vectors.map((v) => v.name).sort(), Object.keys(REJECTED).sort());
  });

  for (const vector of vectors) {
    it(`${vector.name}: rejected as the document says`, () => {
      const expected = REJECTED[vector.name];
      assert.ok(expected, `no expectation for ${vector.name}`);
      const said = /^(Both sides|Server side|Client side)\./.exec(vector.text)?.[1];
      const sides = { "Both sides": ["server", "client"], "Server side": ["server"], "Client side": ["client"] };
      assert.ok(said !== undefined, `${vector.name} names no side: ${vector.text}`);
      assert.deepEqual(sides[said as keyof typeof sides], expected.sides);
      const named = /`(FrameTooLarge|EmptyFrame|UnknownKind|WrongDirection|Malformed|Truncated)`/.exec(vector.text)?.[1];
      assert.equal(named, expected.error, `the document names ${named}`);
      for (const side of expected.sides) {
        assert.throws(
          () => readFrame(vector.bytes, side),
          (error: unknown) => error instanceof CodecError && error.kind === expected.error,
          `${side} side`,
        );
      }
      if (expected.error === "Truncated") {
        const buffered = /with (\d+) bytes buffered/.exec(vector.text)?.[1];
        const decoder = new FrameDecoder();
        decoder.push(vector.bytes);
        assert.equal(decoder.next(), null, "while bytes may still come, the decoder waits");
        assert.equal(String(decoder.buffered), buffered);
      }
    });
  }

  it("an oversized prefix is refused from its four bytes, with nothing reserved for the body", () => {
    const decoder = new FrameDecoder();
    decoder.push(hex("ff ff ff ff"));
    assert.throws(() => decoder.next(), (error: unknown) => error instanceof CodecError && error.kind === "FrameTooLarge");
  });
});
