/**
 * The Node client against the real server over each transport: play (inputs relayed back by the
 * demo game), leave with `Bye{client_quit}` with every input acknowledged; and a connection
 * killed under the client (`ss -K`), after which the session resumes with nothing lost or
 * repeated.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";

import { checkExactlyOnce, inProcess } from "../support/players.js";
import { assertRunnable, cannotRun, makeTlsPair, ServerProcess, sleep, type TlsPair } from "../support/server.js";

const transports = ["tcp", "tls", "ws", "wss"] as const;
type Transport = (typeof transports)[number];

describe("playing over every transport", { skip: cannotRun({ tools: ["openssl"] }) }, () => {
  let plain: ServerProcess;
  let secure: ServerProcess;
  let pair: TlsPair;

  before(async () => {
    assertRunnable({ tools: ["openssl"] });
    pair = makeTlsPair();
    plain = await ServerProcess.start({ websocket: "127.0.0.1:0" });
    secure = await ServerProcess.start({ websocket: "127.0.0.1:0", tls: pair });
  });

  after(async () => {
    await plain?.stop();
    await secure?.stop();
    pair?.remove();
  });

  const urlOf = (transport: Transport): string => {
    switch (transport) {
      case "tcp":
        return `tcp://${plain.game}`;
      case "tls":
        return `tls://${secure.game}`;
      case "ws":
        return `ws://${plain.websocket}/`;
      case "wss":
        return `wss://${secure.websocket}/`;
    }
  };

  for (const transport of transports) {
    it(`${transport}: inputs come back as relays, and leaving acknowledges every one`, async () => {
      const server = transport === "tls" || transport === "wss" ? secure : plain;
      const id = `play-${transport}`;
      const player = inProcess({ url: urlOf(transport), id, room: `room-${transport}`, inputEveryMs: 0, ca: pair.cert });
      const session = await player.rec.wait("session", 10_000);
      assert.equal(session.room, `room-${transport}`);
      for (let i = 1; i <= 20; i++) {
        assert.equal(player.client.input(Uint8Array.of(i)), i);
      }
      await player.rec.wait("event", 10_000, (e) => e.from === id && e.inputSeq === 20);
      assert.deepEqual(player.rec.relaysFrom(id), Array.from({ length: 20 }, (_, i) => i + 1));
      assert.equal(await player.leave(), 20);
      assert.equal(player.client.state, "closed");
      assert.deepEqual(await server.waitCloses(id, "client_quit", 1), { client_quit: 1 });
    });
  }
});

describe("a server the client does not trust", { skip: cannotRun({ tools: ["openssl"] }) }, () => {
  for (const scheme of ["tls", "wss"] as const) {
    it(`${scheme}: an untrusted certificate ends the session at once, without retries`, async () => {
      assertRunnable({ tools: ["openssl"] });
      const pair = makeTlsPair();
      const server = await ServerProcess.start({ websocket: "127.0.0.1:0", tls: pair });
      try {
        const url = scheme === "tls" ? `tls://${server.game}` : `wss://${server.websocket}/`;
        // No CA given: Node's public roots do not know the self-signed certificate.
        const player = inProcess({ url, id: `untrusted-${scheme}`, room: "r", inputEveryMs: 0 });
        const end = await player.rec.wait("end", 10_000);
        const lost = end.lost as { kind: string; end: { kind: string; detail: string } };
        assert.equal(lost.kind, "ended");
        assert.equal(lost.end.kind, "opening", lost.end.detail);
        assert.match(lost.end.detail, /certificate/i);
        assert.equal(end.action, "give_up");
        assert.equal(end.renewing, false);
        assert.deepEqual(player.rec.of("reconnecting"), [], "trying again cannot help");
        assert.equal(player.client.state, "lost");
        player.kill();
      } finally {
        await server.stop();
        pair.remove();
      }
    });
  }
});

describe("a connection killed under the client (ss -K)", { skip: cannotRun({ tools: ["ss"], root: true }) }, () => {
  for (const transport of ["tcp", "ws"] as const) {
    it(`${transport}: the client notices, resumes, and every event and input goes through once`, async () => {
      assertRunnable({ tools: ["ss"], root: true });
      const server = await ServerProcess.start({ websocket: "127.0.0.1:0" });
      try {
        const port = transport === "tcp" ? server.gamePort : Number(server.websocket.split(":").pop());
        const url = transport === "tcp" ? `tcp://${server.game}` : `ws://${server.websocket}/`;
        const room = `killed-${transport}`;
        const a = inProcess({ url, id: `sskill-${transport}-a`, room, inputEveryMs: 50 });
        await a.rec.wait("session", 10_000);
        const b = inProcess({ url, id: `sskill-${transport}-b`, room, inputEveryMs: 100 });
        await b.rec.wait("session", 10_000);
        a.start();
        b.start();
        await sleep(1500);
        const local = a.client.connection?.localPort;
        assert.ok(local !== undefined, "the client's port is known");
        const killedAt = Date.now();
        execFileSync("ss", ["-K", "dst", "127.0.0.1", "dport", "=", `:${port}`, "sport", "=", `:${local}`], { stdio: "ignore" });
        const drop = await a.rec.wait("drop", 5000);
        const resume = await a.rec.wait("resume", 5000);
        assert.equal(drop.end.kind, "transport");
        assert.ok(drop.action === "resume", `${drop.text}: ${drop.action}`);
        await sleep(1500);
        const closes = await checkExactlyOnce(server, a, b, ["peer_reset", "peer_eof", "broken_pipe"]);
        assert.equal(a.rec.of("resume").length, 1, "one resume");
        assert.equal(a.rec.of("session").length, 1, "the same session throughout");
        console.log(
          `ss -K over ${transport}: the client saw ${drop.text} after ${drop.t - killedAt} ms, resumed after ${resume.t - killedAt} ms; the server recorded ${JSON.stringify(closes)}`,
        );
      } finally {
        await server.stop();
      }
    });
  }

  it("ws, a player the server placed (an auto- room): the resume names no room, and the session stays in its own", async () => {
    assertRunnable({ tools: ["ss"], root: true });
    const server = await ServerProcess.start({ websocket: "127.0.0.1:0" });
    try {
      const player = inProcess({ url: `ws://${server.websocket}/`, id: "sskill-placed", room: "", inputEveryMs: 100 });
      const session = await player.rec.wait("session", 10_000);
      assert.match(session.room, /^auto-/);
      player.start();
      await sleep(500);
      const port = server.websocket.split(":").pop()!;
      execFileSync("ss", ["-K", "dst", "127.0.0.1", "dport", "=", `:${port}`], { stdio: "ignore" });
      await player.rec.wait("drop", 5000);
      const resume = await player.rec.wait("resume", 5000);
      assert.equal(resume.sessionId, session.sessionId, "the same session");
      assert.equal(player.client.room, session.room, "in the room the server placed it in");
      assert.equal(player.rec.of("end").length, 0, "nothing lost: no protocol_error for naming an auto- room");
      assert.ok((await player.leave()) >= 1);
    } finally {
      await server.stop();
    }
  });
});
