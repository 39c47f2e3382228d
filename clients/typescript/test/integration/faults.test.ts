/**
 * Faults under a player, with the server's defaults and with a 1 s heartbeat and 3 s idle
 * timeout: a reset 3 s and 6 s after joining (the server's socket killed with `ss -K`, so the
 * client receives the RST), a 4 s freeze of the client's process (SIGSTOP, SIGCONT), and a 4 s
 * pulled cable (two network namespaces, `ip link set down`). The faulted player runs in a
 * process of its own over WebSocket, as a browser game would, sending an input every 100 ms;
 * another player in its room sends one every 250 ms. In every case nothing is lost or repeated,
 * and wherever the connection ended the session resumes. Detection and resume times are
 * printed, and written to build/fault-figures.json.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";

import { NetnsPair } from "../support/netns.js";
import { packageRoot } from "../support/paths.js";
import { checkExactlyOnce, childProcess, inProcess, type Player } from "../support/players.js";
import { assertRunnable, cannotRun, ServerProcess, sleep } from "../support/server.js";

const SETTINGS = {
  defaults: {},
  "1s/3s": { GAMESERVER__SESSION__HEARTBEAT_INTERVAL: "1s", GAMESERVER__SESSION__IDLE_TIMEOUT: "3s" },
} as const;
type Settings = keyof typeof SETTINGS;

const FAULTS = ["rst-3s", "rst-6s", "freeze-4s", "cable-4s"] as const;
type Fault = (typeof FAULTS)[number];

const NEEDS: Record<Fault, { tools: string[]; root: boolean }> = {
  "rst-3s": { tools: ["ss"], root: true },
  "rst-6s": { tools: ["ss"], root: true },
  "freeze-4s": { tools: [], root: false },
  "cable-4s": { tools: ["ip"], root: true },
};

/** How a session ends on the server when its connection breaks (and was resumed). */
const BREAKS = ["peer_reset", "peer_eof", "broken_pipe", "io_error", "idle_timeout", "tcp_timeout", "truncated_frame", "replaced"];

interface Figure {
  fault: Fault;
  settings: Settings;
  /** ms from the fault's start to the client's drop; null: the connection survived. */
  detectedMs: number | null;
  /** ms from the fault's end to the drop (the freeze: the client could not run before). */
  detectedAfterFaultEndMs: number | null;
  resumedMs: number | null;
  drops: string[];
  events: number;
  /** The other player's inputs sent between the fault's start and the resume (or the fault's
   * end), each relayed to the faulted player exactly once. */
  broadcastsInGap: number;
  inputs: number;
  lost: 0;
  duplicated: 0;
  serverCloses: Record<string, number>;
}

const figures: Figure[] = [];

after(() => {
  if (figures.length === 0) return;
  const lines = figures.map(
    (f) =>
      `${f.fault.padEnd(10)} ${f.settings.padEnd(9)} detected ${String(f.detectedMs ?? "-").padStart(5)} ms` +
      ` (after the fault's end ${String(f.detectedAfterFaultEndMs ?? "-").padStart(5)})` +
      ` resumed ${String(f.resumedMs ?? "-").padStart(5)} ms  events ${f.events}, broadcasts in the gap ${f.broadcastsInGap}` +
      ` all once, inputs ${f.inputs} all applied once; ${f.drops.join("; ") || "no drop"}; server: ${JSON.stringify(f.serverCloses)}`,
  );
  console.log(`fault figures (WebSocket, Node client):\n${lines.join("\n")}`);
  writeFileSync(join(packageRoot, "build", "fault-figures.json"), JSON.stringify(figures, null, 2));
});

async function runFault(fault: Fault, settings: Settings): Promise<void> {
  assertRunnable(NEEDS[fault]);
  const tag = `${fault}-${settings === "defaults" ? "def" : "quick"}`;
  const pair = fault === "cable-4s" ? new NetnsPair() : null;
  let server: ServerProcess | null = null;
  const players: Player[] = [];
  try {
    const host = pair === null ? "127.0.0.1" : NetnsPair.SERVER_ADDR;
    server = await ServerProcess.start({
      env: SETTINGS[settings],
      listen: `${host}:0`,
      websocket: `${host}:0`,
      ...(pair !== null ? { netns: pair.server } : {}),
    });
    const url = `ws://${server.websocket}/`;
    const room = `room-${tag}`;
    const a = childProcess({ url, id: `f-${tag}-a`, room, inputEveryMs: 100, ...(pair !== null ? { netns: pair.client } : {}) });
    players.push(a);
    const joined = await a.rec.wait("session", 15_000);
    const b =
      pair === null
        ? inProcess({ url, id: `f-${tag}-b`, room, inputEveryMs: 250 })
        : childProcess({ url, id: `f-${tag}-b`, room, inputEveryMs: 250, netns: pair.server });
    players.push(b);
    await b.rec.wait("session", 15_000);
    a.start();
    b.start();

    await sleep(joined.t + (fault === "rst-6s" ? 6000 : 3000) - Date.now());
    const faultAt = Date.now();
    switch (fault) {
      case "rst-3s":
      case "rst-6s": {
        const local = [...a.rec.of("session"), ...a.rec.of("resume")].at(-1)?.localPort;
        assert.ok(local !== undefined, "the client's port is known");
        const port = server.websocket.split(":").pop()!;
        // The server's side of the connection: the client receives the RST.
        execFileSync("ss", ["-K", "-t", "sport", "=", `:${port}`, "dport", "=", `:${local}`], { stdio: "ignore" });
        break;
      }
      case "freeze-4s": {
        const child = (a as Player & { child: { kill(signal: string): void } }).child;
        child.kill("SIGSTOP");
        await sleep(4000);
        child.kill("SIGCONT");
        break;
      }
      case "cable-4s":
        pair!.pull();
        await sleep(4000);
        pair!.plug();
        break;
    }
    const faultEnd = Date.now();
    await sleep(3000);
    let drops = a.rec.of("drop").filter((d) => d.t >= faultAt);
    if (drops.length > 0) {
      await a.rec.wait("resume", 20_000, () => true, drops.at(-1)!.t);
    }
    const closes = await checkExactlyOnce(server, a, b, BREAKS);
    drops = a.rec.of("drop");
    const resumes = a.rec.of("resume");
    assert.equal(a.rec.of("session").length, 1, "one session throughout");
    assert.deepEqual(a.rec.of("end"), [], "never lost");
    assert.equal(resumes.length, drops.length, "a resume after every drop");
    const mustNotice = fault.startsWith("rst") || settings === "1s/3s";
    if (mustNotice) {
      assert.ok(drops.length >= 1, "the client noticed the connection's end");
    }
    const breaks = Object.entries(closes).filter(([reason]) => reason !== "client_quit").reduce((n, [, count]) => n + count, 0);
    assert.equal(breaks, drops.length, `each broken connection recorded once by the server: ${JSON.stringify(closes)}`);
    const recovered = resumes[0]?.t ?? faultEnd;
    const first = drops[0];
    figures.push({
      fault,
      settings,
      detectedMs: first === undefined ? null : first.t - faultAt,
      detectedAfterFaultEndMs: first === undefined ? null : first.t - faultEnd,
      resumedMs: resumes[0] === undefined ? null : resumes[0].t - faultAt,
      drops: drops.map((d) => d.text),
      events: a.rec.eventSeqs().length,
      broadcastsInGap: b.rec.of("input").filter((i) => i.t >= faultAt && i.t <= recovered).length,
      inputs: a.sent(),
      lost: 0,
      duplicated: 0,
      serverCloses: closes,
    });
  } finally {
    for (const player of players) player.kill();
    await server?.stop();
    pair?.remove();
  }
}

for (const settings of Object.keys(SETTINGS) as Settings[]) {
  describe(`faults under a WebSocket player, server ${settings}`, () => {
    for (const fault of FAULTS) {
      it(`${fault}: nothing lost or repeated, resumed wherever the connection ended`, { skip: cannotRun(NEEDS[fault]), timeout: 120_000 }, () =>
        runFault(fault, settings),
      );
    }
  });
}
