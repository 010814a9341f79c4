/**
 * Time, as the domain sees it. Token expiry decisions read `now()`; waits use real timers for
 * the remaining milliseconds, so a test clock only has to move `now()`.
 */

export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
}

export const systemClock: Clock = Object.freeze({ now: () => Date.now() });

/** A clock for tests: real time plus an offset that `advance` moves forward. */
export interface FakeClock extends Clock {
  /** Jumps `now()` forward by `ms` (tokens age instantly; timers are unaffected). */
  advance(ms: number): void;
}

/**
 * A test clock that keeps flowing with real time (so deadlines and lease timers behave) and can
 * be jumped forward to age tokens without waiting.
 */
export function createFakeClock(startMs: number = Date.now()): FakeClock {
  let offset = startMs - Date.now();
  return {
    now: () => Date.now() + offset,
    advance(ms: number) {
      offset += ms;
    },
  };
}
