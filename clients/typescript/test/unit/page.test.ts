/** The demo page's rules (page/rules.ts): where it may connect, and how it shows the demo game's
 * events. The page itself plays in headless Chromium in the server's browser tests. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { encodeDemoEvent } from "../../src/demo.js";
import { describeDemoPayload, type PageAddress, randomPlayer, websocketUrl } from "../../page/rules.js";

const served: PageAddress = { port: "7778", scheme: "ws", origins: "", hostname: "127.0.0.1", given: null };

describe("the demo page's WebSocket address", () => {
  it("is the page's own host at the port and scheme the server wrote in", () => {
    assert.deepEqual(websocketUrl(served), { url: "ws://127.0.0.1:7778/" });
    assert.deepEqual(websocketUrl({ ...served, scheme: "wss", hostname: "game.example" }), {
      url: "wss://game.example:7778/",
    });
  });

  it("puts an IPv6 host in brackets once, as location.hostname gives it or bare", () => {
    assert.deepEqual(websocketUrl({ ...served, hostname: "[::1]" }), { url: "ws://[::1]:7778/" });
    assert.deepEqual(websocketUrl({ ...served, hostname: "::1" }), { url: "ws://[::1]:7778/" });
  });

  it("is refused when the page was not served by the server (placeholders left)", () => {
    const unserved = { ...served, port: "{{websocket_port}}", scheme: "{{websocket_scheme}}" };
    assert.deepEqual(websocketUrl(unserved), { refused: "no WebSocket address: open this page from the server" });
    assert.ok("refused" in websocketUrl({ ...served, hostname: "" }), "a page opened from a file");
  });

  it("takes ?ws= for its own server, however the URL spells it", () => {
    assert.deepEqual(websocketUrl({ ...served, given: "ws://127.0.0.1:7778/" }), { url: "ws://127.0.0.1:7778/" });
    assert.deepEqual(websocketUrl({ ...served, given: "ws://127.0.0.1:7778/path?x=1" }), {
      url: "ws://127.0.0.1:7778/path?x=1",
    });
    assert.deepEqual(websocketUrl({ ...served, port: "80", given: "ws://127.0.0.1:80/" }), {
      url: "ws://127.0.0.1/",
    });
  });

  it("refuses ?ws= for another server: its Hello and token go nowhere else", () => {
    for (const given of ["ws://127.0.0.1:9999/", "wss://127.0.0.1:7778/", "ws://evil.example:7778/", "http://127.0.0.1:7778/"]) {
      const answer = websocketUrl({ ...served, given });
      assert.ok("refused" in answer, given);
      assert.match(answer.refused, /not this server \(ws:\/\/127\.0\.0\.1:7778\)/);
      assert.match(answer.refused, /admin\.page_websocket_origins/);
    }
    assert.deepEqual(websocketUrl({ ...served, given: "not a url" }), { refused: "?ws=not a url is not a URL" });
  });

  it("takes ?ws= for an origin the operator allowed, and only those", () => {
    const allowing = { ...served, origins: "wss://play.example ws://10.0.0.2:7000" };
    assert.deepEqual(websocketUrl({ ...allowing, given: "wss://play.example/" }), { url: "wss://play.example/" });
    assert.deepEqual(websocketUrl({ ...allowing, given: "wss://play.example:443/x" }), {
      url: "wss://play.example/x",
    });
    assert.deepEqual(websocketUrl({ ...allowing, given: "ws://10.0.0.2:7000/" }), { url: "ws://10.0.0.2:7000/" });
    assert.ok("refused" in websocketUrl({ ...allowing, given: "ws://10.0.0.2:7001/" }));
    assert.ok("refused" in websocketUrl({ ...allowing, given: "ws://play.example/" }));
  });
});

describe("the demo page's events", () => {
  it("describes relays, states and presences for people", () => {
    const line = (payload: Uint8Array) => describeDemoPayload(payload);
    assert.deepEqual(
      line(encodeDemoEvent({ tag: "relay", from: "web-1a2b", inputSeq: 7, data: new TextEncoder().encode("auto 7") })),
      { line: 'relay: web-1a2b input 7 "auto 7"', invalid: false },
    );
    assert.deepEqual(line(encodeDemoEvent({ tag: "state", tick: 42n, members: 2, inputs: 3 })), {
      line: "state: tick 42, 2 member(s), 3 input(s)",
      invalid: false,
    });
    assert.deepEqual(line(encodeDemoEvent({ tag: "presence", joined: false, player: "bob" })), {
      line: "presence: bob left",
      invalid: false,
    });
  });

  it("counts a payload that is not a demo event as invalid, and says why", () => {
    const answer = describeDemoPayload(Uint8Array.of(9, 1, 2));
    assert.equal(answer.invalid, true);
    assert.equal(answer.line, "invalid demo payload of 3 bytes (invalid demo event: unknown tag 9)");
    assert.equal(describeDemoPayload(Uint8Array.of(2, 0)).invalid, true, "a state cut short");
  });

  it("names a visitor web- and four hex digits", () => {
    assert.equal(randomPlayer(Uint8Array.of(0x0a, 0xff)), "web-0aff");
  });
});
