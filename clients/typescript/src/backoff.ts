/**
 * Reconnect delays: exponential with jitter, so that a server's thousands of players do not all
 * come back in the same millisecond after a network blip (docs/CLIENT.md).
 */

export interface BackoffConfig {
  /** The first delay's base, in ms (default 100). */
  readonly minMs?: number;
  /** The largest base, in ms (default 5000): bases double from `minMs` up to it. */
  readonly maxMs?: number;
}

/**
 * Delay n (from 0) is `base(n) * (1 + r)` with `base(n) = min(maxMs, minMs * 2^n)` and `r` a
 * random number in [0, 1): every delay lies in [base, 2 * base). The randomness is injected so
 * that tests can pin it.
 */
export class Backoff {
  private attempt = 0;
  readonly minMs: number;
  readonly maxMs: number;

  constructor(
    config: BackoffConfig = {},
    private readonly random: () => number = Math.random,
  ) {
    this.minMs = config.minMs ?? 100;
    this.maxMs = config.maxMs ?? 5000;
    if (!(this.minMs > 0) || !(this.maxMs >= this.minMs)) {
      throw new RangeError(`backoff needs 0 < minMs <= maxMs, not ${this.minMs} and ${this.maxMs}`);
    }
  }

  /** The base of the next delay, without jitter. */
  base(): number {
    return Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt, 52));
  }

  /** The next delay, in ms. */
  next(): number {
    const base = this.base();
    this.attempt += 1;
    return base * (1 + this.random());
  }

  /** After a success: the next delay starts from `minMs` again. */
  reset(): void {
    this.attempt = 0;
  }
}
