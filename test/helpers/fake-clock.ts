/**
 * Virtual time for unit tests of the domain and the memory store. `now()` stands still until a
 * test moves it; timers set through the clock (a caller's deadline, lock lease renewal, lock
 * waits, a fake IdP's latency) fire only when `advance` or `run` reaches them, in time order,
 * with pending promise reactions settled before and after each one. A refresh storm that takes
 * seconds of lease time runs in milliseconds, and a test cannot pass or fail by machine load.
 */
import type { Clock, Timer } from '../../src/core/clock.js';

export interface FakeClock extends Clock {
  /**
   * Moves time forward by `ms`, firing every timer due by then at its own time, in order (ties in
   * the order they were set). Resolves once the reactions to the last one have settled.
   */
  advance(ms: number): Promise<void>;
  /**
   * Moves time forward, timer by timer, until `promise` settles, and returns (or throws) its
   * outcome. Rejects if it has not settled after `limitMs` of virtual time, or when no timer is
   * left that could settle it (it would wait forever).
   */
  run<T>(promise: Promise<T>, limitMs?: number): Promise<T>;
  /** A promise that resolves after `ms` of virtual time (a fake IdP's latency, for example). */
  sleep(ms: number): Promise<void>;
  /** Lets pending promise reactions (and immediates they set) run, without moving time. */
  settle(): Promise<void>;
  /** Timers set and neither fired nor cancelled. */
  readonly pending: number;
}

interface Scheduled {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

/** Rounds of setImmediate per settle: a reaction chain that hops through immediates settles too. */
const SETTLE_ROUNDS = 5;

/** @param startMs epoch ms `now()` starts at; default the real time at creation */
export function createFakeClock(startMs: number = Date.now()): FakeClock {
  let time = startMs;
  let seq = 0;
  const timers = new Set<Scheduled>();

  const settle = async (): Promise<void> => {
    for (let i = 0; i < SETTLE_ROUNDS; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  };
  /** The earliest timer due at or before `limit`, if any. */
  const next = (limit: number): Scheduled | undefined => {
    let first: Scheduled | undefined;
    for (const t of timers) {
      if (t.at > limit) continue;
      if (first === undefined || t.at < first.at || (t.at === first.at && t.seq < first.seq)) first = t;
    }
    return first;
  };
  const fire = (t: Scheduled): void => {
    timers.delete(t);
    time = Math.max(time, t.at);
    t.fn();
  };

  const clock: FakeClock = {
    now: () => time,
    setTimer(ms: number, fn: () => void): Timer {
      const t: Scheduled = { at: time + Math.max(0, ms), seq: seq++, fn };
      timers.add(t);
      return { cancel: () => void timers.delete(t) };
    },
    async advance(ms: number): Promise<void> {
      if (!(ms >= 0 && Number.isFinite(ms)))
        throw new RangeError(`advance takes a finite non-negative duration, got ${ms}`);
      const target = time + ms;
      await settle();
      for (let t = next(target); t !== undefined; t = next(target)) {
        fire(t);
        await settle();
      }
      time = target;
      await settle();
    },
    async run<T>(promise: Promise<T>, limitMs = 3_600_000): Promise<T> {
      let settled = false;
      const observed = promise.then(
        () => void (settled = true),
        () => void (settled = true),
      );
      const limit = time + limitMs;
      await settle();
      while (!settled) {
        const t = next(limit);
        if (t === undefined) {
          const why = timers.size === 0 ? 'no timer is left to fire' : `nothing is due within ${limitMs} ms`;
          throw new Error(`fake clock: the promise has not settled and ${why}`);
        }
        fire(t);
        await settle();
      }
      await observed;
      return promise;
    },
    sleep(ms: number): Promise<void> {
      return new Promise((resolve) => clock.setTimer(ms, resolve));
    },
    settle,
    get pending() {
      return timers.size;
    },
  };
  return clock;
}
