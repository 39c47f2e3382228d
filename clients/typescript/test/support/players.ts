/**
 * Players for the integration tests: in this process, or in a child process of their own (a
 * {@link Recorder}'s entries come back as JSON lines), sending inputs at a steady rate; and the
 * check that every event and every input went through exactly once.
 */

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { GameClient } from "../../src/node.js";
import type { ServerProcess } from "./server.js";
import { packageRoot } from "./paths.js";
import { gapsAndRepeats, Recorder, type Entry } from "./recorder.js";
import { until } from "./server.js";

export interface Player {
  readonly id: string;
  readonly rec: Recorder;
  /** Starts sending an input every `inputEveryMs` (once welcomed). */
  start(): void;
  /** Inputs sent so far. */
  sent(): number;
  /** Stops sending inputs; resolves once no more will go. */
  stop(): Promise<void>;
  /** Leaves; the highest input the server acknowledged. */
  leave(): Promise<number>;
  /** Ends the player at once, whatever state it is in (cleanup). */
  kill(): void;
}

export interface PlayerSpec {
  readonly url: string;
  readonly id: string;
  readonly room: string;
  readonly inputEveryMs: number;
  readonly ca?: string;
}

/** A player in this process. */
export function inProcess(spec: PlayerSpec): Player & { client: GameClient } {
  const client = new GameClient({
    url: spec.url,
    playerId: spec.id,
    room: spec.room,
    maxAttempts: null,
    reconnect: { minMs: 50, maxMs: 1000 },
    ...(spec.ca !== undefined ? { tls: { ca: readFileSync(spec.ca) } } : {}),
  });
  const rec = new Recorder().attach(client);
  let sent = 0;
  let ticker: ReturnType<typeof setInterval> | null = null;
  void client.connect().catch(() => undefined);
  const stop = (): Promise<void> => {
    if (ticker !== null) clearInterval(ticker);
    ticker = null;
    return Promise.resolve();
  };
  return {
    id: spec.id,
    rec,
    client,
    start: () => {
      ticker ??= setInterval(() => {
        sent = client.input(new TextEncoder().encode(`${spec.id} ${sent + 1}`));
        rec.add({ t: Date.now(), type: "input", seq: sent });
      }, spec.inputEveryMs);
    },
    sent: () => sent,
    stop,
    leave: async () => {
      await stop();
      return (await client.leave()).ackedInput;
    },
    kill: () => {
      void stop();
      client.abort();
    },
  };
}

/** A player in a child Node process (`bot.js`), optionally inside a network namespace. */
export function childProcess(spec: PlayerSpec & { netns?: string }): Player & { child: ChildProcess } {
  const bot = join(packageRoot, "build", "test", "support", "bot.js");
  const args = [bot, JSON.stringify({ url: spec.url, playerId: spec.id, room: spec.room, inputEveryMs: spec.inputEveryMs, ...(spec.ca !== undefined ? { ca: spec.ca } : {}) })];
  const child =
    spec.netns === undefined
      ? spawn(process.execPath, args, { stdio: ["pipe", "pipe", "inherit"] })
      : spawn("ip", ["netns", "exec", spec.netns, process.execPath, ...args], { stdio: ["pipe", "pipe", "inherit"] });
  const rec = new Recorder();
  let pending = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    pending += chunk;
    let at: number;
    while ((at = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, at);
      pending = pending.slice(at + 1);
      rec.add(JSON.parse(line) as Entry);
    }
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    id: spec.id,
    rec,
    child,
    start: () => child.stdin!.write("start\n"),
    sent: () => rec.of("input").at(-1)?.seq ?? 0,
    stop: async () => {
      const asked = Date.now();
      child.stdin!.write("stop\n");
      await rec.wait("note", 10_000, (e) => e.text.startsWith("stopped after"), asked);
    },
    leave: async () => {
      child.stdin!.write("leave\n");
      const closed = await rec.wait("closed", 15_000);
      await exited;
      return closed.ackedInput;
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}

/**
 * Stops both players' inputs, waits until every input has come back as a relay to both, has
 * both leave, and checks that nothing was lost or repeated: the faulted player's events are
 * 1..n once each, each player's inputs were relayed once each to both (the room applied each
 * once), each player's leave acknowledged all its inputs, and the server recorded one
 * `client_quit` for the faulted player and no close outside `allowed`. Returns the server's
 * closes for the faulted player.
 */
export async function checkExactlyOnce(
  server: ServerProcess,
  faulted: Player,
  other: Player,
  allowed: readonly string[],
): Promise<Record<string, number>> {
  await faulted.stop();
  await other.stop();
  const a = faulted.sent();
  const b = other.sent();
  assert.ok(a > 0 && b > 0, `both players sent inputs (${a}, ${b})`);
  await until(
    () =>
      Math.max(0, ...faulted.rec.relaysFrom(faulted.id)) >= a &&
      Math.max(0, ...faulted.rec.relaysFrom(other.id)) >= b &&
      Math.max(0, ...other.rec.relaysFrom(faulted.id)) >= a,
    20_000,
    `every relay back (${faulted.id} sent ${a}, ${other.id} sent ${b})`,
  );
  const ackedA = await faulted.leave();
  const ackedB = await other.leave();
  const seqs = faulted.rec.eventSeqs();
  assert.deepEqual(gapsAndRepeats(seqs, Math.max(0, ...seqs)), [], `${faulted.id}'s events`);
  assert.deepEqual(gapsAndRepeats(faulted.rec.relaysFrom(other.id), b), [], `${other.id}'s inputs seen by ${faulted.id}`);
  assert.deepEqual(gapsAndRepeats(faulted.rec.relaysFrom(faulted.id), a), [], `${faulted.id}'s inputs seen by itself`);
  assert.deepEqual(gapsAndRepeats(other.rec.relaysFrom(faulted.id), a), [], `${faulted.id}'s inputs seen by ${other.id}`);
  assert.equal(ackedA, a, `${faulted.id}'s leave acknowledged every input`);
  assert.equal(ackedB, b, `${other.id}'s leave acknowledged every input`);
  const closes = await server.waitCloses(faulted.id, "client_quit", 1);
  assert.equal(closes["client_quit"], 1, `one client_quit for ${faulted.id}: ${JSON.stringify(closes)}`);
  for (const reason of Object.keys(closes)) {
    assert.ok(reason === "client_quit" || allowed.includes(reason), `${faulted.id} closed as ${reason}: ${JSON.stringify(closes)}`);
  }
  return closes;
}
