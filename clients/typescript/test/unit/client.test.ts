/** The driver on a fake clock over a fake transport: timers, reconnects, renewals, leaving. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Client, type ClientEvents, type ClientOptions } from "../../src/client.js";
import { transportEnd } from "../../src/end.js";
import { SessionLost } from "../../src/end.js";
import { FakeClock, fakeDial, welcome } from "../support/fake.js";

type Seen = { [K in keyof ClientEvents]: [K, ClientEvents[K]] }[keyof ClientEvents];

function start(options: Partial<ClientOptions> = {}) {
  const clock = new FakeClock();
  const fake = fakeDial();
  const client = new Client({ playerId: "alice", room: "lobby", dial: fake.dial, clock, random: () => 0.5, ...options });
  const seen: Seen[] = [];
  const names: (keyof ClientEvents)[] = ["session", "resume", "event", "ack", "joined", "joinRefused", "drop", "reconnecting", "end", "closed"];
  for (const name of names) {
    client.on(name, (value) => seen.push([name, value] as Seen));
  }
  const connected = client.connect();
  // Tests that expect a loss await the rejection themselves.
  connected.catch(() => undefined);
  return { clock, fake, client, seen, connected };
}

const names = (seen: Seen[]): string[] => seen.map(([name]) => name);

describe("the driver", () => {
  it("says Hello once the link is open, resolves connect at the Welcome and keeps the heartbeat", async () => {
    const { clock, fake, client, connected } = start();
    const link = fake.last();
    assert.deepEqual(link.take(), [], "nothing before the link is open");
    link.open();
    assert.equal(link.take()[0]?.kind, "hello");
    link.serve(welcome(7, 1, false));
    assert.deepEqual(await connected, { sessionId: 7n, room: "lobby", resumed: false });
    assert.equal(client.state, "live");
    clock.advance(4499);
    assert.deepEqual(link.take(), []);
    clock.advance(1);
    assert.deepEqual(link.take().map((m) => m.kind), ["ping"]);
  });

  it("after a break: drop, a jittered backoff, a resume with the inputs resent, and the down time", () => {
    const { clock, fake, client, seen } = start();
    fake.last().open();
    fake.last().serve(welcome(7, 1, false));
    client.input(Uint8Array.of(1));
    client.input(Uint8Array.of(2));
    fake.last().end(transportEnd("peer_reset", "read ECONNRESET"));
    assert.deepEqual(names(seen).slice(-3), ["session", "drop", "reconnecting"]);
    const waiting = seen[seen.length - 1];
    assert.ok(waiting?.[0] === "reconnecting");
    assert.equal(waiting[1].delayMs, 150, "100 ms base plus half of it (random 0.5)");
    assert.equal(client.state, "reconnecting");
    client.input(Uint8Array.of(3));
    clock.advance(149);
    assert.equal(fake.links.length, 1);
    clock.advance(1);
    assert.equal(fake.links.length, 2);
    const again = fake.last();
    again.open();
    const [hello] = again.take();
    assert.ok(hello?.kind === "hello" && hello.resume !== null);
    clock.advance(30);
    again.serve(welcome(7, 2, true, 1));
    assert.deepEqual(again.take().map((m) => (m.kind === "input" ? m.seq : m.kind)), [2, 3]);
    const resumed = seen[seen.length - 1];
    assert.ok(resumed?.[0] === "resume");
    assert.deepEqual(resumed[1], { sessionId: 7n, room: "lobby", resent: 2, downMs: 180 });
  });

  it("resets the link of a silent server at its idle timeout and resumes", () => {
    const { clock, fake, seen } = start();
    const link = fake.last();
    link.open();
    link.serve(welcome(7, 1, false, 0, 1000, 3000));
    clock.advance(2999);
    assert.equal(link.aborted, false);
    clock.advance(1);
    assert.equal(link.aborted, true, "reset: there is nobody to say goodbye to");
    const drop = seen.find(([name]) => name === "drop");
    assert.deepEqual(drop?.[1], { end: { kind: "server_silent", afterMs: 3000 }, decision: { action: "resume", why: "the server or the path went silent: reconnect and resume" } });
  });

  it("does not declare the server silent for its own freeze", () => {
    const { clock, fake } = start();
    const link = fake.last();
    link.open();
    link.serve(welcome(7, 1, false, 0, 1000, 3000));
    link.take();
    clock.advance(500);
    clock.freeze(4000);
    assert.equal(link.aborted, false);
    assert.deepEqual(link.take().map((m) => m.kind), ["ping"], "a ping at once instead");
    link.serve({ kind: "pong", nonce: 1n });
    clock.advance(2000);
    assert.equal(link.aborted, false);
  });

  it("gives a connection that does not open, and a Hello without Welcome, their own timeouts", () => {
    const { clock, fake, seen } = start({ connectTimeoutMs: 1000, handshakeTimeoutMs: 2000 });
    clock.advance(1000);
    assert.equal(fake.links[0]?.aborted, true);
    const first = seen[0];
    assert.ok(first?.[0] === "reconnecting");
    assert.deepEqual(first[1].end, transportEnd("timed_out", "no connection within 1000 ms"));
    clock.advance(150);
    fake.last().open();
    clock.advance(2000);
    assert.equal(fake.last().closed, true);
    const second = seen[1];
    assert.ok(second?.[0] === "reconnecting");
    assert.deepEqual(second[1].end, transportEnd("timed_out", "no Welcome within 2000 ms"));
    assert.equal(second[1].delayMs, 300, "doubled");
  });

  it("gives up after the configured attempts: the session is lost and connect rejects", async () => {
    const { clock, fake, seen, connected } = start({ maxAttempts: 3 });
    for (let i = 0; i < 3; i++) {
      fake.last().end(transportEnd("refused", "ECONNREFUSED"));
      clock.advance(10_000);
    }
    assert.equal(fake.links.length, 3);
    const end = seen[seen.length - 1];
    assert.ok(end?.[0] === "end");
    assert.deepEqual(end[1].lost, { kind: "gave_up", end: transportEnd("refused", "ECONNREFUSED") });
    assert.equal(end[1].renewing, false);
    await assert.rejects(connected, SessionLost);
  });

  it("a refused resume ends the session and a fresh one starts by itself", () => {
    const { clock, fake, client, seen } = start();
    fake.last().open();
    fake.last().serve(welcome(7, 1, false));
    fake.last().end(transportEnd("peer_eof"));
    clock.advance(200);
    fake.last().open();
    fake.last().serve({ kind: "bye", code: "resume_rejected", text: "unknown resume token" });
    assert.equal(fake.last().closed, true);
    const end = seen[seen.length - 1];
    assert.ok(end?.[0] === "end");
    assert.deepEqual(end[1].lost, { kind: "resume_refused", text: "unknown resume token" });
    assert.equal(end[1].renewing, true);
    clock.advance(200);
    assert.equal(fake.links.length, 3);
    fake.last().open();
    const [hello] = fake.last().take();
    assert.ok(hello?.kind === "hello" && hello.resume === null, "a fresh Hello");
    fake.last().serve(welcome(8, 3, false));
    assert.equal(names(seen).at(-1), "session");
    assert.equal(client.sessionId, 8n);
  });

  it("a draining server's Bye ends the session; the fresh one waits a few seconds", () => {
    const { clock, fake, seen } = start();
    fake.last().open();
    fake.last().serve(welcome(7, 1, false));
    fake.last().serve({ kind: "bye", code: "server_shutdown", text: "" });
    assert.deepEqual(names(seen).slice(-2), ["drop", "end"]);
    clock.advance(2999);
    assert.equal(fake.links.length, 1, "no sooner than 2 s plus jitter");
    clock.advance(200);
    assert.equal(fake.links.length, 2);
  });

  it("a kick is not renewed by itself: the game asks for a new session", () => {
    const { fake, client, seen } = start();
    fake.last().open();
    fake.last().serve(welcome(7, 1, false));
    fake.last().serve({ kind: "bye", code: "kicked", text: "by an operator" });
    const end = seen[seen.length - 1];
    assert.ok(end?.[0] === "end");
    assert.equal(end[1].decision.action, "give_up");
    assert.equal(end[1].renewing, false);
    assert.equal(client.state, "lost");
    client.newSession();
    assert.equal(fake.links.length, 2);
  });

  it("leave says Bye, reads the server's Ack and Bye, and resolves with the last acknowledged input", async () => {
    const { fake, client, seen } = start();
    const link = fake.last();
    link.open();
    link.serve(welcome(7, 1, false));
    link.serve({ kind: "event", seq: 1, payload: new Uint8Array() });
    client.input(Uint8Array.of(1));
    client.input(Uint8Array.of(2));
    link.take();
    const left = client.leave();
    assert.deepEqual(link.take(), [
      { kind: "ack", seq: 1 },
      { kind: "bye", code: "client_quit", text: "" },
    ]);
    assert.equal(link.finished, true, "half-closed; reading goes on");
    link.serve({ kind: "ack", seq: 2 });
    link.serve({ kind: "bye", code: "client_quit", text: "" });
    assert.deepEqual(await left, { ackedInput: 2 });
    assert.deepEqual(seen.at(-1), ["closed", { ackedInput: 2, end: { kind: "bye", code: "client_quit", text: "" } }]);
    assert.equal(client.state, "closed");
  });

  it("leave gives up waiting for the server after the linger time", async () => {
    const { clock, fake, client, seen } = start({ lingerMs: 1000 });
    fake.last().open();
    fake.last().serve(welcome(7, 1, false));
    const left = client.leave();
    clock.advance(1000);
    assert.deepEqual(await left, { ackedInput: 0 });
    assert.deepEqual(seen.at(-1), ["closed", { ackedInput: 0, end: { kind: "quit" } }], "no answer: the client quit");
  });

  it("leave while reconnecting closes at once", async () => {
    const { fake, client } = start();
    fake.last().open();
    fake.last().serve(welcome(7, 1, false));
    fake.last().end(transportEnd("peer_reset"));
    assert.deepEqual(await client.leave(), { ackedInput: 0 });
    assert.equal(client.state, "closed");
  });

  it("bytes that are not the protocol end the connection as a protocol error", () => {
    const { fake, seen } = start();
    fake.last().open();
    fake.last().events.body(Uint8Array.of(0x0c));
    const end = seen[seen.length - 1];
    assert.ok(end?.[0] === "end");
    assert.equal(end[1].lost.kind, "ended");
    assert.equal(end[1].decision.action, "give_up");
  });

  it("refuses names the server would refuse, before connecting", () => {
    const dial = fakeDial().dial;
    assert.throws(() => new Client({ playerId: "", dial }), RangeError);
    assert.throws(() => new Client({ playerId: "a\nb", dial }), RangeError);
    assert.throws(() => new Client({ playerId: "a", room: "auto-1", dial }), RangeError);
    assert.throws(() => new Client({ playerId: "x".repeat(65), dial }), RangeError);
  });
});
