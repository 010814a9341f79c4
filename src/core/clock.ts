/**
 * Time, as the domain sees it: token expiry decisions read `now()`, and every wait the domain
 * and the memory store make (a caller's deadline, lock lease renewal, waiting for a lock to be
 * released) is a timer of the same clock. So a test clock that owns both can run a whole refresh
 * storm on virtual time (test/helpers/fake-clock.ts), and production uses the real ones.
 */

/** A scheduled call; `cancel()` is idempotent and harmless after the call ran. */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /**
   * Calls `fn` once, `ms` milliseconds of this clock's time from now (0 or less: as soon as
   * possible, but never synchronously), unless cancelled first. `fn` must not throw.
   */
  setTimer(ms: number, fn: () => void): Timer;
}

/** Node's timers can wait at most 2^31-1 ms; a longer timeout would fire after 1 ms. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** `Date.now()` and Node's `setTimeout` (the timer keeps the process alive, as a plain one). */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  setTimer(ms: number, fn: () => void): Timer {
    const handle = setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMEOUT_MS));
    return { cancel: () => clearTimeout(handle) };
  },
});

/**
 * Calls `fn` every `periodMs` of `clock`'s time (first call one period from now) until the
 * returned timer is cancelled.
 */
export function every(clock: Clock, periodMs: number, fn: () => void): Timer {
  let current: Timer;
  let cancelled = false;
  const tick = (): void => {
    if (cancelled) return;
    current = clock.setTimer(periodMs, tick);
    fn();
  };
  current = clock.setTimer(periodMs, tick);
  return {
    cancel() {
      cancelled = true;
      current.cancel();
    },
  };
}
