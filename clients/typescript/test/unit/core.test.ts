/** The sans-IO core on a fake clock (plain numbers): every path of docs/CLIENT.md's state
 * machine, hook by hook. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { BYE_CODES, type ByeCode, type ClientMessage, type ServerMessage } from "../../src/codec.js";
import { Core, InputError, type Output } from "../../src/core.js";
import { decide, type End, transportEnd } from "../../src/end.js";

const T0 = 1000;

function welcome(sessionId: number, token: number, resumed: boolean, lastInputSeq: number, heartbeatIntervalMs = 5000, idleTimeoutMs = 15000): ServerMessage {
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

function event(seq: number): ServerMessage {
  return { kind: "event", seq, payload: Uint8Array.of(seq) };
}

function drain(core: Core): ClientMessage[] {
  const sent: ClientMessage[] = [];
  for (let m = core.pollTransmit(); m !== undefined; m = core.pollTransmit()) sent.push(m);
  return sent;
}

function outputs(core: Core): Output[] {
  const told: Output[] = [];
  for (let o = core.pollOutput(); o !== undefined; o = core.pollOutput()) told.push(o);
  return told;
}

function bye(code: ByeCode, text = ""): End {
  return { kind: "bye", code, text };
}

/** A core welcomed on its first connection (session 7, token 1, 5 s heartbeat, 15 s idle). */
function live(): Core {
  const core = new Core({ playerId: "alice", room: "lobby" }, T0);
  core.connected(T0);
  const [hello] = drain(core);
  assert.equal(hello?.kind, "hello");
  assert.equal(core.receive(welcome(7, 1, false, 0), T0), null);
  outputs(core);
  return core;
}

const kinds = (messages: ClientMessage[]): string[] => messages.map((m) => m.kind);
const inputSeqs = (messages: ClientMessage[]): number[] =>
  messages.flatMap((m) => (m.kind === "input" ? [m.seq] : []));

describe("handshake", () => {
  it("sends join options with a new session's Hello and a Join, never with a resume", () => {
    const team = new TextEncoder().encode("team=red");
    assert.throws(() => new Core({ playerId: "alice", options: new Uint8Array(1025) }, T0), RangeError);
    const core = new Core({ playerId: "alice", room: "lobby", options: team }, T0);
    core.connected(T0);
    const [hello] = drain(core);
    assert.deepEqual(hello?.kind === "hello" ? hello.options : null, team);
    assert.equal(core.receive(welcome(7, 1, false, 0), T0), null);
    assert.throws(() => core.join("arena", new Uint8Array(1025)), RangeError);
    const blue = new TextEncoder().encode("team=blue");
    assert.ok(core.join("arena", blue));
    assert.deepEqual(drain(core), [{ kind: "join", room: "arena", options: blue }]);
    core.disconnected(transportEnd("peer_eof"));
    core.connected(T0);
    const [resume] = drain(core);
    assert.ok(resume?.kind === "hello" && resume.resume !== null, "a resume");
    assert.equal(resume.options.length, 0, "a resume keeps the room as the server holds it");
  });

  it("says a fresh Hello first, then is live at the Welcome and tells the game", () => {
    const core = new Core({ playerId: "alice", room: "lobby", authToken: "t" }, T0);
    assert.equal(core.nextDeadline(), null, "no timer before a session");
    core.connected(T0);
    assert.deepEqual(drain(core), [
      {
        kind: "hello",
        version: 3,
        playerId: "alice",
        room: "lobby",
        authToken: "t",
        resume: null,
        options: new Uint8Array(0),
      },
    ]);
    assert.equal(core.receive(welcome(7, 1, false, 0), T0), null);
    assert.ok(core.isLive);
    assert.deepEqual(outputs(core), [{ kind: "welcome", sessionId: 7n, room: "lobby", resumed: false, resent: 0 }]);
    assert.equal(core.sessionId, 7n);
  });

  it("refuses anything but Welcome or Bye before the Welcome, and a second Welcome", () => {
    const core = new Core({ playerId: "alice" }, T0);
    core.connected(T0);
    assert.equal(core.receive(event(1), T0)?.kind, "protocol");
    const again = live();
    assert.deepEqual(again.receive(welcome(7, 1, false, 0), T0), { kind: "protocol", detail: "a second Welcome" });
  });

  it("a Bye in answer to the Hello ends the connection with its code", () => {
    const core = new Core({ playerId: "alice" }, T0);
    core.connected(T0);
    assert.deepEqual(core.receive({ kind: "bye", code: "join_refused", text: "full" }, T0), bye("join_refused", "full"));
    assert.equal(core.disconnected(bye("join_refused", "full")), "lost");
    assert.deepEqual(outputs(core), [{ kind: "lost", lost: { kind: "ended", end: bye("join_refused", "full") }, ackedInput: 0 }]);
  });

  it("a first connection that breaks before its Welcome is tried again, a refused one too", () => {
    const core = new Core({ playerId: "alice" }, T0);
    core.connected(T0);
    assert.equal(core.disconnected(transportEnd("peer_reset")), "reconnect");
    assert.equal(core.disconnected(transportEnd("refused")), "reconnect");
    assert.equal(core.disconnected(transportEnd("closed_while_opening")), "reconnect");
    assert.equal(core.disconnected({ kind: "opening", detail: "untrusted" }), "lost");
  });

  it("inputs typed before the first Welcome go out after it", () => {
    const core = new Core({ playerId: "eager" }, T0);
    core.connected(T0);
    drain(core);
    assert.equal(core.input(Uint8Array.of(1)), 1);
    assert.deepEqual(drain(core), [], "nothing before the Welcome");
    core.receive(welcome(1, 1, false, 0), T0);
    assert.deepEqual(inputSeqs(drain(core)), [1]);
  });
});

describe("liveness", () => {
  it("answers every Ping with a Pong of the same nonce, but not after its own Bye", () => {
    const core = live();
    core.receive({ kind: "ping", nonce: 0x0102030405060708n }, T0);
    assert.deepEqual(drain(core), [{ kind: "pong", nonce: 0x0102030405060708n }]);
    core.quit();
    drain(core);
    core.receive({ kind: "ping", nonce: 9n }, T0);
    assert.deepEqual(drain(core), []);
  });

  it("pings at 90% of the server's heartbeat, with an Ack of the events just before, and measures the round trip", () => {
    const core = live();
    core.receive(event(1), T0);
    drain(core);
    assert.equal(core.nextDeadline(), T0 + 4500);
    assert.equal(core.onTimer(T0 + 4500), null);
    const sent = drain(core);
    assert.deepEqual(kinds(sent), ["ack", "ping"]);
    assert.deepEqual(sent[0], { kind: "ack", seq: 1 });
    const nonce = sent[1]?.kind === "ping" ? sent[1].nonce : -1n;
    core.receive({ kind: "pong", nonce }, T0 + 4520);
    assert.equal(core.rtt, 20);
    assert.equal(core.nextDeadline(), T0 + 9000);
    // No new event: the next heartbeat is a Ping alone.
    core.onTimer(T0 + 9000);
    assert.deepEqual(kinds(drain(core)), ["ping"]);
  });

  it("without a server heartbeat, pings three times per idle timeout", () => {
    const core = new Core({ playerId: "alice" }, T0);
    core.connected(T0);
    core.receive(welcome(1, 1, false, 0, 0, 9000), T0);
    assert.equal(core.nextDeadline(), T0 + 3000);
  });

  it("declares a silent server dead at its idle timeout, counted from the last frame heard", () => {
    const core = live();
    core.receive({ kind: "ack", seq: 0 }, T0 + 2000);
    let at = core.nextDeadline();
    let end: End | null = null;
    while (at !== null && end === null) {
      end = core.onTimer(at);
      if (end === null) at = core.nextDeadline();
    }
    assert.deepEqual(end, { kind: "server_silent", afterMs: 15000 });
    assert.equal(at, T0 + 2000 + 15000);
    assert.equal(decide(end!).action, "resume");
  });

  it("does not hold its own stall against the server, and pings at once after it", () => {
    const core = live();
    // The process was stopped from T0 + 1000 to T0 + 17000: its timer fires 12.5 s late.
    core.stalled(12500, T0 + 17000);
    assert.equal(core.onTimer(T0 + 17000), null, "frames that came meanwhile are read first");
    assert.deepEqual(kinds(drain(core)), ["ping"]);
    assert.equal(core.nextDeadline(), T0 + 17000 + 4500);
  });
});

describe("acknowledgements", () => {
  it("acknowledges after every 128 events without waiting for the heartbeat", () => {
    const core = live();
    for (let seq = 1; seq <= 127; seq++) core.receive(event(seq), T0);
    assert.deepEqual(drain(core), []);
    core.receive(event(128), T0);
    assert.deepEqual(drain(core), [{ kind: "ack", seq: 128 }]);
    for (let seq = 129; seq <= 256; seq++) core.receive(event(seq), T0);
    assert.deepEqual(drain(core), [{ kind: "ack", seq: 256 }]);
  });

  it("acknowledging now sends one Ack for what was delivered, and none for nothing", () => {
    const core = live();
    core.acknowledge();
    assert.deepEqual(drain(core), []);
    core.receive(event(1), T0);
    core.receive(event(2), T0);
    core.acknowledge();
    core.acknowledge();
    assert.deepEqual(drain(core), [{ kind: "ack", seq: 2 }]);
  });

  it("an Ack from the server drops the inputs it covers, once", () => {
    const core = live();
    for (let i = 0; i < 3; i++) core.input(Uint8Array.of(i));
    drain(core);
    core.receive({ kind: "ack", seq: 2 }, T0);
    core.receive({ kind: "ack", seq: 1 }, T0);
    assert.deepEqual(outputs(core), [{ kind: "acked", seq: 2 }]);
    assert.equal(core.unackedInputs, 1);
    assert.equal(core.ackedInput, 2);
  });
});

describe("events", () => {
  it("delivers each event once, in order: a replayed one is dropped, a gap is a protocol error", () => {
    const core = live();
    core.receive(event(1), T0);
    core.receive(event(2), T0);
    core.receive(event(2), T0);
    core.receive(event(1), T0);
    assert.deepEqual(
      outputs(core).map((o) => (o.kind === "event" ? o.seq : -1)),
      [1, 2],
    );
    assert.equal(core.receive(event(4), T0)?.kind, "protocol");
    assert.equal(core.lastEvent, 2);
  });
});

describe("resume", () => {
  it("a break resumes with the token and the last event, resends what was not applied and skips what was delivered", () => {
    const core = live();
    for (let seq = 1; seq <= 3; seq++) core.receive(event(seq), T0);
    for (let i = 0; i < 4; i++) core.input(Uint8Array.of(i));
    core.receive({ kind: "ack", seq: 1 }, T0);
    drain(core);
    outputs(core);
    assert.equal(core.disconnected(transportEnd("peer_reset")), "reconnect");
    assert.equal(core.nextDeadline(), null, "no heartbeat between connections");
    // Inputs typed while away are kept for the resumed session.
    assert.equal(core.input(Uint8Array.of(9)), 5);
    assert.deepEqual(drain(core), []);
    core.connected(T0 + 100);
    assert.deepEqual(drain(core), [
      {
        kind: "hello",
        version: 3,
        playerId: "alice",
        room: "lobby",
        authToken: null,
        resume: { token: new Uint8Array(16).fill(1), lastEventSeq: 3 },
        options: new Uint8Array(0),
      },
    ]);
    // The server had applied input 2 as well; it replays event 3 (already delivered) and 4.
    core.receive(welcome(7, 2, true, 2), T0 + 150);
    assert.deepEqual(inputSeqs(drain(core)), [3, 4, 5]);
    core.receive(event(3), T0 + 150);
    core.receive(event(4), T0 + 150);
    assert.deepEqual(outputs(core), [
      { kind: "acked", seq: 2 },
      { kind: "welcome", sessionId: 7n, room: "lobby", resumed: true, resent: 3 },
      { kind: "event", seq: 4, payload: Uint8Array.of(4) },
    ]);
    // The next resume uses the new token.
    core.disconnected({ kind: "server_silent", afterMs: 15000 });
    core.connected(T0 + 200);
    const [hello] = drain(core);
    assert.deepEqual(hello?.kind === "hello" ? hello.resume?.token : null, new Uint8Array(16).fill(2));
  });

  it("comes back to the room it moved to", () => {
    const core = live();
    core.join("arena-2");
    assert.deepEqual(drain(core), [{ kind: "join", room: "arena-2", options: new Uint8Array(0) }]);
    core.receive({ kind: "joined", room: "arena-2" }, T0);
    core.disconnected(transportEnd("peer_eof"));
    core.connected(T0);
    const [hello] = drain(core);
    assert.equal(hello?.kind === "hello" ? hello.room : null, "arena-2");
  });

  it("placed by the server (an auto- room), resumes with the room it asked for: auto- names are the server's", () => {
    const core = new Core({ playerId: "alice" }, T0);
    core.connected(T0);
    assert.deepEqual(drain(core).map((m) => (m.kind === "hello" ? m.room : m.kind)), [""]);
    core.receive({ ...welcome(7, 1, false, 0), room: "auto-3" } as ServerMessage, T0);
    assert.equal(core.room, "auto-3");
    core.disconnected(transportEnd("peer_reset"));
    core.connected(T0 + 100);
    const [hello] = drain(core);
    assert.ok(hello?.kind === "hello" && hello.resume !== null, "a resume");
    assert.equal(hello.room, "", "not auto-3, which the server refuses in a Hello");
    core.receive({ ...welcome(7, 2, true, 0), room: "auto-3" } as ServerMessage, T0 + 150);
    assert.equal(core.room, "auto-3", "the session stays in its room");
  });

  it("a refused resume loses the session, and a restart begins afresh", () => {
    const core = live();
    core.input(Uint8Array.of(1));
    core.disconnected(transportEnd("peer_eof"));
    core.connected(T0);
    drain(core);
    outputs(core);
    const refused = bye("resume_rejected", "unknown resume token; start a new session");
    assert.equal(core.disconnected(refused), "lost");
    assert.deepEqual(outputs(core), [
      { kind: "lost", lost: { kind: "resume_refused", text: "unknown resume token; start a new session" }, ackedInput: 0 },
    ]);
    assert.throws(() => core.input(new Uint8Array()), (e: unknown) => e instanceof InputError && e.kind === "no_session");
    core.restart();
    core.connected(T0);
    const [hello] = drain(core);
    assert.equal(hello?.kind === "hello" ? hello.resume : "?", null);
    assert.equal(core.input(new Uint8Array()), 1);
  });

  it("a refusal that asks to retry (the old connection is still closing) resumes again", () => {
    const core = live();
    core.disconnected(transportEnd("peer_reset"));
    core.connected(T0);
    const retry = bye("resume_rejected", "the session's previous connection is still closing; retry the resume");
    assert.equal(core.disconnected(retry), "reconnect");
    core.connected(T0);
    const [hello] = drain(core);
    assert.ok(hello?.kind === "hello" && hello.resume !== null);
  });

  it("a resume answered by a fresh session reports the old one lost and numbers from 1 again", () => {
    const core = live();
    core.receive(event(1), T0);
    core.input(Uint8Array.of(1));
    core.input(Uint8Array.of(2));
    core.receive({ kind: "ack", seq: 1 }, T0);
    core.disconnected(transportEnd("peer_reset"));
    core.connected(T0);
    drain(core);
    outputs(core);
    core.receive(welcome(8, 3, false, 0), T0);
    assert.deepEqual(drain(core), [], "the old session's inputs were never applied: not sent to the new one");
    const told = outputs(core);
    assert.deepEqual(told[0], {
      kind: "lost",
      lost: { kind: "resume_refused", text: "the server started a new session instead of resuming" },
      ackedInput: 1,
    });
    assert.deepEqual(told[1], { kind: "welcome", sessionId: 8n, room: "lobby", resumed: false, resent: 0 });
    assert.equal(core.lastEvent, 0);
    assert.equal(core.input(Uint8Array.of(2)), 1);
  });

  it("without a token (resume off) a break loses the session", () => {
    const core = new Core({ playerId: "bob" }, T0);
    core.connected(T0);
    core.receive(welcome(1, 0, false, 0), T0);
    outputs(core);
    assert.equal(core.disconnected(transportEnd("peer_reset")), "lost");
    assert.deepEqual(outputs(core), [{ kind: "lost", lost: { kind: "not_resumable", end: transportEnd("peer_reset") }, ackedInput: 0 }]);
  });

  it("giving up reconnecting loses the session", () => {
    const core = live();
    core.disconnected(transportEnd("peer_reset"));
    core.giveUp(transportEnd("refused"));
    assert.deepEqual(outputs(core), [{ kind: "lost", lost: { kind: "gave_up", end: transportEnd("refused") }, ackedInput: 0 }]);
  });
});

describe("every Bye code", () => {
  /** What a live session does after each code, per PROTOCOL.md's "Bye codes" table. */
  const AFTER: Record<ByeCode, { next: "reconnect" | "lost" | "closed"; action: string }> = {
    client_quit: { next: "lost", action: "done" },
    server_shutdown: { next: "lost", action: "new_session" },
    kicked: { next: "lost", action: "give_up" },
    replaced: { next: "lost", action: "give_up" },
    server_full: { next: "reconnect", action: "retry" },
    protocol_error: { next: "lost", action: "give_up" },
    idle_timeout: { next: "reconnect", action: "resume" },
    slow_consumer: { next: "reconnect", action: "resume" },
    rate_limited: { next: "lost", action: "new_session" },
    auth_failed: { next: "lost", action: "give_up" },
    version_mismatch: { next: "lost", action: "give_up" },
    handshake_timeout: { next: "reconnect", action: "retry" },
    resume_rejected: { next: "lost", action: "new_session" },
    join_refused: { next: "lost", action: "give_up" },
    game_ended: { next: "lost", action: "give_up" },
  };

  it("has a decision for each of the 15 codes", () => {
    assert.deepEqual(Object.keys(AFTER).sort(), [...BYE_CODES].sort());
  });

  for (const code of BYE_CODES) {
    it(`${code}: ${AFTER[code].action}`, () => {
      const core = live();
      const end = bye(code, "words");
      assert.equal(decide(end).action, AFTER[code].action);
      assert.equal(core.disconnected(end), AFTER[code].next);
      const told = outputs(core);
      if (AFTER[code].next === "lost") {
        assert.deepEqual(told, [{ kind: "lost", lost: { kind: "ended", end }, ackedInput: 0 }]);
      } else {
        assert.deepEqual(told, []);
        // The session is kept: the next connection resumes it.
        core.connected(T0);
        const [hello] = drain(core);
        assert.ok(hello?.kind === "hello" && hello.resume !== null);
      }
    });
  }

  it("server_full while resuming keeps the session (nothing was touched) and resumes again", () => {
    const core = live();
    core.disconnected(transportEnd("peer_reset"));
    core.connected(T0);
    drain(core);
    assert.equal(core.disconnected(bye("server_full")), "reconnect");
    core.connected(T0);
    const [hello] = drain(core);
    assert.ok(hello?.kind === "hello" && hello.resume !== null);
  });
});

describe("quit", () => {
  it("acknowledges, says Bye, takes the server's Ack and Bye, and is closed", () => {
    const core = live();
    core.receive(event(1), T0);
    core.input(Uint8Array.of(1));
    drain(core);
    core.quit();
    assert.deepEqual(drain(core), [
      { kind: "ack", seq: 1 },
      { kind: "bye", code: "client_quit", text: "" },
    ]);
    assert.ok(core.quitting);
    assert.throws(() => core.input(new Uint8Array()), (e: unknown) => e instanceof InputError && e.kind === "no_session");
    core.receive({ kind: "ack", seq: 1 }, T0);
    const end = core.receive({ kind: "bye", code: "client_quit", text: "" }, T0);
    assert.deepEqual(end, bye("client_quit"));
    assert.equal(core.disconnected(end!), "closed");
    assert.equal(core.ackedInput, 1);
    assert.equal(core.disconnected(transportEnd("peer_eof")), "closed", "and stays closed");
  });

  it("between connections there is nobody to say Bye to: closed at once", () => {
    const core = live();
    core.disconnected(transportEnd("peer_reset"));
    core.quit();
    assert.deepEqual(drain(core), []);
    assert.equal(core.disconnected({ kind: "quit" }), "closed");
  });
});

describe("inputs", () => {
  it("are bounded by the unacknowledged limit and by the payload limit", () => {
    const core = new Core({ playerId: "alice", maxUnackedInputs: 2 }, T0);
    core.input(new Uint8Array());
    core.input(new Uint8Array());
    assert.throws(() => core.input(new Uint8Array()), (e: unknown) => e instanceof InputError && e.kind === "full");
    const roomy = live();
    assert.throws(() => roomy.input(new Uint8Array(65400)), (e: unknown) => e instanceof InputError && e.kind === "too_large");
    assert.equal(roomy.input(new Uint8Array(65399)), 1);
  });

  it("keep a copy: the game may reuse its buffer", () => {
    const core = live();
    const buffer = Uint8Array.of(1);
    core.input(buffer);
    buffer[0] = 2;
    const [sent] = drain(core);
    assert.deepEqual(sent?.kind === "input" ? sent.payload : null, Uint8Array.of(1));
  });

  it("join is only asked while welcomed", () => {
    const core = new Core({ playerId: "alice" }, T0);
    assert.equal(core.join("x"), false);
  });
});

describe("bytes in and out", () => {
  it("takes message bodies and gives bodies to send; bytes that are not the protocol end the connection", async () => {
    const { decodeClientMessage, encodeServerMessage } = await import("../../src/codec.js");
    const core = new Core({ playerId: "alice" }, T0);
    core.connected(T0);
    const hello = core.pollTransmitBody();
    assert.ok(hello !== undefined);
    assert.equal(decodeClientMessage(hello).kind, "hello");
    assert.equal(core.receiveBody(encodeServerMessage(welcome(1, 1, false, 0)), T0), null);
    assert.ok(core.isLive);
    assert.deepEqual(core.receiveBody(Uint8Array.of(0x03, 1, 2), T0), {
      kind: "protocol",
      detail: "malformed Ping: nonce runs past the end of the body",
    });
  });
});
