/**
 * In-process single-flight: concurrent callers for one key share one promise, so a process runs
 * at most one refresh per user at a time. Every caller may attach to the shared state (for
 * example to extend how long the flight is worth waiting for) before awaiting the promise.
 */

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
