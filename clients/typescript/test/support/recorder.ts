/**
 * Records what a client tells the game, with wall-clock times (the same clock in a child
 * process and in the test), and answers the questions the tests ask of it: which events came,
 * whose relays, how often the connection dropped and came back.
 */

import type { Client } from "../../src/client.js";
import { decodeDemoEvent } from "../../src/demo.js";
import { describeEnd, type End } from "../../src/end.js";

export type Entry =
  | { t: number; type: "session"; sessionId: string; room: string; localPort?: number }
  | { t: number; type: "resume"; sessionId: string; resent: number; downMs: number; localPort?: number }
  | { t: number; type: "event"; seq: number; from?: string; inputSeq?: number; tag?: string }
  | { t: number; type: "ack"; seq: number }
  | { t: number; type: "drop"; end: End; action: string; text: string }
  | { t: number; type: "reconnecting"; attempt: number; delayMs: number; end: End }
  | { t: number; type: "end"; lost: unknown; action: string; renewing: boolean; ackedInput: number }
  | { t: number; type: "closed"; ackedInput: number }
  | { t: number; type: "input"; seq: number }
  | { t: number; type: "note"; text: string };

export class Recorder {
  readonly entries: Entry[] = [];
  private readonly listeners: ((entry: Entry) => void)[] = [];

  /** Records everything `client` says from now on. */
  attach(client: Client): this {
    const port = (): { localPort?: number } => {
      const localPort = client.connection?.localPort;
      return localPort === undefined ? {} : { localPort };
    };
    client.on("session", ({ sessionId, room }) => this.add({ t: Date.now(), type: "session", sessionId: String(sessionId), room, ...port() }));
    client.on("resume", ({ sessionId, resent, downMs }) =>
      this.add({ t: Date.now(), type: "resume", sessionId: String(sessionId), resent, downMs: Math.round(downMs), ...port() }),
    );
    client.on("event", ({ seq, payload }) => {
      try {
        const demo = decodeDemoEvent(payload);
        this.add(
          demo.tag === "relay"
            ? { t: Date.now(), type: "event", seq, tag: "relay", from: demo.from, inputSeq: demo.inputSeq }
            : { t: Date.now(), type: "event", seq, tag: demo.tag },
        );
      } catch {
        this.add({ t: Date.now(), type: "event", seq });
      }
    });
    client.on("ack", ({ seq }) => this.add({ t: Date.now(), type: "ack", seq }));
    client.on("drop", ({ end, decision }) => this.add({ t: Date.now(), type: "drop", end, action: decision.action, text: describeEnd(end) }));
    client.on("reconnecting", ({ attempt, delayMs, end }) =>
      this.add({ t: Date.now(), type: "reconnecting", attempt, delayMs: Math.round(delayMs), end }),
    );
    client.on("end", ({ lost, decision, renewing, ackedInput }) =>
      this.add({ t: Date.now(), type: "end", lost, action: decision.action, renewing, ackedInput }),
    );
    client.on("closed", ({ ackedInput }) => this.add({ t: Date.now(), type: "closed", ackedInput }));
    return this;
  }

  add(entry: Entry): void {
    this.entries.push(entry);
    for (const listener of this.listeners) listener(entry);
  }

  onEntry(listener: (entry: Entry) => void): void {
    this.listeners.push(listener);
  }

  of<T extends Entry["type"]>(type: T): Extract<Entry, { type: T }>[] {
    return this.entries.filter((e): e is Extract<Entry, { type: T }> => e.type === type);
  }

  /** The sequence numbers of the events delivered, in the order delivered. */
  eventSeqs(): number[] {
    return this.of("event").map((e) => e.seq);
  }

  /** The input numbers of `from`'s inputs relayed to this client, in the order received. */
  relaysFrom(from: string): number[] {
    return this.of("event").flatMap((e) => (e.from === from && e.inputSeq !== undefined ? [e.inputSeq] : []));
  }

  /** Waits for an entry that matches (one already recorded counts). */
  wait<T extends Entry["type"]>(type: T, withinMs: number, matches: (e: Extract<Entry, { type: T }>) => boolean = () => true, after = 0): Promise<Extract<Entry, { type: T }>> {
    const find = (): Extract<Entry, { type: T }> | undefined => this.of(type).find((e) => e.t >= after && matches(e));
    const found = find();
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${type} within ${withinMs} ms; recorded: ${JSON.stringify(this.entries.filter((e) => e.type !== "event" && e.type !== "ack").slice(-20))}`)), withinMs);
      this.listeners.push(() => {
        const now = find();
        if (now !== undefined) {
          clearTimeout(timer);
          resolve(now);
        }
      });
    });
  }
}

/** The problems with a sequence that should be exactly 1..n once each, in order: `[]` if none. */
export function gapsAndRepeats(seqs: number[], n: number): string[] {
  const problems: string[] = [];
  const seen = new Map<number, number>();
  for (const seq of seqs) seen.set(seq, (seen.get(seq) ?? 0) + 1);
  const missing: number[] = [];
  const repeated: number[] = [];
  for (let seq = 1; seq <= n; seq++) {
    const count = seen.get(seq) ?? 0;
    if (count === 0) missing.push(seq);
    if (count > 1) repeated.push(seq);
  }
  const beyond = [...seen.keys()].filter((seq) => seq < 1 || seq > n);
  if (missing.length > 0) problems.push(`missing ${missing.length}: ${missing.slice(0, 10).join(", ")}`);
  if (repeated.length > 0) problems.push(`repeated ${repeated.length}: ${repeated.slice(0, 10).join(", ")}`);
  if (beyond.length > 0) problems.push(`beyond ${n}: ${beyond.slice(0, 10).join(", ")}`);
  if (problems.length === 0 && seqs.some((seq, i) => i > 0 && seq < seqs[i - 1]!)) problems.push("out of order");
  return problems;
}
