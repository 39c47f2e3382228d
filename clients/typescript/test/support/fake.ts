/** A fake clock and a fake transport for the driver's unit tests: time moves only when a test
 * says so, and the test plays the server. */

import { type ClientMessage, decodeClientMessage, encodeServerMessage, type ServerMessage } from "../../src/codec.js";
import type { Clock } from "../../src/client.js";
import type { End } from "../../src/end.js";
import type { Dial, Link, LinkEvents } from "../../src/link.js";

export class FakeClock implements Clock {
  private time = 0;
  private timers: { at: number; run: () => void; id: number }[] = [];
  private ids = 0;

  now(): number {
    return this.time;
  }

  setTimeout(run: () => void, ms: number): unknown {
    const id = ++this.ids;
    this.timers.push({ at: this.time + ms, run, id });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }

  /** Moves time forward by `ms`, running each timer at its time, in order. */
  advance(ms: number): void {
    const until = this.time + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this.timers[0];
      if (next === undefined || next.at > until) break;
      this.timers.shift();
      this.time = Math.max(this.time, next.at);
      next.run();
    }
    this.time = until;
  }

  /** The process could not run for `ms`: time jumps, and overdue timers fire late, in order. */
  freeze(ms: number): void {
    this.time += ms;
    this.advance(0);
  }

  get pending(): number {
    return this.timers.length;
  }
}

/** One connection, as the test (the server) sees it. */
export class FakeLink implements Link {
  readonly sent: ClientMessage[] = [];
  finished = false;
  closed = false;
  aborted = false;

  constructor(readonly events: LinkEvents) {}

  send(body: Uint8Array): void {
    this.sent.push(decodeClientMessage(body));
  }
  finish(): void {
    this.finished = true;
  }
  close(): void {
    this.closed = true;
  }
  abort(): void {
    this.aborted = true;
  }
  info(): null {
    return null;
  }

  open(): void {
    this.events.open();
  }
  serve(message: ServerMessage): void {
    this.events.body(encodeServerMessage(message));
  }
  end(end: End): void {
    this.events.end(end);
  }
  /** What was sent since the last look. */
  take(): ClientMessage[] {
    return this.sent.splice(0);
  }
}

/** A dial that hands each new link to the test. */
export function fakeDial(): { dial: Dial; links: FakeLink[]; last(): FakeLink } {
  const links: FakeLink[] = [];
  return {
    links,
    dial: (events) => {
      const link = new FakeLink(events);
      links.push(link);
      return link;
    },
    last: () => {
      const link = links[links.length - 1];
      if (link === undefined) throw new Error("nothing was dialled");
      return link;
    },
  };
}

export function welcome(sessionId: number, token: number, resumed: boolean, lastInputSeq = 0, heartbeatIntervalMs = 5000, idleTimeoutMs = 15000): ServerMessage {
  return {
    kind: "welcome",
    sessionId: BigInt(sessionId),
    heartbeatIntervalMs,
    idleTimeoutMs,
    resumeToken: new Uint8Array(16).fill(token),
    resumed,
    lastInputSeq,
    room: "lobby",
  };
}
