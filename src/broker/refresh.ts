/**
 * Refresh under a per-user lock (docs/architecture.md §4). Callers in one process share one flight per user;
 * flights on different processes meet at the store's lock (the loop is ./user-lock.ts, shared
 * with downstream token exchange): the holder refreshes at the IdP with
 * its lease renewed while the call is in flight, writes the result fenced on its lock and the
 * generation it read, releases the lock and so wakes the waiters, who re-read the record.
 *
 * Invariants: at most one IdP refresh per user at a time across every replica; a rotated refresh
 * token is never lost by an unfenced overwrite, and a refresh that lands after a revoke cannot
 * resurrect the record; nobody is handed a token that has already expired.
 */
import type { Logger } from '../logger.js';
import { hashUserId } from '../logger.js';
import type { IdpClient } from '../core/idp-client.js';
import { IdpError } from '../core/idp-client.js';
import type { NewTokenRecord, TokenRecord, TokenStore } from '../core/token-store.js';
import type { CallContext, TokenSource } from './api.js';
import type { AuditLog } from './audit.js';
import type { Clock } from '../core/clock.js';
import {
  BrokerError,
  ErrorReason,
  isBrokerError,
  ReauthCause,
  reauthRequired,
  type SubjectRef,
} from '../core/errors.js';
import { mergeRefreshed, recordTtlMs } from './merge.js';
import type { BrokerMetrics, RefreshOutcome, StoreOperation } from './metrics.js';
import { createSingleflight, waitWithin, type Singleflight } from './singleflight.js';
import { countStoreErrors, releaseLock, withUserLock, type UserLockContext } from './user-lock.js';

/** RetryInfo when the IdP is unavailable and sent no Retry-After. */
export const DEFAULT_IDP_RETRY_MS = 1000;
/**
 * How long, in lock leases, the store remembers that a rejected refresh deleted a record: a
 * caller waiting for that refresh re-reads within a poll interval (a quarter lease) of its release.
 */
const REJECTED_CAUSE_TTL_LEASES = 2;

/** The token part of a record: what a caller is handed. */
export type ServedToken = Pick<
  TokenRecord,
  'accessToken' | 'tokenType' | 'expiresAt' | 'scopes' | 'loginEpoch'
>;

export interface RefreshResult {
  readonly token: ServedToken;
  readonly source: TokenSource;
  /** The IdP was unreachable and the still-unexpired stored token is served instead. */
  readonly degraded: boolean;
}

export interface RefresherOptions {
  readonly store: TokenStore;
  readonly clock: Clock;
  /** Lease of the per-user lock; renewed every third of it while the IdP call is in flight. */
  readonly lockLeaseMs: number;
  /** Lifetime of a record whose refresh token has no known expiry. */
  readonly maxRecordTtlMs: number;
  readonly logger: Logger;
  readonly metrics: BrokerMetrics;
  readonly audit: AuditLog;
}

export interface Refresher {
  /**
   * Returns a token for `ref` valid for `marginMs`, refreshing it once across every caller and
   * replica. `seen` is the stale record the caller read on the hot path.
   * @throws BrokerError REAUTH_REQUIRED (NO_TOKEN, NO_REFRESH_TOKEN, REFRESH_REJECTED),
   *   IDP_UNAVAILABLE, REFRESH_IN_PROGRESS (the wait would outlive ctx.deadline), STORE_UNAVAILABLE
   */
  refresh(
    ref: SubjectRef,
    idp: IdpClient,
    seen: TokenRecord,
    marginMs: number,
    ctx: CallContext,
  ): Promise<RefreshResult>;
  /** Settles when every refresh running now has finished (graceful shutdown). */
  idle(): Promise<void>;
}

/** What every caller of one flight shares; joiners extend it. */
interface FlightState {
  /** The latest deadline of any caller still interested, epoch ms. */
  deadline: number;
  /** The largest margin any caller asked for. */
  marginMs: number;
  /** The generation that was found stale; any other generation is a peer's newer write. */
  readonly staleGeneration: number;
  readonly requestId: string;
  readonly caller: string | undefined;
}

/** Audit outcomes of a refresh (src/broker/audit.ts): `ok`, or what went wrong. */
const auditOutcome: Record<RefreshOutcome, string> = {
  refreshed: 'ok',
  rejected: 'rejected',
  unavailable: 'unavailable',
  fenced: 'fenced',
  error: 'failed',
};

/** Everything the refresh functions need, explicitly (issue 13: no 275-line closure). */
interface RefreshContext extends UserLockContext {
  readonly maxRecordTtlMs: number;
  readonly audit: AuditLog;
  readonly flights: Singleflight<RefreshResult, FlightState>;
}

export function createRefresher(options: RefresherOptions): Refresher {
  const ctx: RefreshContext = { ...options, flights: createSingleflight<RefreshResult, FlightState>() };
  return {
    refresh: (ref, idp, seen, marginMs, call) => refresh(ctx, ref, idp, seen, marginMs, call),
    idle: () => ctx.flights.idle(),
  };
}

/** Joins (or starts) the user's flight and waits for it until the caller's own deadline. */
function refresh(
  ctx: RefreshContext,
  ref: SubjectRef,
  idp: IdpClient,
  seen: TokenRecord,
  marginMs: number,
  call: CallContext,
): Promise<RefreshResult> {
  const flight = ctx.flights.join(
    JSON.stringify([ref.provider, ref.userId]),
    () => ({
      deadline: call.deadline,
      marginMs,
      staleGeneration: seen.generation,
      requestId: call.requestId,
      caller: call.caller,
    }),
    (state) =>
      runFlight(ctx, ref, idp, state).catch((err: unknown) => {
        if (isBrokerError(err, ErrorReason.STORE_UNAVAILABLE)) {
          log(ctx, ref).warn({ err }, 'token store failed during refresh; every caller waiting on it fails');
        }
        throw err;
      }),
  );
  if (!flight.leader) {
    ctx.metrics.coalescedWaiter();
    flight.state.deadline = Math.max(flight.state.deadline, call.deadline);
    flight.state.marginMs = Math.max(flight.state.marginMs, marginMs);
  }
  return waitWithin(flight.promise, call.deadline, call.signal, ctx.clock, () => refreshInProgress(ref));
}

/**
 * A record the flight may hand out: a newer generation than the stale one (a peer or a login
 * wrote it, and refreshing again could not do better) that has not expired, or any record with
 * the margin asked for.
 */
function usable(ctx: RefreshContext, rec: TokenRecord, state: FlightState): boolean {
  const left = rec.expiresAt - ctx.clock.now();
  return left > state.marginMs || (rec.generation !== state.staleGeneration && left > 0);
}

function served(rec: TokenRecord, state: FlightState): RefreshResult {
  return {
    token: rec,
    source: rec.generation === state.staleGeneration ? 'STORED' : 'REFRESHED',
    degraded: false,
  };
}

/** Counts a store operation that failed with STORE_UNAVAILABLE, and rethrows. */
function counted<T>(ctx: RefreshContext, op: StoreOperation, operation: Promise<T>): Promise<T> {
  return countStoreErrors(ctx.metrics, op, operation);
}

function log(ctx: RefreshContext, ref: SubjectRef): Logger {
  return ctx.logger.child({ provider: ref.provider, user: hashUserId(ref.userId) });
}

function count(
  ctx: RefreshContext,
  ref: SubjectRef,
  state: FlightState,
  outcome: RefreshOutcome,
  cause?: string,
): void {
  ctx.metrics.refresh(ref.provider, outcome);
  ctx.audit.record({
    event: 'refresh',
    outcome: auditOutcome[outcome],
    caller: state.caller,
    rpc: 'GetValidSubjectToken',
    userId: ref.userId,
    provider: ref.provider,
    cause,
    requestId: state.requestId,
  });
}

/** Takes the lock, or waits for its holder and re-reads, until the flight's deadline. */
function runFlight(
  ctx: RefreshContext,
  ref: SubjectRef,
  idp: IdpClient,
  state: FlightState,
): Promise<RefreshResult> {
  return withUserLock(ctx, ref, {
    deadline: () => state.deadline,
    timedOut: () => refreshInProgress(ref),
    afterWait: async () => {
      const rec = await counted(ctx, 'get', ctx.store.getToken(ref));
      if (rec === undefined) throw await gone(ctx, ref);
      return usable(ctx, rec, state) ? served(rec, state) : undefined;
    },
    underLock: (owner) => underLock(ctx, ref, idp, state, owner),
  });
}

/**
 * The error for a record found gone after waiting for another caller's refresh, or under the
 * lock it released: REFRESH_REJECTED when that refresh was rejected by the IdP and deleted it —
 * on whichever replica it ran (the store remembers the cause for REJECTED_CAUSE_TTL_LEASES
 * leases) — else NO_TOKEN. Callers of the same replica share the refresh's own error instead
 * (the single flight).
 */
async function gone(ctx: RefreshContext, ref: SubjectRef): Promise<BrokerError> {
  let cause: ReauthCause | undefined;
  try {
    cause = await counted(ctx, 'get', ctx.store.deletedBecause?.(ref) ?? Promise.resolve(undefined));
  } catch (err) {
    // Only the cause is unknown: the record is gone either way, and the caller is told so.
    log(ctx, ref).warn({ err }, 'reading why the record was deleted failed; answering NO_TOKEN');
  }
  return reauthRequired(cause ?? ReauthCause.NO_TOKEN, ref);
}

async function underLock(
  ctx: RefreshContext,
  ref: SubjectRef,
  idp: IdpClient,
  state: FlightState,
  owner: string,
): Promise<RefreshResult> {
  // Double-check under the lock: the previous holder may have refreshed already.
  const rec = await counted(ctx, 'get', ctx.store.getToken(ref));
  if (rec === undefined) throw await gone(ctx, ref);
  if (usable(ctx, rec, state)) return served(rec, state);
  if (rec.refreshToken === undefined || rec.refreshToken === '') {
    throw reauthRequired(ReauthCause.NO_REFRESH_TOKEN, ref);
  }
  let tokens;
  try {
    tokens = await idp.refresh(rec.refreshToken);
  } catch (err) {
    return await refreshFailed(ctx, ref, state, rec, err);
  }
  return await write(ctx, ref, idp, state, rec, owner, tokens);
}

async function write(
  ctx: RefreshContext,
  ref: SubjectRef,
  idp: IdpClient,
  state: FlightState,
  rec: TokenRecord,
  owner: string,
  tokens: Awaited<ReturnType<IdpClient['refresh']>>,
): Promise<RefreshResult> {
  const now = ctx.clock.now();
  const next = mergeRefreshed(rec, tokens, now);
  const fresh: RefreshResult = { token: next, source: 'REFRESHED', degraded: false };
  let written: boolean;
  try {
    written = await fencedWrite(ctx, ref, owner, rec, next, now);
  } catch (err) {
    // The IdP has issued (and may have rotated) tokens; failing the call would waste them.
    // The store keeps the old record: the next refresh may be rejected and ask for re-login.
    count(ctx, ref, state, 'refreshed');
    ctx.metrics.storeError('put_fenced');
    log(ctx, ref).error({ err }, 'refreshed token could not be stored; serving it unsaved');
    return fresh;
  }
  if (written) {
    count(ctx, ref, state, 'refreshed');
    return fresh;
  }
  const current = await counted(ctx, 'get', ctx.store.getToken(ref));
  if (current === undefined) {
    // Revoked while the IdP call was in flight: the record stays deleted, and the grant the
    // refresh just produced is revoked too (RFC 7009), best-effort.
    count(ctx, ref, state, 'fenced');
    if (tokens.refreshToken !== undefined && tokens.refreshToken !== rec.refreshToken) {
      void idp.revoke(tokens.refreshToken, 'refresh_token').catch(() => undefined);
    }
    throw reauthRequired(ReauthCause.NO_TOKEN, ref);
  }
  if (current.generation !== rec.generation) {
    count(ctx, ref, state, 'fenced');
    if (current.expiresAt > now) return served(current, state);
    return fresh;
  }
  // The lease ran out during the IdP call (the holder stalled) but nobody has written since:
  // take the lock again and store the new tokens, or a rotated refresh token would be lost.
  if (await rewrite(ctx, ref, rec, next, now)) {
    count(ctx, ref, state, 'refreshed');
    return fresh;
  }
  count(ctx, ref, state, 'fenced');
  log(ctx, ref).warn('refresh lock lost before the write; serving the refreshed token unsaved');
  return fresh;
}

/** Writes `next` over exactly `rec`'s generation while `owner` holds the lock. */
function fencedWrite(
  ctx: RefreshContext,
  ref: SubjectRef,
  owner: string,
  rec: TokenRecord,
  next: NewTokenRecord,
  now: number,
): Promise<boolean> {
  return ctx.store.putTokenFenced(
    ref,
    owner,
    rec.generation,
    next,
    recordTtlMs(next, now, ctx.maxRecordTtlMs),
  );
}

/** One more fenced write of `next` over `rec` under a freshly taken lock. @returns whether it landed */
async function rewrite(
  ctx: RefreshContext,
  ref: SubjectRef,
  rec: TokenRecord,
  next: NewTokenRecord,
  now: number,
): Promise<boolean> {
  const owner = await counted(ctx, 'lock', ctx.store.acquireLock(ref, ctx.lockLeaseMs)).catch(
    () => undefined,
  );
  if (owner === undefined) return false;
  try {
    return await fencedWrite(ctx, ref, owner, rec, next, now);
  } catch (err) {
    ctx.metrics.storeError('put_fenced');
    log(ctx, ref).warn({ err }, 'refreshed token could not be stored after the lock was lost');
    return false;
  } finally {
    await releaseLock(ctx, ref, owner);
  }
}

async function refreshFailed(
  ctx: RefreshContext,
  ref: SubjectRef,
  state: FlightState,
  rec: TokenRecord,
  err: unknown,
): Promise<RefreshResult> {
  // An answer that failed verification (invalidResponse) is not the IdP refusing the grant:
  // the grant may be fine, so it is handled like an outage, not by deleting the record.
  if (err instanceof IdpError && err.kind === 'rejected' && !err.invalidResponse) {
    // RFC 6749 §5.2 invalid_grant and friends: this grant is dead, unless someone replaced it
    // meanwhile (a login while we were refreshing).
    count(ctx, ref, state, 'rejected', err.oauthError);
    log(ctx, ref).info({ oauthError: err.oauthError }, 'refresh rejected by the identity provider');
    const current = await counted(ctx, 'get', ctx.store.getToken(ref, { fresh: true }));
    if (
      current !== undefined &&
      current.generation !== rec.generation &&
      current.expiresAt > ctx.clock.now()
    ) {
      return served(current, state);
    }
    // The cause stays with the store for a while: callers waiting on other replicas learn it.
    if (current !== undefined)
      await counted(
        ctx,
        'delete',
        ctx.store.deleteTokenIfGeneration(ref, rec.generation, {
          cause: ReauthCause.REFRESH_REJECTED,
          ttlMs: REJECTED_CAUSE_TTL_LEASES * ctx.lockLeaseMs,
        }),
      );
    throw reauthRequired(ReauthCause.REFRESH_REJECTED, ref, err);
  }
  // Network error, timeout, 5xx, 429 — or something unexpected: the grant may well be fine, so
  // the record is kept. An unexpired token is not stale; an outage must not log users out.
  const transient = err instanceof IdpError && err.kind === 'unavailable';
  count(ctx, ref, state, transient ? 'unavailable' : 'error');
  if (transient) log(ctx, ref).warn({ err }, 'identity provider unavailable for refresh');
  else log(ctx, ref).error({ err }, 'refresh failed unexpectedly');
  if (rec.expiresAt > ctx.clock.now()) return { token: rec, source: 'STORED', degraded: true };
  throw new BrokerError(
    ErrorReason.IDP_UNAVAILABLE,
    'the identity provider is unavailable; try again later',
    {
      metadata: { provider: ref.provider, userId: ref.userId },
      retryAfterMs: (transient ? err.retryAfterMs : undefined) ?? DEFAULT_IDP_RETRY_MS,
      cause: err,
    },
  );
}

// Kept here too for the modules that import it from the refresh engine.
export { countStoreErrors };

/** DEADLINE_EXCEEDED / REFRESH_IN_PROGRESS: never a stale token instead. */
export function refreshInProgress(ref: SubjectRef): BrokerError {
  return new BrokerError(
    ErrorReason.REFRESH_IN_PROGRESS,
    'the token is being refreshed and the wait would outlive the call deadline',
    { metadata: { provider: ref.provider, userId: ref.userId } },
  );
}
