/**
 * A player in a process of its own, for faults that hit the whole client (SIGSTOP, a network
 * namespace): it plays with the Node GameClient, sends an input every `inputEveryMs`, and
 * writes every entry of its {@link Recorder} as one JSON line on stdout. Commands on stdin:
 * `start` starts the inputs, `stop` stops the inputs (and prints how many were sent), `leave` leaves and exits.
 *
 * Usage: node bot.js '{"url":"ws://127.0.0.1:7778/","playerId":"p","room":"r","inputEveryMs":100}'
 */

import { createInterface } from "node:readline";
import { readFileSync } from "node:fs";

import { GameClient } from "../../src/node.js";
import { Recorder } from "./recorder.js";

interface BotConfig {
  url: string;
  playerId: string;
  room: string;
  inputEveryMs: number;
  ca?: string;
}

const config = JSON.parse(process.argv[2] ?? "{}") as BotConfig;
const client = new GameClient({
  url: config.url,
  playerId: config.playerId,
  room: config.room,
  maxAttempts: null,
  reconnect: { minMs: 50, maxMs: 1000 },
  ...(config.ca !== undefined ? { tls: { ca: readFileSync(config.ca) } } : {}),
});
const recorder = new Recorder().attach(client);
recorder.onEntry((entry) => process.stdout.write(`${JSON.stringify(entry)}\n`));

let sent = 0;
let ticker: ReturnType<typeof setInterval> | null = null;
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "start" && ticker === null) {
    ticker = setInterval(() => {
      sent = client.input(new TextEncoder().encode(`${config.playerId} ${sent + 1}`));
      recorder.add({ t: Date.now(), type: "input", seq: sent });
    }, config.inputEveryMs);
  }
  if (line === "stop") {
    if (ticker !== null) clearInterval(ticker);
    ticker = null;
    recorder.add({ t: Date.now(), type: "note", text: `stopped after ${sent} inputs` });
  }
  if (line === "leave") {
    if (ticker !== null) clearInterval(ticker);
    void client.leave().then(() => process.exit(0));
  }
});

client.connect().catch((error: unknown) => {
  recorder.add({ t: Date.now(), type: "note", text: `connect failed: ${String(error)}` });
});
