/**
 * The integration tests' one harness: the real server binary as a child process (its own ports,
 * read back from its `serving` log line), its admin API, a TLS pair made with openssl, and the
 * checks that decide whether a test that needs root or a tool runs, is skipped with its reason,
 * or (under `CI=true`) fails.
 */

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The server binary: `GAME_SERVER_BIN`, or /tmp/ts-game-server when present. */
export function serverBin(): string | null {
  const given = process.env["GAME_SERVER_BIN"];
  if (given !== undefined && given !== "") {
    return existsSync(given) ? given : null;
  }
  return existsSync("/tmp/ts-game-server") ? "/tmp/ts-game-server" : null;
}

const CI = process.env["CI"] === "true";

function hasTool(tool: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Why a test cannot run here (a missing tool, no root, no server binary), or `false` when it
 * can. Under `CI=true` it is always `false`: the test runs, and what is missing fails it (see
 * {@link assertRunnable}).
 */
export function cannotRun(needs: { tools?: string[]; root?: boolean; server?: boolean }): string | false {
  const missing = missingFor(needs);
  return missing.length === 0 || CI ? false : `needs ${missing.join(", ")}`;
}

function missingFor(needs: { tools?: string[]; root?: boolean; server?: boolean }): string[] {
  const missing: string[] = [];
  if (needs.server !== false && serverBin() === null) {
    missing.push("the server binary (GAME_SERVER_BIN or /tmp/ts-game-server)");
  }
  for (const tool of needs.tools ?? []) {
    if (!hasTool(tool)) missing.push(`the tool ${tool}`);
  }
  if (needs.root === true && process.getuid?.() !== 0) {
    missing.push("root");
  }
  return missing;
}

/** Fails the test (under `CI=true`, where nothing is skipped) when something it needs is
 * missing. */
export function assertRunnable(needs: { tools?: string[]; root?: boolean; server?: boolean }): void {
  const missing = missingFor(needs);
  if (missing.length > 0) {
    throw new Error(`this test cannot run: it needs ${missing.join(", ")}`);
  }
}

export interface ServerSpec {
  /** `GAMESERVER__...` settings. */
  readonly env?: Record<string, string>;
  /** The game port's address (default 127.0.0.1:0). */
  readonly listen?: string;
  /** The admin port's address (default 127.0.0.1:0). */
  readonly adminListen?: string;
  /** Also listen for WebSocket (on this address; "127.0.0.1:0" for any port). */
  readonly websocket?: string;
  /** TLS on the game and WebSocket ports. */
  readonly tls?: TlsPair;
  /** Run in this network namespace (`ip netns exec`). */
  readonly netns?: string;
}

/** One log line of the server (JSON). */
export interface LogLine {
  readonly message?: string;
  readonly fields: Record<string, unknown>;
  readonly raw: string;
}

export class ServerProcess {
  readonly logs: LogLine[] = [];
  private readonly waiters: (() => void)[] = [];
  private exited: Promise<number | null>;

  private constructor(
    readonly child: ChildProcess,
    readonly spec: ServerSpec,
  ) {
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    let pending = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      pending += chunk;
      let at: number;
      while ((at = pending.indexOf("\n")) >= 0) {
        const raw = pending.slice(0, at);
        pending = pending.slice(at + 1);
        try {
          const parsed = JSON.parse(raw) as { fields?: Record<string, unknown> };
          const fields = parsed.fields ?? {};
          const line: LogLine = { fields, raw };
          if (typeof fields["message"] === "string") {
            (line as { message?: string }).message = fields["message"];
          }
          this.logs.push(line);
        } catch {
          this.logs.push({ fields: {}, raw });
        }
        for (const wake of this.waiters.splice(0)) wake();
      }
    });
  }

  /** The game port, `host:port`. */
  game = "";
  /** The admin port, `host:port`. */
  admin = "";
  /** The WebSocket port, `host:port`, when listening. */
  websocket = "";

  get gamePort(): number {
    return Number(this.game.split(":").pop());
  }

  /** Starts the server and waits for its `serving` line. */
  static async start(spec: ServerSpec = {}): Promise<ServerProcess> {
    const bin = serverBin();
    if (bin === null) {
      throw new Error("no server binary: set GAME_SERVER_BIN");
    }
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      GAMESERVER__LOG__FORMAT: "json",
      GAMESERVER__LOG__LEVEL: "info",
      ...(spec.websocket !== undefined ? { GAMESERVER__SERVER__WEBSOCKET_LISTEN: spec.websocket } : {}),
      ...(spec.tls !== undefined
        ? { GAMESERVER__TLS__CERT_FILE: spec.tls.cert, GAMESERVER__TLS__KEY_FILE: spec.tls.key }
        : {}),
      ...spec.env,
    };
    const args = ["--listen", spec.listen ?? "127.0.0.1:0", "--admin-listen", spec.adminListen ?? "127.0.0.1:0"];
    const child =
      spec.netns === undefined
        ? spawn(bin, args, { env, stdio: ["ignore", "ignore", "pipe"] })
        : spawn("ip", ["netns", "exec", spec.netns, bin, ...args], { env, stdio: ["ignore", "ignore", "pipe"] });
    const server = new ServerProcess(child, spec);
    const serving = await server.waitLog((line) => line.message === "serving", 10_000, "the serving line");
    server.game = String(serving.fields["game"]);
    server.admin = String(serving.fields["admin"]);
    server.websocket = String(serving.fields["websocket"] ?? "");
    return server;
  }

  /** Waits for a log line (from the first one on) that matches. */
  async waitLog(matches: (line: LogLine) => boolean, withinMs: number, what: string): Promise<LogLine> {
    const deadline = Date.now() + withinMs;
    for (;;) {
      const found = this.logs.find(matches);
      if (found !== undefined) {
        return found;
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.child.exitCode !== null) {
        throw new Error(`no ${what} within ${withinMs} ms; the server's log:\n${this.logs.map((l) => l.raw).join("\n")}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends a signal (`SIGKILL`, `SIGTERM`, `SIGSTOP`, ...) to the server process. */
  signal(signal: NodeJS.Signals): void {
    // Under `ip netns exec` the child execs the server, so its pid is the server's own.
    this.child.kill(signal);
  }

  /** Waits for the process to exit; its exit code. */
  async waitExit(withinMs = 15_000): Promise<number | null> {
    const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), withinMs).unref());
    const result = await Promise.race([this.exited, timeout]);
    if (result === "timeout") {
      throw new Error(`the server did not exit within ${withinMs} ms`);
    }
    return result;
  }

  /** Stops the server (SIGKILL if it outlives a SIGTERM by 15 s); always safe to call. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      return;
    }
    this.signal("SIGTERM");
    try {
      await this.waitExit(15_000);
    } catch {
      this.signal("SIGKILL");
      await this.exited;
    }
  }

  /** An admin request; its status and body. */
  async http(method: string, path: string): Promise<{ status: number; body: string }> {
    if (this.spec.netns !== undefined) {
      // The admin port is inside the namespace: ask from there.
      const script = `fetch(${JSON.stringify(`http://${this.admin}${path}`)}, { method: ${JSON.stringify(method)} })
        .then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })))`;
      const out = execFileSync("ip", ["netns", "exec", this.spec.netns, process.execPath, "-e", script], { encoding: "utf8" });
      return JSON.parse(out) as { status: number; body: string };
    }
    const response = await fetch(`http://${this.admin}${path}`, { method });
    return { status: response.status, body: await response.text() };
  }

  /** How the recent sessions of players whose id starts with `prefix` ended: count by reason. */
  async closes(prefix: string): Promise<Record<string, number>> {
    const { status, body } = await this.http("GET", `/closes?player_prefix=${encodeURIComponent(prefix)}`);
    if (status !== 200) {
      throw new Error(`/closes answered ${status}: ${body}`);
    }
    return (JSON.parse(body) as { reasons: Record<string, number> }).reasons;
  }

  /** Waits until `/closes` for `prefix` counts at least `reason` `count` times; the counts. */
  async waitCloses(prefix: string, reason: string, count: number, withinMs = 10_000): Promise<Record<string, number>> {
    const deadline = Date.now() + withinMs;
    for (;;) {
      const closes = await this.closes(prefix);
      if ((closes[reason] ?? 0) >= count || Date.now() > deadline) {
        return closes;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** A self-signed certificate for localhost and 127.0.0.1 (README, "Encrypted links"). */
export interface TlsPair {
  readonly cert: string;
  readonly key: string;
  readonly dir: string;
  remove(): void;
}

export function makeTlsPair(): TlsPair {
  const dir = mkdtempSync(join(tmpdir(), "gs-ts-tls-"));
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync(
    "openssl",
    [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.200.0.1",
      "-keyout", key, "-out", cert,
    ],
    { stdio: "ignore" },
  );
  return { cert, key, dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Waits until `predicate` holds, polling; fails with `what` after `withinMs`. */
export async function until(predicate: () => boolean, withinMs: number, what: string): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!predicate()) {
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${withinMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
