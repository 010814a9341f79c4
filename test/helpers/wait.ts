/**
 * Waiting on real components (a Redis lease, a child process, a socket) without fixed sleeps: poll
 * a condition until it holds, within a bound, and fail naming what was awaited.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitOptions {
  /** Give up after this long (real time); default 5000 ms. */
  readonly timeoutMs?: number;
  /** Pause between polls; default 10 ms. */
  readonly intervalMs?: number;
  /** What is awaited, for the error message. */
  readonly what?: string;
}

/**
 * Resolves as soon as `predicate` returns true (checked at once, then every `intervalMs`).
 * @throws Error when it is still false after `timeoutMs`; an error thrown by `predicate` propagates.
 */
export async function waitUntil(
  predicate: () => boolean | Promise<boolean>,
  { timeoutMs = 5000, intervalMs = 10, what = 'condition' }: WaitOptions = {},
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (performance.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}
