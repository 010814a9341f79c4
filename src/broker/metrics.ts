/**
 * What the domain reports about its own work, in domain terms. The broker calls these hooks; the
 * server side (src/server/metrics.ts) turns them into Prometheus series. Nothing here knows about
 * Prometheus, so domain code and its unit tests stay free of it (STYLE §1).
 *
 * Re-authentication is deliberately not here: it is counted once, at the call boundary, from the
 * REAUTH_REQUIRED errors callers actually receive (src/server/metrics.ts, via the CallObserver),
 * so a cause is never counted twice.
 */

/**
 * How one refresh attempt at the IdP ended (RFC 6749 §6):
 * - `refreshed`: new tokens obtained and written;
 * - `rejected`: the IdP refused the grant (`invalid_grant`, revoked, expired);
 * - `unavailable`: the IdP was unreachable, answered 5xx or timed out;
 * - `fenced`: tokens obtained but the fenced write lost (lock lost or a newer generation);
 * - `error`: anything else (a bug or an unexpected IdP answer).
 */
export type RefreshOutcome = 'refreshed' | 'rejected' | 'unavailable' | 'fenced' | 'error';

/**
 * How one downstream token exchange at the IdP ended (RFC 8693 / Entra on-behalf-of):
 * - `exchanged`: a downstream token obtained and written;
 * - `rejected`: the IdP refused the exchange (`invalid_grant`, `invalid_target`, …);
 * - `unavailable`: the IdP was unreachable, answered 5xx or timed out;
 * - `fenced`: obtained, but the write lost (lock lost, or the user was revoked meanwhile);
 * - `error`: anything else.
 */
export type ExchangeOutcome = 'exchanged' | 'rejected' | 'unavailable' | 'fenced' | 'error';

/** Store operations, as labels for store errors. */
export type StoreOperation =
  'get' | 'put' | 'put_fenced' | 'delete' | 'login_state' | 'lock' | 'unlock' | 'wait' | 'ping';

export interface BrokerMetrics {
  /** One refresh attempt at `provider` ended with `outcome`. */
  refresh(provider: string, outcome: RefreshOutcome): void;
  /** Time a caller spent waiting for the per-user refresh lock (taken or given up), in ms. */
  lockWait(ms: number): void;
  /** A call joined a refresh already in flight in this process instead of starting its own. */
  coalescedWaiter(): void;
  /** A store operation failed (unreachable, timeout, unexpected reply). */
  storeError(op: StoreOperation): void;
  /** A token was handed to a caller with `remainingMs` of lifetime left. */
  tokenServed(remainingMs: number): void;
  /**
   * Not a domain event: the composition root hands these hooks to the store too, and a store
   * with a record cache registers where its counters are read from, at scrape time (the hot
   * path only bumps plain numbers).
   */
  storeCache?(read: () => StoreCacheCounts): void;
  /** One token exchange for `downstream` of `provider` ended with `outcome`. */
  exchange(provider: string, downstream: string, outcome: ExchangeOutcome): void;
  /** GetDownstreamToken served a downstream token from the store (`cached`) or just exchanged. */
  downstreamServed(provider: string, downstream: string, source: 'cached' | 'exchanged'): void;
}

/** The Redis store's record cache, read at scrape time (src/store/record-cache.ts). */
export interface StoreCacheCounts {
  readonly hits: number;
  readonly misses: number;
  readonly invalidations: number;
  readonly flushes: number;
  readonly entries: number;
  /** Whether the cache serves (its invalidation link is up). */
  readonly active: boolean;
}

/** Discards everything: the default for unit tests and for code paths without metrics. */
export const noopBrokerMetrics: BrokerMetrics = Object.freeze({
  refresh() {},
  lockWait() {},
  coalescedWaiter() {},
  storeError() {},
  tokenServed() {},
  exchange() {},
  downstreamServed() {},
});
