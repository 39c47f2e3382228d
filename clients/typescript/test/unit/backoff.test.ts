import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Backoff } from "../../src/backoff.js";

describe("backoff", () => {
  it("doubles from the minimum to the maximum, each delay within [base, 2 x base)", () => {
    for (const r of [0, 0.5, 0.999999]) {
      const backoff = new Backoff({ minMs: 100, maxMs: 5000 }, () => r);
      const delays = Array.from({ length: 10 }, () => backoff.next());
      const bases = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000];
      delays.forEach((delay, i) => {
        assert.ok(delay >= bases[i]! && delay < 2 * bases[i]!, `delay ${i} = ${delay} with r = ${r}`);
        assert.equal(delay, bases[i]! * (1 + r));
      });
    }
  });

  it("spreads clients: the same attempt differs with the random draw", () => {
    const delays = new Set(Array.from({ length: 50 }, () => new Backoff().next()));
    assert.ok(delays.size > 40, "jittered");
    for (const delay of delays) assert.ok(delay >= 100 && delay < 200);
  });

  it("starts again from the minimum after a success", () => {
    const backoff = new Backoff({ minMs: 50, maxMs: 400 }, () => 0);
    backoff.next();
    backoff.next();
    backoff.reset();
    assert.equal(backoff.next(), 50);
  });

  it("refuses bounds that make no sense", () => {
    assert.throws(() => new Backoff({ minMs: 0 }));
    assert.throws(() => new Backoff({ minMs: 500, maxMs: 100 }));
  });
});
