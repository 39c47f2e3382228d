// @gameserver/client, browser bundle. Built from clients/typescript/src by `npm run bundle`; do not edit by hand.

// src/backoff.ts
var Backoff = class {
  constructor(config = {}, random = Math.random) {
    this.random = random;
    this.minMs = config.minMs ?? 100;
    this.maxMs = config.maxMs ?? 5e3;
    if (!(this.minMs > 0) || !(this.maxMs >= this.minMs)) {
      throw new RangeError(`backoff needs 0 < minMs <= maxMs, not ${this.minMs} and ${this.maxMs}`);
    }
  }
  random;
  attempt = 0;
  minMs;
  maxMs;
  /** The base of the next delay, without jitter. */
  base() {
    return Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt, 52));
  }
  /** The next delay, in ms. */
  next() {
    const base = this.base();
    this.attempt += 1;
    return base * (1 + this.random());
  }
  /** After a success: the next delay starts from `minMs` again. */
  reset() {
    this.attempt = 0;
  }
};

// src/codec.ts
var PROTOCOL_VERSION = 3;
var HEADER_LEN = 4;
var DEFAULT_MAX_FRAME_BYTES = 65536;
var MAX_PLAYER_ID_BYTES = 64;
var MAX_ROOM_BYTES = 64;
var MAX_AUTH_TOKEN_BYTES = 512;
var MAX_OPTIONS_BYTES = 1024;
var RESUME_TOKEN_LEN = 16;
var MAX_HELLO_BODY = 1699;
var INPUT_HEADROOM = 128;
function maxInputPayload(maxFrameBytes) {
  return maxFrameBytes - 9 - INPUT_HEADROOM;
}
var MAX_INPUT_PAYLOAD = maxInputPayload(DEFAULT_MAX_FRAME_BYTES);
var Kind = {
  Hello: 1,
  Welcome: 2,
  Ping: 3,
  Pong: 4,
  Input: 5,
  Event: 6,
  Ack: 7,
  Bye: 8,
  Join: 9,
  Joined: 10,
  JoinRefused: 11
};
var BYE_CODES = [
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
  "game_ended"
];
function byeCodeNumber(code) {
  return BYE_CODES.indexOf(code) + 1;
}
var CodecError = class extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
    this.name = "CodecError";
  }
  kind;
};
var utf8Encoder = new TextEncoder();
var utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
var Reader = class {
  constructor(body, what) {
    this.body = body;
    this.what = what;
    this.view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  }
  body;
  what;
  at = 0;
  view;
  malformed(reason) {
    return new CodecError("Malformed", `malformed ${this.what}: ${reason}`);
  }
  need(n, field) {
    if (this.at + n > this.body.length) {
      throw this.malformed(`${field} runs past the end of the body`);
    }
  }
  u8(field) {
    this.need(1, field);
    return this.body[this.at++];
  }
  u16(field) {
    this.need(2, field);
    const value = this.view.getUint16(this.at);
    this.at += 2;
    return value;
  }
  u32(field) {
    this.need(4, field);
    const value = this.view.getUint32(this.at);
    this.at += 4;
    return value;
  }
  u64(field) {
    this.need(8, field);
    const value = this.view.getBigUint64(this.at);
    this.at += 8;
    return value;
  }
  /** A u64 that counts (a sequence number): refused above 2^53 - 1 rather than rounded. */
  seq(field) {
    const value = this.u64(field);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw this.malformed(`${field} ${value} is beyond this client's range (2^53 - 1)`);
    }
    return Number(value);
  }
  bool(field) {
    const value = this.u8(field);
    if (value > 1) {
      throw this.malformed(`${field} is ${value}, neither 0 nor 1`);
    }
    return value === 1;
  }
  bytes(n, field) {
    this.need(n, field);
    const value = this.body.slice(this.at, this.at + n);
    this.at += n;
    return value;
  }
  string(field, min, max) {
    const n = this.u16(`${field} length`);
    if (n < min || n > max) {
      throw this.malformed(`${field} is ${n} bytes, allowed ${min} to ${max}`);
    }
    return this.text(this.bytes(n, field), field);
  }
  text(raw, field) {
    try {
      return utf8Decoder.decode(raw);
    } catch {
      throw this.malformed(`${field} is not valid UTF-8`);
    }
  }
  rest() {
    const value = this.body.slice(this.at);
    this.at = this.body.length;
    return value;
  }
  /** Join options: the rest of the body, at most {@link MAX_OPTIONS_BYTES}. */
  options() {
    const value = this.rest();
    if (value.length > MAX_OPTIONS_BYTES) {
      throw this.malformed(`join options are ${value.length} bytes, allowed at most ${MAX_OPTIONS_BYTES}`);
    }
    return value;
  }
  end() {
    if (this.at !== this.body.length) {
      throw this.malformed(`${this.body.length - this.at} trailing byte(s) after the last field`);
    }
  }
};
var Writer = class {
  bytes = [];
  u8(value) {
    this.bytes.push(value & 255);
    return this;
  }
  u16(value) {
    return this.u8(value >>> 8).u8(value);
  }
  u32(value) {
    return this.u16(value >>> 16).u16(value & 65535);
  }
  u64(value) {
    const big = BigInt(value);
    if (big < 0n || big > 0xffffffffffffffffn) {
      throw new RangeError(`${value} is not a u64`);
    }
    return this.u32(Number(big >> 32n)).u32(Number(big & 0xffffffffn));
  }
  raw(bytes) {
    for (const byte of bytes) {
      this.bytes.push(byte);
    }
    return this;
  }
  string(value, field, min, max) {
    const raw = utf8Encoder.encode(value);
    if (raw.length < min || raw.length > max) {
      throw new RangeError(`${field} must be ${min} to ${max} bytes of UTF-8, not ${raw.length}`);
    }
    return this.u16(raw.length).raw(raw);
  }
  done() {
    return Uint8Array.from(this.bytes);
  }
};
function kindName(kind) {
  return Object.keys(Kind).find((name) => Kind[name] === kind);
}
function kindOf(body) {
  if (body.length === 0) {
    throw new CodecError("EmptyFrame", "empty frame: every body holds at least its kind byte");
  }
  const kind = body[0];
  const name = kindName(kind);
  if (name === void 0) {
    throw new CodecError("UnknownKind", `unknown message kind 0x${kind.toString(16).padStart(2, "0")}`);
  }
  return name;
}
function wrongDirection(name, to) {
  return new CodecError("WrongDirection", `a ${name} is never sent to a ${to}`);
}
function byeCode(reader) {
  const number = reader.u8("code");
  const code = BYE_CODES[number - 1];
  if (number === 0 || code === void 0) {
    throw reader.malformed(`unknown bye code ${number}`);
  }
  return code;
}
function decodeServerMessage(body) {
  const name = kindOf(body);
  const r = new Reader(body, name);
  r.u8("kind");
  let message;
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
        room: r.string("room", 0, MAX_ROOM_BYTES)
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
function decodeClientMessage(body) {
  const name = kindOf(body);
  const r = new Reader(body, name);
  r.u8("kind");
  let message;
  switch (name) {
    case "Hello": {
      const version = r.u16("version");
      const playerId = r.string("player_id", 1, MAX_PLAYER_ID_BYTES);
      const room = r.string("room", 0, MAX_ROOM_BYTES);
      const authToken = r.bool("has_auth") ? r.string("auth_token", 0, MAX_AUTH_TOKEN_BYTES) : null;
      const resume = r.bool("has_resume") ? { token: r.bytes(RESUME_TOKEN_LEN, "resume_token"), lastEventSeq: r.seq("last_event_seq") } : null;
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
function checkOptions(options) {
  if (options.length > MAX_OPTIONS_BYTES) {
    throw new RangeError(`join options are at most ${MAX_OPTIONS_BYTES} bytes, not ${options.length}`);
  }
  return options;
}
function encodeClientMessage(message) {
  const w = new Writer().u8(Kind[kindNameOf(message)]);
  switch (message.kind) {
    case "hello":
      w.u16(message.version).string(message.playerId, "player id", 1, MAX_PLAYER_ID_BYTES).string(message.room, "room", 0, MAX_ROOM_BYTES);
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
function encodeServerMessage(message) {
  const w = new Writer().u8(Kind[kindNameOf(message)]);
  switch (message.kind) {
    case "welcome":
      w.u64(message.sessionId).u32(message.heartbeatIntervalMs).u32(message.idleTimeoutMs).raw(token(message.resumeToken)).u8(message.resumed ? 1 : 0).u64(message.lastInputSeq).string(message.room, "room", 0, MAX_ROOM_BYTES);
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
function kindNameOf(message) {
  const name = message.kind === "joinRefused" ? "JoinRefused" : message.kind[0].toUpperCase() + message.kind.slice(1);
  return name;
}
function token(bytes) {
  if (bytes.length !== RESUME_TOKEN_LEN) {
    throw new RangeError(`a resume token is ${RESUME_TOKEN_LEN} bytes, not ${bytes.length}`);
  }
  return bytes;
}
function isNoToken(bytes) {
  return bytes.every((byte) => byte === 0);
}
function frame(body) {
  const framed = new Uint8Array(HEADER_LEN + body.length);
  new DataView(framed.buffer).setUint32(0, body.length);
  framed.set(body, HEADER_LEN);
  return framed;
}
var FrameDecoder = class {
  constructor(maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }
  maxFrameBytes;
  buffer = new Uint8Array(0);
  start = 0;
  end = 0;
  /** Adds bytes that arrived. */
  push(bytes) {
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
  next() {
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
  get buffered() {
    return this.end - this.start;
  }
  /** The stream ended: between frames that is a clean end; inside one, `Truncated`. */
  finish() {
    if (this.buffered > 0) {
      throw new CodecError(
        "Truncated",
        `stream ended inside a frame (${this.buffered} bytes of an unfinished frame were buffered)`
      );
    }
  }
};

// src/end.ts
function transportEnd(cause, detail = "") {
  return { kind: "transport", cause, detail };
}
var BYE_DECISIONS = {
  client_quit: { action: "done", why: "the session ended as asked" },
  server_shutdown: {
    action: "new_session",
    delayMs: 2e3,
    why: "the server is stopping: reconnect after a few seconds, to this or another server"
  },
  kicked: { action: "give_up", why: "an operator removed the player: tell the player" },
  replaced: {
    action: "give_up",
    why: "the same player connected elsewhere: two clients of one player would keep replacing each other"
  },
  server_full: { action: "retry", why: "the server is at a limit: retry with backoff" },
  protocol_error: { action: "give_up", why: "a bug in the client: log the text" },
  idle_timeout: { action: "resume", why: "the server heard nothing for its idle timeout: resume" },
  slow_consumer: {
    action: "resume",
    why: "the client read too slowly: resume (if the server parks slow consumers)"
  },
  rate_limited: {
    action: "new_session",
    delayMs: 1e3,
    why: "too many frames per second: reconnect after a backoff and send fewer"
  },
  auth_failed: { action: "give_up", why: "get a new token from the game's backend, then start a new session" },
  version_mismatch: { action: "give_up", why: "this client speaks another protocol version: update it" },
  handshake_timeout: { action: "retry", why: "no Hello in time: reconnect and send Hello at once" },
  resume_rejected: { action: "new_session", why: "the session is gone on the server: start a fresh one" },
  join_refused: {
    action: "give_up",
    why: "the room refused the player: choose another room (or let the server choose)"
  },
  game_ended: { action: "give_up", why: "the game ended the session by its rules" }
};
function decide(end) {
  switch (end.kind) {
    case "bye":
      return BYE_DECISIONS[end.code];
    case "transport":
      return end.cause === "refused" || end.cause === "closed_while_opening" ? { action: "retry", why: "no connection was made: try again with backoff" } : { action: "resume", why: "the connection broke: the server parks the session" };
    case "server_silent":
      return { action: "resume", why: "the server or the path went silent: reconnect and resume" };
    case "protocol":
      return { action: "give_up", why: "the server sent bytes that are not the protocol" };
    case "opening":
      return { action: "give_up", why: "the server's certificate or answer was refused: trying again cannot help" };
    case "quit":
      return { action: "done", why: "the client closed" };
  }
}
function decideLost(lost) {
  switch (lost.kind) {
    case "ended":
      return decide(lost.end);
    case "resume_refused":
      return BYE_DECISIONS.resume_rejected;
    case "not_resumable":
      return { action: "new_session", why: "the server offers no resume: start a fresh session" };
    case "gave_up":
      return { action: "give_up", why: "no connection could be made for the configured attempts" };
  }
}
function isResumable(end) {
  return decide(end).action === "resume";
}
function closeReason(end) {
  switch (end.kind) {
    case "bye":
      if (end.code === "server_full") {
        return null;
      }
      return end.code === "version_mismatch" ? "protocol_error" : end.code;
    case "transport":
      switch (end.cause) {
        case "refused":
        case "closed_while_opening":
          return null;
        case "timed_out":
          return "tcp_timeout";
        case "io":
          return "io_error";
        default:
          return end.cause;
      }
    case "server_silent":
      return "idle_timeout";
    case "quit":
      return "client_quit";
    case "protocol":
    case "opening":
      return null;
  }
}
function describeEnd(end) {
  switch (end.kind) {
    case "bye":
      return `the server said Bye{${end.code}}${end.text ? `: ${end.text}` : ""}`;
    case "transport":
      return `${end.cause.replace(/_/g, " ")}${end.detail ? `: ${end.detail}` : ""}`;
    case "server_silent":
      return `the server sent nothing for ${end.afterMs} ms`;
    case "protocol":
      return `protocol error: ${end.detail}`;
    case "opening":
      return `the connection could not be opened: ${end.detail}`;
    case "quit":
      return "the client closed the session";
  }
}
function describeLost(lost) {
  switch (lost.kind) {
    case "ended":
      return `the session ended: ${describeEnd(lost.end)}`;
    case "resume_refused":
      return `the server could not resume the session: ${lost.text}`;
    case "not_resumable":
      return `the connection broke and the session cannot be resumed: ${describeEnd(lost.end)}`;
    case "gave_up":
      return `gave up reconnecting: ${describeEnd(lost.end)}`;
  }
}
var SessionLost = class extends Error {
  constructor(lost, decision) {
    super(describeLost(lost));
    this.lost = lost;
    this.decision = decision;
    this.name = "SessionLost";
  }
  lost;
  decision;
};
function transportOfErrno(code, detail) {
  switch (code) {
    case "ECONNREFUSED":
      return transportEnd("refused", detail);
    case "ECONNRESET":
    case "ECONNABORTED":
      return transportEnd("peer_reset", detail);
    case "EPIPE":
      return transportEnd("broken_pipe", detail);
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return transportEnd("timed_out", detail);
    default:
      return transportEnd("io", detail);
  }
}

// src/core.ts
var InputError = class extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
    this.name = "InputError";
  }
  kind;
};
function helloRoom(kept, asked) {
  return kept !== null && !kept.toLowerCase().startsWith("auto-") ? kept : asked;
}
var PINGS_PER_IDLE = 3;
var Core = class {
  config;
  phase = { name: "disconnected" };
  kept = null;
  /** The highest event delivered to the game (without a gap). */
  lastEventSeq = 0;
  /** The highest event acknowledged to the server. */
  ackedEvents = 0;
  nextInput = 1;
  /** Inputs not yet acknowledged by the server, in order. */
  unacked = [];
  ackedInputSeq = 0;
  transmit = [];
  output = [];
  lastHeard;
  nextPing = null;
  pingOut = null;
  nonce = 0n;
  rttMs = null;
  constructor(config, now) {
    this.config = {
      playerId: config.playerId,
      room: config.room ?? "",
      authToken: config.authToken ?? null,
      options: checkOptions(config.options ?? new Uint8Array(0)),
      maxUnackedInputs: config.maxUnackedInputs ?? 1024,
      ackEvery: config.ackEvery ?? 128
    };
    this.lastHeard = now;
  }
  /** A connection is up: sends `Hello`, with a resume when there is a session to take back. */
  connected(now) {
    this.transmit = [];
    this.lastHeard = now;
    this.nextPing = null;
    this.pingOut = null;
    const kept = this.kept;
    const resume = kept !== null && !isNoToken(kept.token) ? { token: kept.token, lastEventSeq: this.lastEventSeq } : null;
    this.phase = { name: "handshaking", resuming: resume !== null };
    this.transmit.push({
      kind: "hello",
      version: PROTOCOL_VERSION,
      playerId: this.config.playerId,
      room: helloRoom(kept?.room ?? null, this.config.room),
      authToken: this.config.authToken,
      resume,
      options: resume === null ? this.config.options : new Uint8Array(0)
    });
  }
  /** Handles one message from the server. A returned `End` ends the connection: the driver
   * closes it and calls {@link Core.disconnected} with it. */
  receive(message, now) {
    this.lastHeard = now;
    if (message.kind === "welcome") {
      return this.welcome(message, now);
    }
    if (message.kind === "bye") {
      return { kind: "bye", code: message.code, text: message.text };
    }
    if (this.phase.name !== "live" && this.phase.name !== "quitting") {
      return { kind: "protocol", detail: `${message.kind} before Welcome` };
    }
    switch (message.kind) {
      case "ping":
        if (this.phase.name === "live") {
          this.transmit.push({ kind: "pong", nonce: message.nonce });
        }
        break;
      case "pong":
        if (this.pingOut !== null && this.pingOut.nonce === message.nonce) {
          this.rttMs = now - this.pingOut.at;
          this.pingOut = null;
        }
        break;
      case "event":
        if (message.seq <= this.lastEventSeq) {
          break;
        }
        if (message.seq !== this.lastEventSeq + 1) {
          return { kind: "protocol", detail: `event ${message.seq} after ${this.lastEventSeq}: a gap` };
        }
        this.lastEventSeq = message.seq;
        this.output.push({ kind: "event", seq: message.seq, payload: message.payload });
        if (this.lastEventSeq - this.ackedEvents >= this.config.ackEvery) {
          this.sendAck();
        }
        break;
      case "ack":
        this.inputsApplied(message.seq);
        break;
      case "joined":
        if (this.kept !== null) {
          this.kept.room = message.room;
        }
        this.output.push({ kind: "joined", room: message.room });
        break;
      case "joinRefused":
        this.output.push({ kind: "joinRefused", room: message.room, text: message.text });
        break;
    }
    return null;
  }
  /** Handles one message body as it came off the wire (a WebSocket message, or a frame
   * without its length prefix): bytes that are not the protocol end the connection as a
   * protocol error. */
  receiveBody(body, now) {
    let message;
    try {
      message = decodeServerMessage(body);
    } catch (error) {
      if (error instanceof CodecError) {
        this.lastHeard = now;
        return { kind: "protocol", detail: error.message };
      }
      throw error;
    }
    return this.receive(message, now);
  }
  welcome(welcome, now) {
    if (this.phase.name !== "handshaking") {
      return { kind: "protocol", detail: "a second Welcome" };
    }
    const resuming = this.phase.resuming;
    const continued = resuming && welcome.resumed;
    if (resuming && !welcome.resumed) {
      this.output.push({
        kind: "lost",
        lost: { kind: "resume_refused", text: "the server started a new session instead of resuming" },
        ackedInput: this.ackedInputSeq
      });
    }
    if (resuming && !continued) {
      this.lastEventSeq = 0;
      this.ackedEvents = 0;
      this.nextInput = 1;
      this.ackedInputSeq = 0;
      this.unacked = [];
    }
    this.kept = {
      sessionId: welcome.sessionId,
      room: welcome.room,
      token: welcome.resumeToken,
      heartbeatMs: welcome.heartbeatIntervalMs,
      idleMs: welcome.idleTimeoutMs
    };
    this.phase = { name: "live" };
    if (continued) {
      this.inputsApplied(welcome.lastInputSeq);
    }
    for (const { seq, payload } of this.unacked) {
      this.transmit.push({ kind: "input", seq, payload });
    }
    this.output.push({
      kind: "welcome",
      sessionId: welcome.sessionId,
      room: welcome.room,
      resumed: continued,
      resent: continued ? this.unacked.length : 0
    });
    this.schedulePing(now);
    return null;
  }
  inputsApplied(seq) {
    if (seq <= this.ackedInputSeq) {
      return;
    }
    this.ackedInputSeq = seq;
    while (this.unacked.length > 0 && this.unacked[0].seq <= seq) {
      this.unacked.shift();
    }
    this.output.push({ kind: "acked", seq });
  }
  /** The connection ended with `end`. Says what to do next; a lost session is also reported as
   * an output `lost`. */
  disconnected(end) {
    this.transmit = [];
    const phase = this.phase;
    this.phase = { name: "disconnected" };
    switch (phase.name) {
      case "over":
        this.phase = phase;
        return "closed";
      case "quitting":
        this.phase = { name: "over" };
        this.kept = null;
        return "closed";
      case "handshaking":
        if (phase.resuming && end.kind === "bye" && end.code === "resume_rejected") {
          if (end.text.includes("retry")) {
            return "reconnect";
          }
          return this.lose({ kind: "resume_refused", text: end.text });
        }
        break;
      case "disconnected":
      case "live":
        break;
    }
    const decision = decide(end);
    if (decision.action === "retry") {
      return "reconnect";
    }
    if (this.kept === null) {
      return decision.action === "resume" ? "reconnect" : this.lose({ kind: "ended", end });
    }
    if (decision.action !== "resume") {
      return this.lose({ kind: "ended", end });
    }
    if (isNoToken(this.kept.token)) {
      return this.lose({ kind: "not_resumable", end });
    }
    return "reconnect";
  }
  /** Reconnecting was given up on: the session is lost. */
  giveUp(last) {
    this.phase = { name: "disconnected" };
    this.lose({ kind: "gave_up", end: last });
  }
  lose(lost) {
    this.phase = { name: "over" };
    this.kept = null;
    this.unacked = [];
    this.output.push({ kind: "lost", lost, ackedInput: this.ackedInputSeq });
    return "lost";
  }
  /** After a loss (or a quit), forgets the old session: the next connection starts a new one. */
  restart() {
    this.phase = { name: "disconnected" };
    this.kept = null;
    this.lastEventSeq = 0;
    this.ackedEvents = 0;
    this.nextInput = 1;
    this.ackedInputSeq = 0;
    this.unacked = [];
  }
  /** Queues an input; returns its sequence number. While the connection is down the input is
   * kept and goes out after the resume. */
  input(payload) {
    if (this.phase.name === "over" || this.phase.name === "quitting") {
      throw new InputError("no_session", "there is no session to send input to");
    }
    if (payload.length > MAX_INPUT_PAYLOAD) {
      throw new InputError("too_large", `an input carries at most ${MAX_INPUT_PAYLOAD} bytes`);
    }
    if (this.unacked.length >= this.config.maxUnackedInputs) {
      throw new InputError("full", "too many inputs are waiting for the server's acknowledgement");
    }
    const seq = this.nextInput++;
    const kept = payload.slice();
    this.unacked.push({ seq, payload: kept });
    if (this.phase.name === "live") {
      this.transmit.push({ kind: "input", seq, payload: kept });
    }
    return seq;
  }
  /** Asks to move to `room` with join `options` (at most 1024 bytes; a `RangeError` beyond);
   * answered with `joined` or `joinRefused`. Only while welcomed. */
  join(room, options = new Uint8Array(0)) {
    checkOptions(options);
    if (this.phase.name !== "live") {
      return false;
    }
    this.transmit.push({ kind: "join", room, options });
    return true;
  }
  /** Starts the lingering close: acknowledges the events received, says `Bye`, then waits for
   * the server's `Ack` and `Bye` (the driver reads until the end of the stream). */
  quit() {
    switch (this.phase.name) {
      case "live":
        this.sendAck();
        this.transmit.push({ kind: "bye", code: "client_quit", text: "" });
        this.phase = { name: "quitting" };
        break;
      case "over":
      case "quitting":
        break;
      case "disconnected":
      case "handshaking":
        this.phase = { name: "quitting" };
        break;
    }
  }
  /** True once {@link Core.quit} was called. */
  get quitting() {
    return this.phase.name === "quitting" || this.phase.name === "over";
  }
  /** When {@link Core.onTimer} must run next: the next heartbeat, or the moment the server has
   * been silent for its idle timeout. */
  nextDeadline() {
    const kept = this.kept;
    if (kept === null || this.phase.name !== "live" && this.phase.name !== "quitting") {
      return null;
    }
    const deadlines = [kept.idleMs > 0 ? this.lastHeard + kept.idleMs : null, this.nextPing].filter(
      (at) => at !== null
    );
    return deadlines.length === 0 ? null : Math.min(...deadlines);
  }
  /** The timer fired: the server is declared silent, or the heartbeat goes out (a `Ping`, with
   * the `Ack` of the events received). */
  onTimer(now) {
    const kept = this.kept;
    if (kept === null) {
      return null;
    }
    if (kept.idleMs > 0 && now >= this.lastHeard + kept.idleMs) {
      return { kind: "server_silent", afterMs: kept.idleMs };
    }
    if (this.nextPing !== null && now >= this.nextPing && this.phase.name === "live") {
      this.sendAck();
      this.nonce += 1n;
      this.pingOut = { nonce: this.nonce, at: now };
      this.transmit.push({ kind: "ping", nonce: this.nonce });
      this.schedulePing(now);
    }
    return null;
  }
  /**
   * The client itself could not run for `ms` (its process was stopped, the machine slept, a
   * browser throttled the tab): the silence of that time is not the server's. The watchdog's
   * reference moves later by as much, as the server does for its own stalls, so that frames
   * that arrived meanwhile are read before the server is judged; the next heartbeat goes out at
   * once.
   */
  stalled(ms, now) {
    if (ms <= 0) {
      return;
    }
    this.lastHeard += ms;
    if (this.nextPing !== null) {
      this.nextPing = Math.min(this.nextPing, now);
    }
  }
  /** The client's own heartbeat: a little faster than the server's, so that the server never
   * needs to ping it (PROTOCOL.md, "Heartbeat and liveness"); without a server heartbeat, a few
   * times per idle timeout. */
  schedulePing(now) {
    const kept = this.kept;
    if (kept === null) {
      return;
    }
    const period = kept.heartbeatMs === 0 ? kept.idleMs / PINGS_PER_IDLE : kept.heartbeatMs * 9 / 10;
    this.nextPing = period > 0 ? now + period : null;
  }
  /** Acknowledges every event delivered so far now, rather than with the next heartbeat. Only
   * while welcomed. */
  acknowledge() {
    if (this.phase.name === "live") {
      this.sendAck();
    }
  }
  sendAck() {
    if (this.lastEventSeq > this.ackedEvents) {
      this.ackedEvents = this.lastEventSeq;
      this.transmit.push({ kind: "ack", seq: this.lastEventSeq });
    }
  }
  /** The next message to send. */
  pollTransmit() {
    return this.transmit.shift();
  }
  /** The next message to send, encoded as a body (a WebSocket message; behind a length prefix
   * over TCP and TLS). */
  pollTransmitBody() {
    const message = this.transmit.shift();
    return message === void 0 ? void 0 : encodeClientMessage(message);
  }
  /** The next thing to tell the game. */
  pollOutput() {
    return this.output.shift();
  }
  /** The player id. */
  get playerId() {
    return this.config.playerId;
  }
  /** The last round trip measured by the client's own ping, in milliseconds. */
  get rtt() {
    return this.rttMs;
  }
  /** The session's id, while there is a session. */
  get sessionId() {
    return this.kept?.sessionId ?? null;
  }
  /** The room the player is in, while there is a session. */
  get room() {
    return this.kept?.room ?? null;
  }
  /** The highest event delivered, without a gap. */
  get lastEvent() {
    return this.lastEventSeq;
  }
  /** The highest input the server acknowledged. */
  get ackedInput() {
    return this.ackedInputSeq;
  }
  /** Inputs sent (or waiting to be) and not acknowledged yet. */
  get unackedInputs() {
    return this.unacked.length;
  }
  /** True while welcomed on a connection. */
  get isLive() {
    return this.phase.name === "live";
  }
};

// src/emitter.ts
var Emitter = class {
  listeners = {};
  /** Calls `listener` for every `name` event; returns a function that removes it. */
  on(name, listener) {
    (this.listeners[name] ??= []).push(listener);
    return () => this.off(name, listener);
  }
  /** Calls `listener` for the next `name` event only. */
  once(name, listener) {
    const off = this.on(name, (value) => {
      off();
      listener(value);
    });
    return off;
  }
  off(name, listener) {
    const list = this.listeners[name];
    if (list !== void 0) {
      const at = list.indexOf(listener);
      if (at >= 0) {
        list.splice(at, 1);
      }
    }
  }
  emit(name, value) {
    for (const listener of [...this.listeners[name] ?? []]) {
      try {
        listener(value);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
};

// src/client.ts
var platformClock = {
  now: () => performance.now(),
  setTimeout: (run, ms) => setTimeout(run, ms),
  clearTimeout: (handle) => clearTimeout(handle)
};
var Client = class extends Emitter {
  core;
  clock;
  backoff;
  random;
  dial;
  connectTimeoutMs;
  handshakeTimeoutMs;
  maxAttempts;
  renew;
  lingerMs;
  stallMs;
  stateNow = "idle";
  link = null;
  /** Counts links, so that a late word from an old one is ignored. */
  linkId = 0;
  opened = false;
  welcomedOnLink = false;
  attempt = 0;
  droppedAt = null;
  openBy = null;
  welcomeBy = null;
  lingerBy = null;
  retryAt = null;
  timer = null;
  timerFor = null;
  waitingConnect = [];
  waitingLeave = [];
  constructor(options) {
    super();
    checkName(options.playerId, "player id", 1);
    checkName(options.room ?? "", "room", 0);
    this.clock = options.clock ?? platformClock;
    this.random = options.random ?? Math.random;
    this.core = new Core(options, this.clock.now());
    this.backoff = new Backoff(options.reconnect, this.random);
    this.dial = options.dial;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5e3;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 5e3;
    this.maxAttempts = options.maxAttempts === void 0 ? 30 : options.maxAttempts;
    this.renew = options.renew ?? true;
    this.lingerMs = options.lingerMs ?? 5e3;
    this.stallMs = options.stallMs ?? 250;
  }
  /** Starts connecting (once); resolves at the next `Welcome`, or at once while welcomed.
   * Rejects with {@link SessionLost} if the session is lost before, or an `Error` if the client
   * closes. */
  connect() {
    if (this.stateNow === "live" && this.core.sessionId !== null) {
      return Promise.resolve({ sessionId: this.core.sessionId, room: this.core.room ?? "", resumed: false });
    }
    if (this.stateNow === "closed") {
      return Promise.reject(new Error("the client is closed"));
    }
    const welcomed = new Promise((resolve, reject) => this.waitingConnect.push({ resolve, reject }));
    if (this.stateNow === "idle") {
      this.attemptConnection();
    } else if (this.stateNow === "lost") {
      this.newSession();
    }
    return welcomed;
  }
  /** Sends an input (now, or after the resume while the connection is down); returns its
   * sequence number. Throws an `InputError` when it cannot be kept. */
  input(payload) {
    const seq = this.core.input(payload);
    this.flush();
    return seq;
  }
  /** Asks to move to `room` with join `options` (answered by a `joined` or `joinRefused`
   * event); false while not welcomed. */
  join(room, options) {
    checkName(room, "room", 1);
    const asked = this.core.join(room, options);
    this.flush();
    return asked;
  }
  /** Acknowledges the events delivered so far now, rather than with the next heartbeat. */
  acknowledge() {
    this.core.acknowledge();
    this.flush();
  }
  /** After an `end` that did not renew: starts a new session (a `session` event follows). */
  newSession() {
    if (this.stateNow !== "lost") {
      return;
    }
    this.core.restart();
    this.attempt = 0;
    this.backoff.reset();
    this.attemptConnection();
  }
  /**
   * Leaves the lingering way: acknowledges the events, says `Bye{client_quit}`, reads the
   * server's last events, its `Ack` and its `Bye`, then closes. Resolves with the highest input
   * the server acknowledged: every input up to it was applied, none after it.
   */
  leave() {
    if (this.stateNow === "closed") {
      return Promise.resolve({ ackedInput: this.core.ackedInput });
    }
    const left = new Promise((resolve) => this.waitingLeave.push(resolve));
    if (this.stateNow !== "leaving") {
      this.core.quit();
      if (this.link !== null && this.welcomedOnLink) {
        this.stateNow = "leaving";
        this.flush();
        this.link.finish();
        this.lingerBy = this.clock.now() + this.lingerMs;
        this.arm();
      } else {
        this.link?.close();
        this.ended(this.linkId, { kind: "quit" });
      }
    }
    return left;
  }
  /** Drops the connection at once with a reset, as a crashing game would (for tests); the
   * server parks the session. */
  abort() {
    if (this.stateNow === "closed") {
      return;
    }
    this.core.quit();
    this.link?.abort();
    this.ended(this.linkId, { kind: "quit" });
  }
  /** Where the client is. */
  get state() {
    return this.stateNow;
  }
  /** The session's id, while there is one. */
  get sessionId() {
    return this.core.sessionId;
  }
  /** The room the player is in, while there is a session. */
  get room() {
    return this.core.room;
  }
  /** The highest event delivered. */
  get lastEvent() {
    return this.core.lastEvent;
  }
  /** The highest input the server acknowledged. */
  get ackedInput() {
    return this.core.ackedInput;
  }
  /** Inputs not acknowledged yet (sent, or waiting for the connection). */
  get unackedInputs() {
    return this.core.unackedInputs;
  }
  /** The last round trip the client measured, in ms. */
  get rtt() {
    return this.core.rtt;
  }
  /** Where the current connection runs, once known. */
  get connection() {
    return this.link?.info() ?? null;
  }
  attemptConnection() {
    this.clearDeadlines();
    this.attempt += 1;
    this.stateNow = this.core.sessionId === null ? "connecting" : "reconnecting";
    this.opened = false;
    this.welcomedOnLink = false;
    const id = ++this.linkId;
    this.openBy = this.clock.now() + this.connectTimeoutMs;
    this.link = this.dial({
      open: () => this.opening(id),
      body: (body) => this.received(id, body),
      end: (end) => this.ended(id, end)
    });
    this.arm();
  }
  opening(id) {
    if (id !== this.linkId || this.link === null) {
      return;
    }
    const now = this.clock.now();
    this.opened = true;
    this.openBy = null;
    this.welcomeBy = now + this.handshakeTimeoutMs;
    this.core.connected(now);
    this.flush();
    this.arm();
  }
  received(id, body) {
    if (id !== this.linkId || this.link === null) {
      return;
    }
    const end = this.core.receiveBody(body, this.clock.now());
    if (this.core.isLive && !this.welcomedOnLink) {
      this.welcomedOnLink = true;
      this.welcomeBy = null;
      this.attempt = 0;
      this.backoff.reset();
      this.stateNow = "live";
    }
    this.flush();
    this.deliver();
    if (end !== null) {
      this.link?.close();
      this.ended(id, end);
      return;
    }
    this.arm();
  }
  /** A link ended (or the driver ended it): what next. */
  ended(id, end) {
    if (id !== this.linkId || this.stateNow === "closed") {
      return;
    }
    this.link = null;
    this.linkId += 1;
    this.clearDeadlines();
    const now = this.clock.now();
    const welcomed = this.welcomedOnLink;
    this.welcomedOnLink = false;
    let next = this.core.disconnected(end);
    if (next !== "closed" && welcomed) {
      this.droppedAt = now;
      this.emit("drop", { end, decision: decide(end) });
    }
    if (next === "reconnect" && this.maxAttempts !== null && this.attempt >= this.maxAttempts) {
      this.core.giveUp(end);
      next = "lost";
    }
    const renewAfter = this.deliver();
    switch (next) {
      case "closed":
        this.close(end);
        return;
      case "reconnect": {
        const delayMs = this.backoff.next();
        this.stateNow = this.core.sessionId === null ? "connecting" : "reconnecting";
        this.emit("reconnecting", { attempt: this.attempt + 1, delayMs, end });
        this.retryAt = now + delayMs;
        break;
      }
      case "lost":
        if (renewAfter === null) {
          this.stateNow = "lost";
          return;
        }
        this.core.restart();
        this.attempt = 0;
        this.backoff.reset();
        this.stateNow = "connecting";
        this.retryAt = now + renewAfter + this.backoff.next();
        break;
    }
    this.arm();
  }
  close(end) {
    this.stateNow = "closed";
    this.clearDeadlines();
    const ackedInput = this.core.ackedInput;
    for (const { reject } of this.waitingConnect.splice(0)) {
      reject(new Error("the client closed"));
    }
    for (const resolve of this.waitingLeave.splice(0)) {
      resolve({ ackedInput });
    }
    this.emit("closed", { ackedInput, end });
  }
  /** Sends what the core has to send. */
  flush() {
    for (let body = this.core.pollTransmitBody(); body !== void 0; body = this.core.pollTransmitBody()) {
      if (this.link !== null && this.opened) {
        this.link.send(body);
      }
    }
  }
  /** Tells the game what the core has to say. Returns, when the session was lost and a new
   * one is to start by itself, the least wait its decision asks for (a backoff delay comes on
   * top); `null` otherwise. */
  deliver() {
    let renewAfter = null;
    for (let output = this.core.pollOutput(); output !== void 0; output = this.core.pollOutput()) {
      const after = this.tell(output);
      if (after !== null) {
        renewAfter = after;
      }
    }
    return renewAfter;
  }
  tell(output) {
    switch (output.kind) {
      case "welcome": {
        const info = { sessionId: output.sessionId, room: output.room, resumed: output.resumed };
        if (output.resumed) {
          const downMs = this.droppedAt === null ? 0 : this.clock.now() - this.droppedAt;
          this.emit("resume", { sessionId: output.sessionId, room: output.room, resent: output.resent, downMs });
        } else {
          this.emit("session", { sessionId: output.sessionId, room: output.room });
        }
        this.droppedAt = null;
        for (const { resolve } of this.waitingConnect.splice(0)) {
          resolve(info);
        }
        return null;
      }
      case "event":
        this.emit("event", { seq: output.seq, payload: output.payload });
        return null;
      case "acked":
        this.emit("ack", { seq: output.seq });
        return null;
      case "joined":
        this.emit("joined", { room: output.room });
        return null;
      case "joinRefused":
        this.emit("joinRefused", { room: output.room, text: output.text });
        return null;
      case "lost": {
        const decision = decideLost(output.lost);
        const alreadyRenewed = this.core.isLive;
        const renewing = alreadyRenewed || this.renew && decision.action === "new_session";
        this.emit("end", { lost: output.lost, decision, renewing, ackedInput: output.ackedInput });
        if (!renewing) {
          const error = new SessionLost(output.lost, decision);
          for (const { reject } of this.waitingConnect.splice(0)) {
            reject(error);
          }
          return null;
        }
        if (alreadyRenewed) {
          return null;
        }
        const least = decision.delayMs ?? 0;
        return least + least * this.random();
      }
    }
  }
  clearDeadlines() {
    this.openBy = null;
    this.welcomeBy = null;
    this.lingerBy = null;
    this.retryAt = null;
  }
  /** Arms the one timer for the earliest deadline. */
  arm() {
    const deadlines = [this.openBy, this.welcomeBy, this.lingerBy, this.retryAt];
    if (this.link !== null && this.welcomedOnLink) {
      deadlines.push(this.core.nextDeadline());
    }
    const due = deadlines.filter((at2) => at2 !== null);
    const at = due.length === 0 ? null : Math.min(...due);
    if (at === this.timerFor) {
      return;
    }
    if (this.timer !== null) {
      this.clock.clearTimeout(this.timer);
      this.timer = null;
    }
    this.timerFor = at;
    if (at !== null) {
      this.timer = this.clock.setTimeout(() => this.fire(at), Math.max(0, at - this.clock.now()));
    }
  }
  fire(armedFor) {
    this.timer = null;
    this.timerFor = null;
    const now = this.clock.now();
    const late = now - armedFor;
    if (late > this.stallMs) {
      this.core.stalled(late, now);
    }
    const id = this.linkId;
    if (this.retryAt !== null && now >= this.retryAt) {
      this.retryAt = null;
      this.attemptConnection();
      return;
    }
    if (this.openBy !== null && now >= this.openBy) {
      this.link?.abort();
      this.ended(id, transportEnd("timed_out", `no connection within ${this.connectTimeoutMs} ms`));
      return;
    }
    if (this.welcomeBy !== null && now >= this.welcomeBy) {
      this.link?.close();
      this.ended(id, transportEnd("timed_out", `no Welcome within ${this.handshakeTimeoutMs} ms`));
      return;
    }
    if (this.lingerBy !== null && now >= this.lingerBy) {
      this.link?.close();
      this.ended(id, { kind: "quit" });
      return;
    }
    if (this.link !== null && this.welcomedOnLink) {
      const end = this.core.onTimer(now);
      this.flush();
      this.deliver();
      if (end !== null) {
        this.link.abort();
        this.ended(id, end);
        return;
      }
    }
    this.arm();
  }
};
function checkName(value, what, min) {
  const bytes = new TextEncoder().encode(value).length;
  if (bytes < min || bytes > 64) {
    throw new RangeError(`a ${what} is ${min} to 64 bytes of UTF-8, not ${bytes}`);
  }
  if (/[\u0000-\u001f\u007f-\u009f]/.test(value)) {
    throw new RangeError(`a ${what} must not contain control characters`);
  }
  if (what === "room" && value.startsWith("auto-")) {
    throw new RangeError(`rooms named auto-... are the server's to give: ${JSON.stringify(value)}`);
  }
}

// src/websocket.ts
var OPEN = 1;
function webSocket(url, options = {}) {
  const Socket = options.WebSocket ?? globalThis.WebSocket;
  if (Socket === void 0) {
    throw new Error("this platform has no WebSocket: in Node, use nodeWebSocket from the node entry");
  }
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  return (events) => {
    let done = false;
    let opened = false;
    const finish = (end) => {
      if (!done) {
        done = true;
        events.end(end);
      }
    };
    let ws;
    try {
      ws = new Socket(url);
    } catch (error) {
      queueMicrotask(() => finish({ kind: "opening", detail: String(error) }));
      return { send() {
      }, finish() {
      }, close() {
      }, abort() {
      }, info: () => null };
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
    };
    return {
      send(body) {
        if (!done && ws.readyState === OPEN) {
          ws.send(body);
        }
      },
      finish() {
      },
      close() {
        done = true;
        ws.close(1e3);
      },
      abort() {
        done = true;
        ws.close(1e3);
      },
      info: () => null
    };
  };
}

// src/demo.ts
var InvalidDemoEvent = class extends Error {
  constructor(message) {
    super(`invalid demo event: ${message}`);
    this.name = "InvalidDemoEvent";
  }
};
var decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
var encoder = new TextEncoder();
function decodeDemoEvent(payload) {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  let at = 0;
  const need = (n, what) => {
    if (at + n > payload.length) {
      throw new InvalidDemoEvent(`${what} runs past the end`);
    }
  };
  const name = (what) => {
    need(2, what);
    const n = view.getUint16(at);
    at += 2;
    if (n > MAX_PLAYER_ID_BYTES) {
      throw new InvalidDemoEvent(`${what} is ${n} bytes, over ${MAX_PLAYER_ID_BYTES}`);
    }
    need(n, what);
    try {
      return decoder.decode(payload.subarray(at, at += n));
    } catch {
      throw new InvalidDemoEvent(`${what} is not valid UTF-8`);
    }
  };
  need(1, "tag");
  const tag = payload[at++];
  let event;
  switch (tag) {
    case 1: {
      const from = name("relay sender id");
      need(8, "relay input seq");
      const inputSeq = Number(view.getBigUint64(at));
      at += 8;
      return { tag: "relay", from, inputSeq, data: payload.slice(at) };
    }
    case 2:
      need(16, "state");
      event = {
        tag: "state",
        tick: view.getBigUint64(1),
        members: view.getUint32(9),
        inputs: view.getUint32(13)
      };
      at = 17;
      break;
    case 3: {
      need(1, "presence flag");
      const flag = payload[at++];
      if (flag !== 0 && flag !== 1) {
        throw new InvalidDemoEvent("presence flag is neither 0 nor 1");
      }
      event = { tag: "presence", joined: flag === 1, player: name("presence player id") };
      break;
    }
    default:
      throw new InvalidDemoEvent(`unknown tag ${tag}`);
  }
  if (at !== payload.length) {
    throw new InvalidDemoEvent("trailing bytes after the last field");
  }
  return event;
}
function encodeDemoEvent(event) {
  const bytes = [];
  const u16 = (v) => void bytes.push(v >>> 8 & 255, v & 255);
  const u32 = (v) => (u16(v >>> 16), u16(v & 65535));
  const u64 = (v) => (u32(Number(v >> 32n)), u32(Number(v & 0xffffffffn)));
  const text = (s) => {
    const raw = encoder.encode(s);
    u16(raw.length);
    bytes.push(...raw);
  };
  switch (event.tag) {
    case "relay":
      bytes.push(1);
      text(event.from);
      u64(BigInt(event.inputSeq));
      bytes.push(...event.data);
      break;
    case "state":
      bytes.push(2);
      u64(event.tick);
      u32(event.members);
      u32(event.inputs);
      break;
    case "presence":
      bytes.push(3, event.joined ? 1 : 0);
      text(event.player);
      break;
  }
  return Uint8Array.from(bytes);
}

// src/index.ts
var GameClient = class extends Client {
  constructor(options) {
    super("dial" in options ? options : { ...options, dial: webSocket(options.url, options.webSocket) });
  }
};
export {
  BYE_CODES,
  Backoff,
  Client,
  CodecError,
  Core,
  DEFAULT_MAX_FRAME_BYTES,
  FrameDecoder,
  GameClient,
  HEADER_LEN,
  INPUT_HEADROOM,
  InputError,
  InvalidDemoEvent,
  Kind,
  MAX_AUTH_TOKEN_BYTES,
  MAX_HELLO_BODY,
  MAX_INPUT_PAYLOAD,
  MAX_OPTIONS_BYTES,
  MAX_PLAYER_ID_BYTES,
  MAX_ROOM_BYTES,
  PROTOCOL_VERSION,
  RESUME_TOKEN_LEN,
  SessionLost,
  byeCodeNumber,
  checkOptions,
  closeReason,
  decide,
  decideLost,
  decodeClientMessage,
  decodeDemoEvent,
  decodeServerMessage,
  describeEnd,
  describeLost,
  encodeClientMessage,
  encodeDemoEvent,
  encodeServerMessage,
  frame,
  isNoToken,
  isResumable,
  maxInputPayload,
  transportEnd,
  transportOfErrno,
  webSocket
};
