/**
 * The driver: runs a {@link Core} over links that a {@link Dial} opens, with the platform's
 * timers, reconnects with backoff, and tells the game each step as an event. The same code runs
 * in browsers and Node; only the dial differs.
 */

import { Backoff, type BackoffConfig } from "./backoff.js";
import { Core, type Output, type SessionConfig } from "./core.js";
import { Emitter } from "./emitter.js";
import { decide, decideLost, type Decision, type End, type Lost, SessionLost, transportEnd } from "./end.js";
import type { Dial, Link, LinkInfo } from "./link.js";

/** The clock and timers the driver runs on: the platform's, or a test's. */
export interface Clock {
  now(): number;
  setTimeout(run: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const platformClock: Clock = {
  now: () => performance.now(),
  setTimeout: (run, ms) => setTimeout(run, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** How to reach the server and how to behave when connections fail. */
export interface ClientOptions extends SessionConfig {
  /** Opens one connection (see the transport modules: `webSocket`, and in Node `tcp`, `tls`,
   * `nodeWebSocket`). */
  readonly dial: Dial;
  /** Longest wait for a connection to open (TCP connect, TLS handshake, WebSocket upgrade).
   * Default 5000 ms. */
  readonly connectTimeoutMs?: number;
  /** Longest wait for `Welcome` after `Hello`. Default 5000 ms. */
  readonly handshakeTimeoutMs?: number;
  /** Reconnect delays: from 100 ms doubling to 5 s, each plus up to as much again at random. */
  readonly reconnect?: BackoffConfig;
  /** Connection attempts in a row before the session is given up; `null` keeps trying (a
   * server that forgot the session still ends it, by refusing the resume). Default 30. */
  readonly maxAttempts?: number | null;
  /** After a loss whose decision is `new_session` (a refused resume, a drained server, no
   * resume offered), start a fresh session by itself. Default true. A loss whose decision is
   * `give_up` (kicked, replaced, auth failed, ...) never renews by itself: call `newSession`. */
  readonly renew?: boolean;
  /** How long `leave` waits for the server's `Ack` and `Bye`. Default 5000 ms. */
  readonly lingerMs?: number;
  /** A timer that fires this much later than it was set for means the client could not run
   * (a stopped process, a sleeping laptop, a throttled tab): that time is not held against the
   * server. Default 250 ms. */
  readonly stallMs?: number;
  /** For tests: the clock, timers and randomness to run on. */
  readonly clock?: Clock;
  readonly random?: () => number;
}

/** A session that was welcomed. */
export interface SessionInfo {
  readonly sessionId: bigint;
  readonly room: string;
  /** True when the session continued across a broken connection. */
  readonly resumed: boolean;
}

/** What the client tells the game, by event name. */
export interface ClientEvents {
  /** A new session began (the first, or a fresh one after a loss): (re)build the game state;
   * event numbers start at 1. */
  session: { readonly sessionId: bigint; readonly room: string };
  /** The same session came back after a broken connection: nothing was lost. `resent` inputs
   * went again; `downMs` since the connection dropped. */
  resume: { readonly sessionId: bigint; readonly room: string; readonly resent: number; readonly downMs: number };
  /** The next event of the session: each `seq` once, in order. */
  event: { readonly seq: number; readonly payload: Uint8Array };
  /** The server applied every input up to `seq`. */
  ack: { readonly seq: number };
  /** The player is now in this room. */
  joined: { readonly room: string };
  /** The room refused the player, who stays where it was. */
  joinRefused: { readonly room: string; readonly text: string };
  /** The connection the session ran on ended; the decision says what comes next (a `resume`
   * usually: show "reconnecting"). */
  drop: { readonly end: End; readonly decision: Decision };
  /** Waiting before the next connection attempt. */
  reconnecting: { readonly attempt: number; readonly delayMs: number; readonly end: End };
  /** The session is over for good. Inputs up to `ackedInput` were applied, later ones may not
   * have been. `renewing`: a fresh session is on its way (a `session` event follows);
   * otherwise the game decides (`newSession`). */
  end: { readonly lost: Lost; readonly decision: Decision; readonly renewing: boolean; readonly ackedInput: number };
  /** The client stopped (after `leave` or `abort`); nothing follows. `end`: how its last
   * connection ended: the server's `Bye{client_quit}` when it answered a `leave`, `quit` when
   * there was no answer (no connection, or none within `lingerMs`). */
  closed: { readonly ackedInput: number; readonly end: End };
}

/** Where the client is. */
export type ClientState =
  | "idle"
  | "connecting"
  | "live"
  | "reconnecting"
  | "leaving"
  /** The session was lost and no new one starts by itself: call `newSession`. */
  | "lost"
  | "closed";

/** A game's connection to the server: it reconnects and resumes by itself, and reports every
 * step as an event. */
export class Client extends Emitter<ClientEvents> {
  private readonly core: Core;
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private readonly random: () => number;
  private readonly dial: Dial;
  private readonly connectTimeoutMs: number;
  private readonly handshakeTimeoutMs: number;
  private readonly maxAttempts: number | null;
  private readonly renew: boolean;
  private readonly lingerMs: number;
  private readonly stallMs: number;

  private stateNow: ClientState = "idle";
  private link: Link | null = null;
  /** Counts links, so that a late word from an old one is ignored. */
  private linkId = 0;
  private opened = false;
  private welcomedOnLink = false;
  private attempt = 0;
  private droppedAt: number | null = null;

  private openBy: number | null = null;
  private welcomeBy: number | null = null;
  private lingerBy: number | null = null;
  private retryAt: number | null = null;
  private timer: unknown = null;
  private timerFor: number | null = null;

  private waitingConnect: { resolve: (info: SessionInfo) => void; reject: (error: Error) => void }[] = [];
  private waitingLeave: ((result: { ackedInput: number }) => void)[] = [];

  constructor(options: ClientOptions) {
    super();
    checkName(options.playerId, "player id", 1);
    checkName(options.room ?? "", "room", 0);
    this.clock = options.clock ?? platformClock;
    this.random = options.random ?? Math.random;
    this.core = new Core(options, this.clock.now());
    this.backoff = new Backoff(options.reconnect, this.random);
    this.dial = options.dial;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 5000;
    this.maxAttempts = options.maxAttempts === undefined ? 30 : options.maxAttempts;
    this.renew = options.renew ?? true;
    this.lingerMs = options.lingerMs ?? 5000;
    this.stallMs = options.stallMs ?? 250;
  }

  /** Starts connecting (once); resolves at the next `Welcome`, or at once while welcomed.
   * Rejects with {@link SessionLost} if the session is lost before, or an `Error` if the client
   * closes. */
  connect(): Promise<SessionInfo> {
    if (this.stateNow === "live" && this.core.sessionId !== null) {
      return Promise.resolve({ sessionId: this.core.sessionId, room: this.core.room ?? "", resumed: false });
    }
    if (this.stateNow === "closed") {
      return Promise.reject(new Error("the client is closed"));
    }
    const welcomed = new Promise<SessionInfo>((resolve, reject) => this.waitingConnect.push({ resolve, reject }));
    if (this.stateNow === "idle") {
      this.attemptConnection();
    } else if (this.stateNow === "lost") {
      this.newSession();
    }
    return welcomed;
  }

  /** Sends an input (now, or after the resume while the connection is down); returns its
   * sequence number. Throws an `InputError` when it cannot be kept. */
  input(payload: Uint8Array): number {
    const seq = this.core.input(payload);
    this.flush();
    return seq;
  }

  /** Asks to move to `room` with join `options` (answered by a `joined` or `joinRefused`
   * event); false while not welcomed. */
  join(room: string, options?: Uint8Array): boolean {
    checkName(room, "room", 1);
    const asked = this.core.join(room, options);
    this.flush();
    return asked;
  }

  /** Acknowledges the events delivered so far now, rather than with the next heartbeat. */
  acknowledge(): void {
    this.core.acknowledge();
    this.flush();
  }

  /** After an `end` that did not renew: starts a new session (a `session` event follows). */
  newSession(): void {
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
  leave(): Promise<{ ackedInput: number }> {
    if (this.stateNow === "closed") {
      return Promise.resolve({ ackedInput: this.core.ackedInput });
    }
    const left = new Promise<{ ackedInput: number }>((resolve) => this.waitingLeave.push(resolve));
    if (this.stateNow !== "leaving") {
      this.core.quit();
      if (this.link !== null && this.welcomedOnLink) {
        // Welcomed on this connection: the core queued the Ack and the Bye.
        this.stateNow = "leaving";
        this.flush();
        this.link.finish();
        this.lingerBy = this.clock.now() + this.lingerMs;
        this.arm();
      } else {
        // Not welcomed on a connection: nobody to say goodbye to.
        this.link?.close();
        this.ended(this.linkId, { kind: "quit" });
      }
    }
    return left;
  }

  /** Drops the connection at once with a reset, as a crashing game would (for tests); the
   * server parks the session. */
  abort(): void {
    if (this.stateNow === "closed") {
      return;
    }
    this.core.quit();
    this.link?.abort();
    this.ended(this.linkId, { kind: "quit" });
  }

  /** Where the client is. */
  get state(): ClientState {
    return this.stateNow;
  }
  /** The session's id, while there is one. */
  get sessionId(): bigint | null {
    return this.core.sessionId;
  }
  /** The room the player is in, while there is a session. */
  get room(): string | null {
    return this.core.room;
  }
  /** The highest event delivered. */
  get lastEvent(): number {
    return this.core.lastEvent;
  }
  /** The highest input the server acknowledged. */
  get ackedInput(): number {
    return this.core.ackedInput;
  }
  /** Inputs not acknowledged yet (sent, or waiting for the connection). */
  get unackedInputs(): number {
    return this.core.unackedInputs;
  }
  /** The last round trip the client measured, in ms. */
  get rtt(): number | null {
    return this.core.rtt;
  }
  /** Where the current connection runs, once known. */
  get connection(): LinkInfo | null {
    return this.link?.info() ?? null;
  }

  private attemptConnection(): void {
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
      end: (end) => this.ended(id, end),
    });
    this.arm();
  }

  private opening(id: number): void {
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

  private received(id: number, body: Uint8Array): void {
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
  private ended(id: number, end: End): void {
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
      // Before the core's own word on it (a loss), so the game reads them in order.
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

  private close(end: End): void {
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
  private flush(): void {
    for (let body = this.core.pollTransmitBody(); body !== undefined; body = this.core.pollTransmitBody()) {
      if (this.link !== null && this.opened) {
        this.link.send(body);
      }
    }
  }

  /** Tells the game what the core has to say. Returns, when the session was lost and a new
   * one is to start by itself, the least wait its decision asks for (a backoff delay comes on
   * top); `null` otherwise. */
  private deliver(): number | null {
    let renewAfter: number | null = null;
    for (let output = this.core.pollOutput(); output !== undefined; output = this.core.pollOutput()) {
      const after = this.tell(output);
      if (after !== null) {
        renewAfter = after;
      }
    }
    return renewAfter;
  }

  private tell(output: Output): number | null {
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
        // A resume answered by a fresh session: the new one is already running.
        const alreadyRenewed = this.core.isLive;
        const renewing = alreadyRenewed || (this.renew && decision.action === "new_session");
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

  private clearDeadlines(): void {
    this.openBy = null;
    this.welcomeBy = null;
    this.lingerBy = null;
    this.retryAt = null;
  }

  /** Arms the one timer for the earliest deadline. */
  private arm(): void {
    const deadlines = [this.openBy, this.welcomeBy, this.lingerBy, this.retryAt];
    if (this.link !== null && this.welcomedOnLink) {
      deadlines.push(this.core.nextDeadline());
    }
    const due = deadlines.filter((at): at is number => at !== null);
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

  private fire(armedFor: number): void {
    this.timer = null;
    this.timerFor = null;
    const now = this.clock.now();
    const late = now - armedFor;
    if (late > this.stallMs) {
      // This process could not run: what the server sent meanwhile is still unread.
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
        // The server or the path is gone: there is nobody to say goodbye to.
        this.link.abort();
        this.ended(id, end);
        return;
      }
    }
    this.arm();
  }
}

/** Refuses names the server would refuse as protocol errors (PROTOCOL.md, "Hello"), before any
 * connection: too long, control characters, the automatic rooms' prefix. */
function checkName(value: string, what: string, min: number): void {
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
