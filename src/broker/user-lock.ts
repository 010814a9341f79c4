/**
 * The per-user lock discipline (docs/architecture.md §4), shared by refresh (./refresh.ts) and downstream token
 * exchange (./downstream.ts): take the store's lock for the record (SET NX PX, across replicas),
 * or wait for its holder's release notification — bounded by a poll interval, so a holder that
 * died is noticed within a lease — and re-read; under the lock, renew the lease every third of
 * it while the IdP call is in flight, and release it (compare-and-delete + notify) at the end.
 *
 * What happens under the lock and what a waiter accepts after a re-read are the caller's: this
 * module only runs the loop.
 */
import type { Logger } from '../logger.js';
import { hashUserId } from '../logger.js';
import type { TokenStore } from '../core/token-store.js';
import { every, type Clock } from '../core/clock.js';
import { isBrokerError, ErrorReason, type BrokerError, type SubjectRef } from '../core/errors.js';
import type { BrokerMetrics, StoreOperation } from './metrics.js';
import { headroom } from './singleflight.js';

export interface UserLockContext {
  readonly store: TokenStore;
  readonly clock: Clock;
  /** Lease of the lock; renewed every third of it while the holder works. */
  readonly lockLeaseMs: number;
  readonly metrics: BrokerMetrics;
  readonly logger: Logger;
}

/** What one turn of the loop does, decided by the caller. */
export interface LockedWork<R> {
  /** The latest deadline worth waiting for, epoch ms; read on every turn (joiners extend it). */
  deadline(): number;
  /** After a release notification or a poll: a result from the store, or undefined to keep waiting. */
  afterWait(): Promise<R | undefined>;
  /** The work while holding the lock (`owner` is the lock's owner token, for fenced writes). */
  underLock(owner: string): Promise<R>;
  /** The error when waiting any longer would outlive the deadline. */
  timedOut(): BrokerError;
}

/** A waiter re-checks at least this often, so a holder that died is noticed within a lease. */
export function pollIntervalMs(lockLeaseMs: number): number {
  return Math.max(25, Math.floor(lockLeaseMs / 4));
}

/** Counts `operation` in the store-errors metric when it fails with STORE_UNAVAILABLE; rethrows. */
export function countStoreErrors<T>(
  metrics: BrokerMetrics,
  op: StoreOperation,
  operation: Promise<T>,
): Promise<T> {
  return operation.catch((err: unknown) => {
    if (isBrokerError(err, ErrorReason.STORE_UNAVAILABLE)) metrics.storeError(op);
    throw err;
  });
}

function lockLog(ctx: UserLockContext, ref: SubjectRef): Logger {
  return ctx.logger.child({
    provider: ref.provider,
    user: hashUserId(ref.userId),
    ...(ref.downstream === undefined ? {} : { downstream: ref.downstream }),
  });
}

/**
 * Takes `ref`'s lock and runs `work.underLock`, or waits for the holder and re-reads, until
 * `work.deadline()`. Lock wait time is reported to `metrics.lockWait`.
 * @throws whatever `work` throws, `work.timedOut()`, BrokerError STORE_UNAVAILABLE
 */
export async function withUserLock<R>(
  ctx: UserLockContext,
  ref: SubjectRef,
  work: LockedWork<R>,
): Promise<R> {
  const { store, clock, lockLeaseMs, metrics } = ctx;
  const pollMs = pollIntervalMs(lockLeaseMs);
  const started = performance.now();
  for (;;) {
    const owner = await countStoreErrors(metrics, 'lock', store.acquireLock(ref, lockLeaseMs));
    if (owner !== undefined) {
      metrics.lockWait(performance.now() - started);
      return holdingLock(ctx, ref, owner, () => work.underLock(owner));
    }
    const left = work.deadline() - clock.now();
    const remaining = left - headroom(left);
    if (remaining <= 0) {
      metrics.lockWait(performance.now() - started);
      throw work.timedOut();
    }
    // The holder publishes on release; the bounded wait covers a holder that died (its lease
    // runs out) and a release published before this subscription.
    await countStoreErrors(metrics, 'wait', store.waitForUnlock(ref, Math.min(remaining, pollMs)));
    const result = await work.afterWait();
    if (result !== undefined) {
      metrics.lockWait(performance.now() - started);
      return result;
    }
  }
}

/**
 * Runs `fn` while holding `ref`'s lock as `owner`: the lease is renewed every third of it, and
 * the lock is released afterwards whatever `fn` did.
 */
export async function holdingLock<R>(
  ctx: UserLockContext,
  ref: SubjectRef,
  owner: string,
  fn: () => Promise<R>,
): Promise<R> {
  const renewal = every(ctx.clock, Math.max(1, Math.floor(ctx.lockLeaseMs / 3)), () =>
    renewLock(ctx, ref, owner),
  );
  try {
    return await fn();
  } finally {
    renewal.cancel();
    await releaseLock(ctx, ref, owner);
  }
}

function renewLock(ctx: UserLockContext, ref: SubjectRef, owner: string): void {
  ctx.store.renewLock(ref, owner, ctx.lockLeaseMs).then(
    (held) => {
      if (!held)
        lockLog(ctx, ref).warn('lock lost while the IdP call was in flight; the write will be fenced');
    },
    (err: unknown) => {
      ctx.metrics.storeError('lock');
      lockLog(ctx, ref).warn({ err }, 'lock renewal failed');
    },
  );
}

/** Releases the lock; a failure is logged (the lease ends it anyway), never thrown. */
export async function releaseLock(ctx: UserLockContext, ref: SubjectRef, owner: string): Promise<void> {
  try {
    await ctx.store.releaseLock(ref, owner);
  } catch (err) {
    // Waiters notice through their bounded wait.
    ctx.metrics.storeError('unlock');
    lockLog(ctx, ref).warn({ err }, 'lock release failed; it expires with its lease');
  }
}
