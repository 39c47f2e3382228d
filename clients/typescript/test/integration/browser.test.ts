/**
 * The checked-in browser bundle in headless Chromium: a page imports it, plays over the
 * server's WebSocket port (inputs relayed back), leaves, and posts what it saw back to the test.
 */

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

import { packageRoot } from "../support/paths.js";
import { assertRunnable, cannotRun, ServerProcess } from "../support/server.js";

const PAGE = (websocket: string): string => `<!doctype html>
<meta charset="utf-8">
<title>bundle smoke test</title>
<script type="module">
import { GameClient, decodeDemoEvent } from "/gameserver-client.browser.js";
const seen = { sessions: 0, relays: [], acked: null, error: null };
try {
  const client = new GameClient({ url: ${JSON.stringify(`ws://${websocket}/`)}, playerId: "browser-1", room: "browser" });
  client.on("event", ({ payload }) => {
    const event = decodeDemoEvent(payload);
    if (event.tag === "relay") seen.relays.push(event.inputSeq);
  });
  client.on("session", () => { seen.sessions += 1; });
  await client.connect();
  for (let i = 1; i <= 5; i++) client.input(new TextEncoder().encode("hello " + i));
  await new Promise((resolve) => client.on("event", () => { if (seen.relays.length >= 5) resolve(); }));
  seen.acked = (await client.leave()).ackedInput;
} catch (error) {
  seen.error = String(error && error.stack || error);
}
await fetch("/result", { method: "POST", body: JSON.stringify(seen) });
</script>`;

describe("the browser bundle", { skip: cannotRun({ tools: ["chromium"] }) }, () => {
  it("plays in headless Chromium over WebSocket and leaves with every input acknowledged", { timeout: 60_000 }, async () => {
    assertRunnable({ tools: ["chromium"] });
    const server = await ServerProcess.start({ websocket: "127.0.0.1:0" });
    const profile = mkdtempSync(join(tmpdir(), "gs-chromium-"));
    let http: Server | null = null;
    let browser: ChildProcess | null = null;
    try {
      const bundle = readFileSync(join(packageRoot, "dist", "gameserver-client.browser.js"));
      const result = new Promise<string>((resolve) => {
        http = createServer((request, response) => {
          if (request.method === "POST" && request.url === "/result") {
            let body = "";
            request.on("data", (chunk: Buffer) => (body += chunk.toString()));
            request.on("end", () => {
              response.end();
              resolve(body);
            });
          } else if (request.url === "/gameserver-client.browser.js") {
            response.writeHead(200, { "content-type": "text/javascript" }).end(bundle);
          } else {
            response.writeHead(200, { "content-type": "text/html" }).end(PAGE(server.websocket));
          }
        }).listen(0, "127.0.0.1");
      });
      await new Promise((resolve) => http!.once("listening", resolve));
      const address = http!.address();
      assert.ok(address !== null && typeof address === "object");
      browser = spawn(
        "chromium",
        [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--no-first-run",
          `--user-data-dir=${profile}`,
          `http://127.0.0.1:${address.port}/`,
        ],
        { stdio: "ignore", detached: true },
      );
      const seen = JSON.parse(
        await Promise.race([
          result,
          new Promise<string>((_, reject) => setTimeout(() => reject(new Error("no result from the page within 45 s")), 45_000).unref()),
        ]),
      ) as { sessions: number; relays: number[]; acked: number | null; error: string | null };
      assert.equal(seen.error, null);
      assert.equal(seen.sessions, 1);
      assert.deepEqual(seen.relays, [1, 2, 3, 4, 5]);
      assert.equal(seen.acked, 5);
      assert.deepEqual(await server.waitCloses("browser-1", "client_quit", 1), { client_quit: 1 });
    } finally {
      if (browser?.pid !== undefined) {
        try {
          process.kill(-browser.pid, "SIGKILL");
        } catch {
          // Gone already.
        }
      }
      (http as Server | null)?.close();
      await server.stop();
      rmSync(profile, { recursive: true, force: true });
    }
  });
});
