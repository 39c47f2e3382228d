/**
 * The protocol state of a client session, without sockets or clocks of its own (sans-IO): feed
 * it what the server sent and the time, take from it what to send, what to tell the game and
 * when to wake it next. A port of the Rust client's `game_client::Core` (docs/CLIENT.md, "The
 * state machine, for ports").
 *
 * A session outlives its connections. The core keeps what PROTOCOL.md ("Session resume") says a
 * client must keep: the latest resume token, the highest event received without a gap, and
 * every input the server has not acknowledged. When a connection breaks,
 * {@link Core.disconnected} says whether to come back with a resume or whether the session is
 * lost; after a resumed `Welcome` the core resends the inputs the server had not applied and
 * drops any event it already delivered, so the game sees every event once, in order, and every
 * input is applied once.
 *
 * Bytes in and out: {@link Core.receiveBody} and {@link Core.pollTransmitBody} take and give
 * message bodies (as a WebSocket message carries them; over TCP, behind a length prefix:
 * `FrameDecoder` and `frame`); {@link Core.receive} and {@link Core.pollTransmit} the decoded
 * messages. Times are milliseconds on any monotonic clock (`performance.now()`), chosen by the
 * driver.
 */

import {
  checkOptions,
  type ClientMessage,
  CodecError,
  decodeServerMessage,
  encodeClientMessage,
  isNoToken,
  MAX_INPUT_PAYLOAD,
  PROTOCOL_VERSION,
  type ServerMessage,
  type Welcome,
} from "./codec.js";
import { decide, type End, type Lost } from "./end.js";

/** Who the client is and where it plays. */
export interface SessionConfig {
  /** The player id (1 to 64 bytes of UTF-8, no control characters). */
  readonly playerId: string;
  /** The room to enter with `Hello`; empty lets the server choose. */
  readonly room?: string;
  /** An auth token, when the server requires one (`auth.mode = "hmac"`). */
  readonly authToken?: string | null;
  /** Join options sent with the `Hello` of every new session (a resume keeps the room as the
   * server holds it): opaque bytes the game reads, at most 1024. Default none. */
  readonly options?: Uint8Array;
  /** Most inputs kept unacknowledged (sent, or waiting for a connection); beyond, `input`
   * throws until the server acknowledges some. Default 1024. */
  readonly maxUnackedInputs?: number;
  /** Events received and not yet acknowledged after which an `Ack` goes out at once rather
   * than with the next heartbeat, so the server's replay buffer stays small. Default 128. */
  readonly ackEvery?: number;
}

/** What the core tells the game. */
export type Output =
  /** A connection was welcomed: a fresh session (`resumed` false: event numbers start again at
   * 1) or the same session taken back after a break (`resent` inputs went again). */
  | {
      readonly kind: "welcome";
      readonly sessionId: bigint;
      readonly room: string;
      readonly resumed: boolean;
      readonly resent: number;
    }
  /** The next event of the session: each sequence number once, in order, without gaps. */
  | { readonly kind: "event"; readonly seq: number; readonly payload: Uint8Array }
  /** The server applied every input up to this one. */
  | { readonly kind: "acked"; readonly seq: number }
  /** The player is now in this room. */
  | { readonly kind: "joined"; readonly room: string }
  /** The room refused the player, who stays where it was. */
  | { readonly kind: "joinRefused"; readonly room: string; readonly text: string }
  /** The session is over for good: inputs up to `ackedInput` were applied, later ones may not
   * have been. A new session starts only with {@link Core.restart}. */
  | { readonly kind: "lost"; readonly lost: Lost; readonly ackedInput: number };

/** What to do after a connection ended. */
export type Next =
  /** Connect again: the session may be resumed (or, before the first `Welcome`, started). */
  | "reconnect"
  /** The session is over (an output `lost` says why); connect again only for a new one. */
  | "lost"
  /** The client closed the session itself. */
  | "closed";

/** Why an input was not taken. */
export class InputError extends Error {
  constructor(
    readonly kind: "full" | "no_session" | "too_large",
    message: string,
  ) {
    super(message);
    this.name = "InputError";
  }
}

type Phase =
  /** Between connections. */
  | { readonly name: "disconnected" }
  /** `Hello` sent, no `Welcome` yet. */
  | { readonly name: "handshaking"; readonly resuming: boolean }
  /** Welcomed. */
  | { readonly name: "live" }
  /** The client's `Bye` is sent; waiting for the server's `Ack` and `Bye`. */
  | { readonly name: "quitting" }
  /** Closed by the client, or lost: nothing more until {@link Core.restart}. */
  | { readonly name: "over" };

/** What a session keeps across its connections. */
interface Kept {
  readonly sessionId: bigint;
  room: string;
  /** All zero when the server offers no resume. */
  readonly token: Uint8Array;
  readonly heartbeatMs: number;
  readonly idleMs: number;
}

/**
 * The room a `Hello` names: the room the session is in, so that a fresh session after a refused
 * resume comes back to the room the player moved to, except a room the server chose (`auto-N`):
 * those names are the server's to give, and a `Hello` naming one is a protocol error, resume or
 * not (PROTOCOL.md, "Rooms"). Then the room first asked for (empty: let the server choose); a
 * resumed session stays in its room whatever the `Hello` names.
 */
function helloRoom(kept: string | null, asked: string): string {
  return kept !== null && !kept.toLowerCase().startsWith("auto-") ? kept : asked;
}

/** Without a heartbeat from the server, the client pings this often within the idle timeout. */
const PINGS_PER_IDLE = 3;

/** A client session's protocol state. */
export class Core {
  private readonly config: Required<SessionConfig>;
  private phase: Phase = { name: "disconnected" };
  private kept: Kept | null = null;
  /** The highest event delivered to the game (without a gap). */
  private lastEventSeq = 0;
  /** The highest event acknowledged to the server. */
  private ackedEvents = 0;
  private nextInput = 1;
  /** Inputs not yet acknowledged by the server, in order. */
  private unacked: { seq: number; payload: Uint8Array }[] = [];
  private ackedInputSeq = 0;
  private transmit: ClientMessage[] = [];
  private output: Output[] = [];
  private lastHeard: number;
  private nextPing: number | null = null;
  private pingOut: { nonce: bigint; at: number } | null = null;
  private nonce = 0n;
  private rttMs: number | null = null;

  constructor(config: SessionConfig, now: number) {
    this.config = {
      playerId: config.playerId,
      room: config.room ?? "",
      authToken: config.authToken ?? null,
      options: checkOptions(config.options ?? new Uint8Array(0)),
      maxUnackedInputs: config.maxUnackedInputs ?? 1024,
      ackEvery: config.ackEvery ?? 128,
    };
    this.lastHeard = now;
  }

  /** A connection is up: sends `Hello`, with a resume when there is a session to take back. */
  connected(now: number): void {
    this.transmit = [];
    this.lastHeard = now;
    this.nextPing = null;
    this.pingOut = null;
    const kept = this.kept;
    const resume =
      kept !== null && !isNoToken(kept.token) ? { token: kept.token, lastEventSeq: this.lastEventSeq } : null;
    this.phase = { name: "handshaking", resuming: resume !== null };
    this.transmit.push({
      kind: "hello",
      version: PROTOCOL_VERSION,
      playerId: this.config.playerId,
      room: helloRoom(kept?.room ?? null, this.config.room),
      authToken: this.config.authToken,
      resume,
      options: resume === null ? this.config.options : new Uint8Array(0),
    });
  }

  /** Handles one message from the server. A returned `End` ends the connection: the driver
   * closes it and calls {@link Core.disconnected} with it. */
  receive(message: ServerMessage, now: number): End | null {
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
          // Already delivered (a replay overlapping what arrived before the break).
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
  receiveBody(body: Uint8Array, now: number): End | null {
    let message: ServerMessage;
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

  private welcome(welcome: Welcome, now: number): End | null {
    if (this.phase.name !== "handshaking") {
      return { kind: "protocol", detail: "a second Welcome" };
    }
    const resuming = this.phase.resuming;
    const continued = resuming && welcome.resumed;
    if (resuming && !welcome.resumed) {
      // The server started a new session instead (resume is off there): the old one, its
      // events and its unacknowledged inputs are gone.
      this.output.push({
        kind: "lost",
        lost: { kind: "resume_refused", text: "the server started a new session instead of resuming" },
        ackedInput: this.ackedInputSeq,
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
      idleMs: welcome.idleTimeoutMs,
    };
    this.phase = { name: "live" };
    if (continued) {
      this.inputsApplied(welcome.lastInputSeq);
    }
    // A resumed session: the server applied everything up to last_input_seq, and the rest goes
    // again, in order, with the same numbers. A new one: what the game typed before the Welcome
    // goes now.
    for (const { seq, payload } of this.unacked) {
      this.transmit.push({ kind: "input", seq, payload });
    }
    this.output.push({
      kind: "welcome",
      sessionId: welcome.sessionId,
      room: welcome.room,
      resumed: continued,
      resent: continued ? this.unacked.length : 0,
    });
    this.schedulePing(now);
    return null;
  }

  private inputsApplied(seq: number): void {
    if (seq <= this.ackedInputSeq) {
      return;
    }
    this.ackedInputSeq = seq;
    while (this.unacked.length > 0 && this.unacked[0]!.seq <= seq) {
      this.unacked.shift();
    }
    this.output.push({ kind: "acked", seq });
  }

  /** The connection ended with `end`. Says what to do next; a lost session is also reported as
   * an output `lost`. */
  disconnected(end: End): Next {
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
            // The old connection is still handing the session over: resume again.
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
      // Nothing listens (yet, or again), or the server turned the connection away before any
      // session was touched (full, over its budget, no Hello in time): keep trying; the driver
      // bounds the attempts.
      return "reconnect";
    }
    if (this.kept === null) {
      // No session yet: a failed first handshake. Only a break is worth another try.
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
  giveUp(last: End): void {
    this.phase = { name: "disconnected" };
    this.lose({ kind: "gave_up", end: last });
  }

  private lose(lost: Lost): Next {
    this.phase = { name: "over" };
    this.kept = null;
    this.unacked = [];
    this.output.push({ kind: "lost", lost, ackedInput: this.ackedInputSeq });
    return "lost";
  }

  /** After a loss (or a quit), forgets the old session: the next connection starts a new one. */
  restart(): void {
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
  input(payload: Uint8Array): number {
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
    // A copy: the game may reuse its buffer, and a resend must carry the same bytes.
    const kept = payload.slice();
    this.unacked.push({ seq, payload: kept });
    if (this.phase.name === "live") {
      this.transmit.push({ kind: "input", seq, payload: kept });
    }
    return seq;
  }

  /** Asks to move to `room` with join `options` (at most 1024 bytes; a `RangeError` beyond);
   * answered with `joined` or `joinRefused`. Only while welcomed. */
  join(room: string, options: Uint8Array = new Uint8Array(0)): boolean {
    checkOptions(options);
    if (this.phase.name !== "live") {
      return false;
    }
    this.transmit.push({ kind: "join", room, options });
    return true;
  }

  /** Starts the lingering close: acknowledges the events received, says `Bye`, then waits for
   * the server's `Ack` and `Bye` (the driver reads until the end of the stream). */
  quit(): void {
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
        // Nothing to say goodbye on: the session ends here.
        this.phase = { name: "quitting" };
        break;
    }
  }

  /** True once {@link Core.quit} was called. */
  get quitting(): boolean {
    return this.phase.name === "quitting" || this.phase.name === "over";
  }

  /** When {@link Core.onTimer} must run next: the next heartbeat, or the moment the server has
   * been silent for its idle timeout. */
  nextDeadline(): number | null {
    const kept = this.kept;
    if (kept === null || (this.phase.name !== "live" && this.phase.name !== "quitting")) {
      return null;
    }
    const deadlines = [kept.idleMs > 0 ? this.lastHeard + kept.idleMs : null, this.nextPing].filter(
      (at): at is number => at !== null,
    );
    return deadlines.length === 0 ? null : Math.min(...deadlines);
  }

  /** The timer fired: the server is declared silent, or the heartbeat goes out (a `Ping`, with
   * the `Ack` of the events received). */
  onTimer(now: number): End | null {
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
  stalled(ms: number, now: number): void {
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
  private schedulePing(now: number): void {
    const kept = this.kept;
    if (kept === null) {
      return;
    }
    const period = kept.heartbeatMs === 0 ? kept.idleMs / PINGS_PER_IDLE : (kept.heartbeatMs * 9) / 10;
    this.nextPing = period > 0 ? now + period : null;
  }

  /** Acknowledges every event delivered so far now, rather than with the next heartbeat. Only
   * while welcomed. */
  acknowledge(): void {
    if (this.phase.name === "live") {
      this.sendAck();
    }
  }

  private sendAck(): void {
    if (this.lastEventSeq > this.ackedEvents) {
      this.ackedEvents = this.lastEventSeq;
      this.transmit.push({ kind: "ack", seq: this.lastEventSeq });
    }
  }

  /** The next message to send. */
  pollTransmit(): ClientMessage | undefined {
    return this.transmit.shift();
  }

  /** The next message to send, encoded as a body (a WebSocket message; behind a length prefix
   * over TCP and TLS). */
  pollTransmitBody(): Uint8Array | undefined {
    const message = this.transmit.shift();
    return message === undefined ? undefined : encodeClientMessage(message);
  }

  /** The next thing to tell the game. */
  pollOutput(): Output | undefined {
    return this.output.shift();
  }

  /** The player id. */
  get playerId(): string {
    return this.config.playerId;
  }

  /** The last round trip measured by the client's own ping, in milliseconds. */
  get rtt(): number | null {
    return this.rttMs;
  }

  /** The session's id, while there is a session. */
  get sessionId(): bigint | null {
    return this.kept?.sessionId ?? null;
  }

  /** The room the player is in, while there is a session. */
  get room(): string | null {
    return this.kept?.room ?? null;
  }

  /** The highest event delivered, without a gap. */
  get lastEvent(): number {
    return this.lastEventSeq;
  }

  /** The highest input the server acknowledged. */
  get ackedInput(): number {
    return this.ackedInputSeq;
  }

  /** Inputs sent (or waiting to be) and not acknowledged yet. */
  get unackedInputs(): number {
    return this.unacked.length;
  }

  /** True while welcomed on a connection. */
  get isLive(): boolean {
    return this.phase.name === "live";
  }
}
