/**
 * The wire protocol, version 2 (PROTOCOL.md): every message both ways, their bodies, and the
 * framing over a byte stream. No I/O: bytes in, messages out, and back.
 *
 * Over TCP and TLS each body travels behind a 4-byte big-endian length prefix
 * ({@link frame}, {@link FrameDecoder}); over WebSocket each body is one binary message, without
 * the prefix. Both directions are here, so that the codec can be checked against every vector of
 * PROTOCOL.md and a test can play the server's part.
 *
 * Sequence numbers (`seq`, `lastInputSeq`, `lastEventSeq`) are JavaScript numbers: a session
 * would need centuries to pass 2^53, and a value above `Number.MAX_SAFE_INTEGER` is refused as
 * `Malformed` rather than rounded. Session ids and nonces, which a server may draw at random,
 * are `bigint`s.
 */

/** The version this client speaks, sent in `Hello`. */
export const PROTOCOL_VERSION = 3;
/** Bytes in the length prefix of a frame over TCP and TLS. */
export const HEADER_LEN = 4;
/** The largest body a server accepts and sends unless configured otherwise. */
export const DEFAULT_MAX_FRAME_BYTES = 65536;
export const MAX_PLAYER_ID_BYTES = 64;
export const MAX_ROOM_BYTES = 64;
export const MAX_AUTH_TOKEN_BYTES = 512;
/** The longest join options (in `Hello` and `Join`), in bytes. */
export const MAX_OPTIONS_BYTES = 1024;
export const RESUME_TOKEN_LEN = 16;
/** The longest `Hello` body; the server reads no longer frame before its `Hello`. */
export const MAX_HELLO_BODY = 1699;
/** Bytes a game may add around an input's payload when it relays it as an event. */
export const INPUT_HEADROOM = 128;

/** The largest input payload a server with this frame limit accepts: room is left for the
 * `Event` that relays it (kind, seq, and the game's headroom). */
export function maxInputPayload(maxFrameBytes: number): number {
  return maxFrameBytes - 9 - INPUT_HEADROOM;
}

/** The largest input payload on a server with the default frame limit (65399 bytes). */
export const MAX_INPUT_PAYLOAD = maxInputPayload(DEFAULT_MAX_FRAME_BYTES);

/** Message kinds: the first byte of every body. */
export const Kind = {
  Hello: 0x01,
  Welcome: 0x02,
  Ping: 0x03,
  Pong: 0x04,
  Input: 0x05,
  Event: 0x06,
  Ack: 0x07,
  Bye: 0x08,
  Join: 0x09,
  Joined: 0x0a,
  JoinRefused: 0x0b,
} as const;
export type KindName = keyof typeof Kind;

/** Why a `Bye` was sent (PROTOCOL.md, "Bye codes"), by name; the wire carries 1 to 15. */
export const BYE_CODES = [
  "client_quit",
  "server_shutdown",
  "kicked",
  "replaced",
  "server_full",
  "protocol_error",
  "idle_timeout",
  "slow_consumer",
  "rate_limited",
  "auth_failed",
  "version_mismatch",
  "handshake_timeout",
  "resume_rejected",
  "join_refused",
  "game_ended",
] as const;
export type ByeCode = (typeof BYE_CODES)[number];

/** A `Bye` code's number on the wire. */
export function byeCodeNumber(code: ByeCode): number {
  return BYE_CODES.indexOf(code) + 1;
}

/** The resume fields of a `Hello`. */
export interface Resume {
  /** The token of the most recent `Welcome` (16 bytes). */
  readonly token: Uint8Array;
  /** The highest event received without a gap. */
  readonly lastEventSeq: number;
}

export interface Hello {
  readonly kind: "hello";
  readonly version: number;
  readonly playerId: string;
  readonly room: string;
  readonly authToken: string | null;
  readonly resume: Resume | null;
  /** Join options for the room, opaque to the protocol (at most {@link MAX_OPTIONS_BYTES});
   * empty when there are none. Version 3. */
  readonly options: Uint8Array;
}

export interface Welcome {
  readonly kind: "welcome";
  readonly sessionId: bigint;
  readonly heartbeatIntervalMs: number;
  readonly idleTimeoutMs: number;
  /** All zero while the server offers no resume. */
  readonly resumeToken: Uint8Array;
  readonly resumed: boolean;
  readonly lastInputSeq: number;
  readonly room: string;
}

export interface Ping {
  readonly kind: "ping";
  readonly nonce: bigint;
}
export interface Pong {
  readonly kind: "pong";
  readonly nonce: bigint;
}
export interface InputMessage {
  readonly kind: "input";
  readonly seq: number;
  readonly payload: Uint8Array;
}
export interface EventMessage {
  readonly kind: "event";
  readonly seq: number;
  readonly payload: Uint8Array;
}
export interface Ack {
  readonly kind: "ack";
  readonly seq: number;
}
export interface Bye {
  readonly kind: "bye";
  readonly code: ByeCode;
  readonly text: string;
}
export interface Join {
  readonly kind: "join";
  readonly room: string;
  /** Join options for that room, as in `Hello`. Version 3. */
  readonly options: Uint8Array;
}
export interface Joined {
  readonly kind: "joined";
  readonly room: string;
}
export interface JoinRefused {
  readonly kind: "joinRefused";
  readonly room: string;
  readonly text: string;
}

/** What a client sends. */
export type ClientMessage = Hello | Ping | Pong | InputMessage | Ack | Bye | Join;
/** What a server sends. */
export type ServerMessage = Welcome | Ping | Pong | EventMessage | Ack | Bye | Joined | JoinRefused;

/** The ways bytes fail to be this protocol, named as the reference implementation names them. */
export type CodecErrorKind =
  | "FrameTooLarge"
  | "EmptyFrame"
  | "UnknownKind"
  | "WrongDirection"
  | "Malformed"
  | "Truncated";

/** Bytes that are not this protocol, or a stream that ended inside a frame (`Truncated`: not a
 * protocol error, a peer that died mid-send). */
export class CodecError extends Error {
  constructor(
    readonly kind: CodecErrorKind,
    message: string,
  ) {
    super(message);
    this.name = "CodecError";
  }
}

const utf8Encoder = new TextEncoder();
// Strict (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), and a leading
// U+FEFF is kept: strings compare byte for byte.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Reads one body, strictly: a short field, a bad flag, bad UTF-8 or a trailing byte is
 * `Malformed`. */
class Reader {
  private at = 0;
  private readonly view: DataView;

  constructor(
    private readonly body: Uint8Array,
    private readonly what: string,
  ) {
    this.view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  }

  malformed(reason: string): CodecError {
    return new CodecError("Malformed", `malformed ${this.what}: ${reason}`);
  }

  private need(n: number, field: string): void {
    if (this.at + n > this.body.length) {
      throw this.malformed(`${field} runs past the end of the body`);
    }
  }

  u8(field: string): number {
    this.need(1, field);
    return this.body[this.at++]!;
  }

  u16(field: string): number {
    this.need(2, field);
    const value = this.view.getUint16(this.at);
    this.at += 2;
    return value;
  }

  u32(field: string): number {
    this.need(4, field);
    const value = this.view.getUint32(this.at);
    this.at += 4;
    return value;
  }

  u64(field: string): bigint {
    this.need(8, field);
    const value = this.view.getBigUint64(this.at);
    this.at += 8;
    return value;
  }

  /** A u64 that counts (a sequence number): refused above 2^53 - 1 rather than rounded. */
  seq(field: string): number {
    const value = this.u64(field);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw this.malformed(`${field} ${value} is beyond this client's range (2^53 - 1)`);
    }
    return Number(value);
  }

  bool(field: string): boolean {
    const value = this.u8(field);
    if (value > 1) {
      throw this.malformed(`${field} is ${value}, neither 0 nor 1`);
    }
    return value === 1;
  }

  bytes(n: number, field: string): Uint8Array {
    this.need(n, field);
    const value = this.body.slice(this.at, this.at + n);
    this.at += n;
    return value;
  }

  string(field: string, min: number, max: number): string {
    const n = this.u16(`${field} length`);
    if (n < min || n > max) {
      throw this.malformed(`${field} is ${n} bytes, allowed ${min} to ${max}`);
    }
    return this.text(this.bytes(n, field), field);
  }

  text(raw: Uint8Array, field: string): string {
    try {
      return utf8Decoder.decode(raw);
    } catch {
      throw this.malformed(`${field} is not valid UTF-8`);
    }
  }

  rest(): Uint8Array {
    const value = this.body.slice(this.at);
    this.at = this.body.length;
    return value;
  }

  /** Join options: the rest of the body, at most {@link MAX_OPTIONS_BYTES}. */
  options(): Uint8Array {
    const value = this.rest();
    if (value.length > MAX_OPTIONS_BYTES) {
      throw this.malformed(`join options are ${value.length} bytes, allowed at most ${MAX_OPTIONS_BYTES}`);
    }
    return value;
  }

  end(): void {
    if (this.at !== this.body.length) {
      throw this.malformed(`${this.body.length - this.at} trailing byte(s) after the last field`);
    }
  }
}

/** Builds one body. */
class Writer {
  private bytes: number[] = [];

  u8(value: number): this {
    this.bytes.push(value & 0xff);
    return this;
  }

  u16(value: number): this {
    return this.u8(value >>> 8).u8(value);
  }

  u32(value: number): this {
    return this.u16(value >>> 16).u16(value & 0xffff);
  }

  u64(value: bigint | number): this {
    const big = BigInt(value);
    if (big < 0n || big > 0xffff_ffff_ffff_ffffn) {
      throw new RangeError(`${value} is not a u64`);
    }
    return this.u32(Number(big >> 32n)).u32(Number(big & 0xffff_ffffn));
  }

  raw(bytes: Uint8Array): this {
    for (const byte of bytes) {
      this.bytes.push(byte);
    }
    return this;
  }

  string(value: string, field: string, min: number, max: number): this {
    const raw = utf8Encoder.encode(value);
    if (raw.length < min || raw.length > max) {
      throw new RangeError(`${field} must be ${min} to ${max} bytes of UTF-8, not ${raw.length}`);
    }
    return this.u16(raw.length).raw(raw);
  }

  done(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

function kindName(kind: number): KindName | undefined {
  return (Object.keys(Kind) as KindName[]).find((name) => Kind[name] === kind);
}

function kindOf(body: Uint8Array): KindName {
  if (body.length === 0) {
    throw new CodecError("EmptyFrame", "empty frame: every body holds at least its kind byte");
  }
  const kind = body[0]!;
  const name = kindName(kind);
  if (name === undefined) {
    throw new CodecError("UnknownKind", `unknown message kind 0x${kind.toString(16).padStart(2, "0")}`);
  }
  return name;
}

function wrongDirection(name: KindName, to: string): CodecError {
  return new CodecError("WrongDirection", `a ${name} is never sent to a ${to}`);
}

function byeCode(reader: Reader): ByeCode {
  const number = reader.u8("code");
  const code = BYE_CODES[number - 1];
  if (number === 0 || code === undefined) {
    throw reader.malformed(`unknown bye code ${number}`);
  }
  return code;
}

/** Decodes a body a server sent. */
export function decodeServerMessage(body: Uint8Array): ServerMessage {
  const name = kindOf(body);
  const r = new Reader(body, name);
  r.u8("kind");
  let message: ServerMessage;
  switch (name) {
    case "Welcome":
      message = {
        kind: "welcome",
        sessionId: r.u64("session_id"),
        heartbeatIntervalMs: r.u32("heartbeat_interval_ms"),
        idleTimeoutMs: r.u32("idle_timeout_ms"),
        resumeToken: r.bytes(RESUME_TOKEN_LEN, "resume_token"),
        resumed: r.bool("resumed"),
        lastInputSeq: r.seq("last_input_seq"),
        room: r.string("room", 0, MAX_ROOM_BYTES),
      };
      break;
    case "Ping":
      message = { kind: "ping", nonce: r.u64("nonce") };
      break;
    case "Pong":
      message = { kind: "pong", nonce: r.u64("nonce") };
      break;
    case "Event":
      return { kind: "event", seq: r.seq("seq"), payload: r.rest() };
    case "Ack":
      message = { kind: "ack", seq: r.seq("seq") };
      break;
    case "Bye":
      return { kind: "bye", code: byeCode(r), text: r.text(r.rest(), "bye text") };
    case "Joined":
      message = { kind: "joined", room: r.string("room", 0, MAX_ROOM_BYTES) };
      break;
    case "JoinRefused": {
      const room = r.string("room", 0, MAX_ROOM_BYTES);
      return { kind: "joinRefused", room, text: r.text(r.rest(), "refusal text") };
    }
    case "Hello":
    case "Input":
    case "Join":
      throw wrongDirection(name, "client");
  }
  r.end();
  return message;
}

/** Decodes a body a client sent (the server's side; for tests and tools). */
export function decodeClientMessage(body: Uint8Array): ClientMessage {
  const name = kindOf(body);
  const r = new Reader(body, name);
  r.u8("kind");
  let message: ClientMessage;
  switch (name) {
    case "Hello": {
      const version = r.u16("version");
      const playerId = r.string("player_id", 1, MAX_PLAYER_ID_BYTES);
      const room = r.string("room", 0, MAX_ROOM_BYTES);
      const authToken = r.bool("has_auth") ? r.string("auth_token", 0, MAX_AUTH_TOKEN_BYTES) : null;
      const resume = r.bool("has_resume")
        ? { token: r.bytes(RESUME_TOKEN_LEN, "resume_token"), lastEventSeq: r.seq("last_event_seq") }
        : null;
      return { kind: "hello", version, playerId, room, authToken, resume, options: r.options() };
    }
    case "Ping":
      message = { kind: "ping", nonce: r.u64("nonce") };
      break;
    case "Pong":
      message = { kind: "pong", nonce: r.u64("nonce") };
      break;
    case "Input":
      return { kind: "input", seq: r.seq("seq"), payload: r.rest() };
    case "Ack":
      message = { kind: "ack", seq: r.seq("seq") };
      break;
    case "Bye":
      return { kind: "bye", code: byeCode(r), text: r.text(r.rest(), "bye text") };
    case "Join":
      return { kind: "join", room: r.string("room", 1, MAX_ROOM_BYTES), options: r.options() };
    case "Welcome":
    case "Event":
    case "Joined":
    case "JoinRefused":
      throw wrongDirection(name, "server");
  }
  r.end();
  return message;
}

/** Join options the protocol can carry, or a `RangeError`. */
export function checkOptions(options: Uint8Array): Uint8Array {
  if (options.length > MAX_OPTIONS_BYTES) {
    throw new RangeError(`join options are at most ${MAX_OPTIONS_BYTES} bytes, not ${options.length}`);
  }
  return options;
}

/** Encodes a client's message as a body (no length prefix). Throws a `RangeError` for fields
 * the protocol cannot carry (a player id over 64 bytes, an input over {@link MAX_INPUT_PAYLOAD}). */
export function encodeClientMessage(message: ClientMessage): Uint8Array {
  const w = new Writer().u8(Kind[kindNameOf(message)]);
  switch (message.kind) {
    case "hello":
      w.u16(message.version)
        .string(message.playerId, "player id", 1, MAX_PLAYER_ID_BYTES)
        .string(message.room, "room", 0, MAX_ROOM_BYTES);
      if (message.authToken === null) {
        w.u8(0);
      } else {
        w.u8(1).string(message.authToken, "auth token", 0, MAX_AUTH_TOKEN_BYTES);
      }
      if (message.resume === null) {
        w.u8(0);
      } else {
        w.u8(1).raw(token(message.resume.token)).u64(message.resume.lastEventSeq);
      }
      w.raw(checkOptions(message.options));
      break;
    case "ping":
    case "pong":
      w.u64(message.nonce);
      break;
    case "input":
      if (message.payload.length > MAX_INPUT_PAYLOAD) {
        throw new RangeError(`an input carries at most ${MAX_INPUT_PAYLOAD} bytes, not ${message.payload.length}`);
      }
      w.u64(message.seq).raw(message.payload);
      break;
    case "ack":
      w.u64(message.seq);
      break;
    case "bye":
      w.u8(byeCodeNumber(message.code)).raw(utf8Encoder.encode(message.text));
      break;
    case "join":
      w.string(message.room, "room", 1, MAX_ROOM_BYTES).raw(checkOptions(message.options));
      break;
  }
  return w.done();
}

/** Encodes a server's message as a body (the server's side; for tests and tools). */
export function encodeServerMessage(message: ServerMessage): Uint8Array {
  const w = new Writer().u8(Kind[kindNameOf(message)]);
  switch (message.kind) {
    case "welcome":
      w.u64(message.sessionId)
        .u32(message.heartbeatIntervalMs)
        .u32(message.idleTimeoutMs)
        .raw(token(message.resumeToken))
        .u8(message.resumed ? 1 : 0)
        .u64(message.lastInputSeq)
        .string(message.room, "room", 0, MAX_ROOM_BYTES);
      break;
    case "ping":
    case "pong":
      w.u64(message.nonce);
      break;
    case "event":
      w.u64(message.seq).raw(message.payload);
      break;
    case "ack":
      w.u64(message.seq);
      break;
    case "bye":
      w.u8(byeCodeNumber(message.code)).raw(utf8Encoder.encode(message.text));
      break;
    case "joined":
      w.string(message.room, "room", 0, MAX_ROOM_BYTES);
      break;
    case "joinRefused":
      w.string(message.room, "room", 0, MAX_ROOM_BYTES).raw(utf8Encoder.encode(message.text));
      break;
  }
  return w.done();
}

function kindNameOf(message: ClientMessage | ServerMessage): KindName {
  const name = message.kind === "joinRefused" ? "JoinRefused" : message.kind[0]!.toUpperCase() + message.kind.slice(1);
  return name as KindName;
}

function token(bytes: Uint8Array): Uint8Array {
  if (bytes.length !== RESUME_TOKEN_LEN) {
    throw new RangeError(`a resume token is ${RESUME_TOKEN_LEN} bytes, not ${bytes.length}`);
  }
  return bytes;
}

/** True for the all-zero token of a server that offers no resume. */
export function isNoToken(bytes: Uint8Array): boolean {
  return bytes.every((byte) => byte === 0);
}

/** A body behind its length prefix, as it travels over TCP and TLS. */
export function frame(body: Uint8Array): Uint8Array {
  const framed = new Uint8Array(HEADER_LEN + body.length);
  new DataView(framed.buffer).setUint32(0, body.length);
  framed.set(body, HEADER_LEN);
  return framed;
}

/**
 * Takes frames out of a byte stream (TCP, TLS): bytes go in as they arrive, whole bodies come
 * out. A bad length prefix is refused as soon as its four bytes are in, before any of the body,
 * and nothing is reserved for an announced body above the maximum.
 */
export class FrameDecoder {
  private buffer = new Uint8Array(0);
  private start = 0;
  private end = 0;

  constructor(readonly maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {}

  /** Adds bytes that arrived. */
  push(bytes: Uint8Array): void {
    if (this.end + bytes.length > this.buffer.length) {
      const held = this.end - this.start;
      const grown = new Uint8Array(Math.max(held + bytes.length, this.buffer.length * 2, 1024));
      grown.set(this.buffer.subarray(this.start, this.end));
      this.buffer = grown;
      this.start = 0;
      this.end = held;
    }
    this.buffer.set(bytes, this.end);
    this.end += bytes.length;
  }

  /** The next whole body, or `null` until more bytes arrive. Throws `FrameTooLarge` or
   * `EmptyFrame` for a bad prefix: the stream cannot be resynchronised after one. */
  next(): Uint8Array | null {
    const held = this.end - this.start;
    if (held < HEADER_LEN) {
      return null;
    }
    const length = new DataView(this.buffer.buffer, this.start, HEADER_LEN).getUint32(0);
    if (length === 0) {
      throw new CodecError("EmptyFrame", "empty frame: the length prefix is zero");
    }
    if (length > this.maxFrameBytes) {
      throw new CodecError("FrameTooLarge", `frame of ${length} bytes exceeds the maximum of ${this.maxFrameBytes}`);
    }
    if (held < HEADER_LEN + length) {
      return null;
    }
    const body = this.buffer.slice(this.start + HEADER_LEN, this.start + HEADER_LEN + length);
    this.start += HEADER_LEN + length;
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
    }
    return body;
  }

  /** Bytes of an unfinished frame. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** The stream ended: between frames that is a clean end; inside one, `Truncated`. */
  finish(): void {
    if (this.buffered > 0) {
      throw new CodecError(
        "Truncated",
        `stream ended inside a frame (${this.buffered} bytes of an unfinished frame were buffered)`,
      );
    }
  }
}
