/**
 * The server goes away. Killed (SIGKILL) and started again on the same ports, it knows no
 * resume token: the client reports the resume refused, and starts a fresh session by itself
 * (docs/CLIENT.md: a refused resume loses the session; PROTOCOL.md: reconnect without the resume
 * fields). Drained (SIGTERM), it says `Bye{server_shutdown}`: the session ended on purpose, told
 * apart from a crash.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { inProcess } from "../support/players.js";
import { cannotRun, ServerProcess, sleep } from "../support/server.js";

describe("a server that goes away", { skip: cannotRun({}) }, () => {
  for (const transport of ["tcp", "ws"] as const) {
    it(`${transport}: killed and restarted on the same port: the resume is refused, reported, and a fresh session starts`, async () => {
      let server = await ServerProcess.start({ websocket: "127.0.0.1:0" });
      const game = server.game;
      const websocket = server.websocket;
      const url = transport === "tcp" ? `tcp://${game}` : `ws://${websocket}/`;
      const id = `restart-${transport}`;
      const player = inProcess({ url, id, room: "restart", inputEveryMs: 0 });
      try {
        const first = await player.rec.wait("session", 10_000);
        player.client.input(Uint8Array.of(1));
        await player.rec.wait("event", 5000, (e) => e.from === id);
        const eventsBefore = player.rec.eventSeqs().length;
        server.signal("SIGKILL");
        await server.waitExit();
        const drop = await player.rec.wait("drop", 5000);
        assert.equal(drop.end.kind, "transport", `a crash is a break, not a Bye: ${drop.text}`);
        assert.equal(drop.action, "resume");
        // Nothing listens for a moment: connects are refused and retried.
        await player.rec.wait("reconnecting", 5000, (e) => e.end.kind === "transport" && e.end.cause === "refused");
        server = await ServerProcess.start({ listen: game, websocket });
        const end = await player.rec.wait("end", 10_000);
        assert.deepEqual((end.lost as { kind: string }).kind, "resume_refused", JSON.stringify(end));
        assert.equal(end.action, "new_session");
        assert.equal(end.renewing, true);
        const fresh = await player.rec.wait("session", 10_000, () => true, end.t);
        assert.ok(fresh.t > first.t);
        // The new session numbers its events and inputs from 1 again.
        assert.equal(player.client.input(Uint8Array.of(2)), 1);
        await player.rec.wait("event", 5000, (e) => e.from === id && e.t >= fresh.t);
        assert.equal(player.rec.eventSeqs()[eventsBefore], 1);
        assert.equal(await player.leave(), 1);
        assert.deepEqual(await server.waitCloses(id, "client_quit", 1), { resume_rejected: 1, client_quit: 1 });
      } finally {
        player.kill();
        await server.stop();
      }
    });
  }

  it("drained (SIGTERM): Bye{server_shutdown} ends the session on purpose, told apart from a crash", async () => {
    const server = await ServerProcess.start({ websocket: "127.0.0.1:0" });
    const id = "drained";
    const player = inProcess({ url: `ws://${server.websocket}/`, id, room: "drain", inputEveryMs: 0 });
    try {
      await player.rec.wait("session", 10_000);
      player.client.input(Uint8Array.of(1));
      await player.rec.wait("ack", 10_000, (e) => e.seq === 1);
      server.signal("SIGTERM");
      const drop = await player.rec.wait("drop", 10_000);
      assert.deepEqual(drop.end, { kind: "bye", code: "server_shutdown", text: drop.end.kind === "bye" ? drop.end.text : "" });
      assert.equal(drop.action, "new_session");
      const end = await player.rec.wait("end", 1000);
      assert.deepEqual(end.lost, { kind: "ended", end: drop.end });
      assert.equal(end.action, "new_session");
      assert.equal(end.ackedInput, 1, "the drained session applied the input");
      assert.ok(player.rec.of("resume").length === 0, "no resume is tried: the server ended the session on purpose");
      const closed = await server.waitLog((l) => l.message === "session closed" && l.fields["player"] === id, 5000, "the close line");
      assert.equal(closed.fields["reason"], "server_shutdown");
      await server.waitExit();
      // The fresh session waits a few seconds, as a draining server asks; the server is gone.
      await sleep(500);
      assert.equal(player.rec.of("session").length, 1);
      assert.equal(await player.leave(), 0, "no input in the fresh session, which never started");
    } finally {
      player.kill();
      await server.stop();
    }
  });
});
