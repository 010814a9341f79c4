/**
 * In-process single-flight: concurrent callers for one key share one promise, so a process runs
 * at most one refresh per user at a time. Every caller may attach to the shared state (for
 * example to extend how long the flight is worth waiting for) before awaiting the promise, and
 * waits for it only until its own deadline (`waitWithin`).
 */
import type { Clock, Timer } from '../core/clock.js';

export interface Flight<T, S> {
  readonly promise: Promise<T>;
  /** State shared by every caller of this flight, created by the leader. */
  readonly state: S;
  /** True for the caller that started the flight. */
  readonly leader: boolean;
}

export interface Singleflight<T, S> {
  /**
   * Joins the flight for `key`, or starts one: `init()` builds the shared state and
   * `run(state)` runs once, on a later microtask, so the flight is registered before it starts.
   * The entry is removed when the promise settles; the next caller starts a new flight.
   */
  join(key: string, init: () => S, run: (state: S) => Promise<T>): Flight<T, S>;
  /** Flights currently running (for shutdown and tests). */
  readonly size: number;
  /** Settles when every flight running now has settled. Never rejects. */
  idle(): Promise<void>;
}

export function createSingleflight<T, S>(): Singleflight<T, S> {
  const flights = new Map<string, { promise: Promise<T>; state: S }>();
  return {
    join(key, init, run) {
      const existing = flights.get(key);
      if (existing) return { ...existing, leader: false };
      const state = init();
      const promise = Promise.resolve().then(() => run(state));
      const entry = { promise, state };
      flights.set(key, entry);
      const settled = () => {
        if (flights.get(key) === entry) flights.delete(key);
      };
      // The handler also marks the rejection handled: a caller that stopped waiting (deadline)
      // must not turn the flight's later failure into an unhandled rejection.
      promise.then(settled, settled);
      return { promise, state, leader: true };
    },
    get size() {
      return flights.size;
    },
    async idle() {
      await Promise.allSettled([...flights.values()].map((f) => f.promise));
    },
  };
}

/**
 * Answer this long before a caller's deadline, so an error with details (REFRESH_IN_PROGRESS)
 * reaches the caller instead of a bare client-side DEADLINE_EXCEEDED.
 */
export const DEADLINE_HEADROOM_MS = 50;

/** How long before a deadline to give up: DEADLINE_HEADROOM_MS, less for very short deadlines. */
export function headroom(remainingMs: number): number {
  return Math.min(DEADLINE_HEADROOM_MS, Math.max(0, remainingMs) / 5);
}

/**
 * A flight's result for one caller, or `giveUp()` at that caller's own deadline (less the
 * headroom) or when `signal` aborts, whichever comes first. The flight itself goes on for the
 * callers who can still wait.
 * @param deadline epoch ms by `clock`; Infinity for none
 */
export function waitWithin<T>(
  promise: Promise<T>,
  deadline: number,
  signal: AbortSignal,
  clock: Clock,
  giveUp: () => Error,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timer: Timer | undefined;
    const cleanup = () => {
      timer?.cancel();
      signal.removeEventListener('abort', stop);
    };
    const stop = () => {
      cleanup();
      reject(giveUp());
    };
    if (signal.aborted) return stop();
    const remaining = deadline - clock.now();
    if (Number.isFinite(remaining)) timer = clock.setTimer(remaining - headroom(remaining), stop);
    signal.addEventListener('abort', stop, { once: true });
    promise.then(
      (value) => {
        cleanup();
        resolve(value);
      },
      (err: unknown) => {
        cleanup();
        reject(err);
      },
    );
  });
}
