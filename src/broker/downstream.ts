/**
 * GetDownstreamToken: a token for a downstream API of the user's provider, obtained by exchanging
 * the user's subject token at the IdP (RFC 8693 token exchange, or Entra on-behalf-of) and kept
 * like a subject token — sealed in the store under its own key (SubjectRef.downstream; the
 * envelope binds the downstream id), reused while valid for the margin, re-exchanged once per
 * user × downstream across every replica under the same lock discipline as refresh
 * (./user-lock.ts), written fenced, and deleted with the user's RevokeSubjectToken (./revoke.ts).
 *
 * The subject token comes from the GetValidSubjectToken path (refreshed under its own lock when
 * needed), never raw from the store. Lock order is always downstream → subject, so the two locks
 * cannot deadlock.
 */
import type { IdpClient, IdpRegistry, ExchangedToken } from '../core/idp-client.js';
import { IdpError } from '../core/idp-client.js';
import type { Logger } from '../logger.js';
import { hashUserId } from '../logger.js';
import type {
  DownstreamWrite,
  ExpectedDownstream,
  NewTokenRecord,
  TokenRecord,
  TokenStore,
} from '../core/token-store.js';
import type {
  BrokerApi,
  CallContext,
  DownstreamTokenInput,
  DownstreamTokenResult,
  DownstreamTokenSource,
} from './api.js';
import { noAudit, type AuditLog } from './audit.js';
import { systemClock, type Clock } from '../core/clock.js';
import {
  BrokerError,
  ErrorReason,
  invalidRequest,
  isBrokerError,
  ReauthCause,
  reauthRequired,
  type SubjectRef,
} from '../core/errors.js';
import { DEFAULT_TOKEN_TYPE } from './merge.js';
import { noopBrokerMetrics, type BrokerMetrics, type ExchangeOutcome } from './metrics.js';
import { createSingleflight, waitWithin } from './singleflight.js';
import { countStoreErrors, withUserLock, type UserLockContext } from './user-lock.js';

/** RFC 8693 §3: the token type reported when the IdP names none. */
export const ACCESS_TOKEN_TYPE_URI = 'urn:ietf:params:oauth:token-type:access_token';
/** RetryInfo when the IdP is unavailable and sent no Retry-After. */
export const DEFAULT_EXCHANGE_RETRY_MS = 1000;
/** ErrorInfo.metadata.cause on EXCHANGE_REJECTED when the IdP's answer did not verify. */
export const INVALID_IDP_RESPONSE = 'INVALID_IDP_RESPONSE';
/** A record is kept at least this long, so a token issued with a tiny lifetime is still written. */
const MIN_RECORD_TTL_MS = 1000;

export interface DownstreamServiceOptions {
  readonly store: TokenStore;
  readonly idps: IdpRegistry;
  /** False when storage is off or no key is configured: there is no subject token to exchange. */
  readonly storageEnabled: boolean;
  /** `refresh.lock_lease`, ms: the same lease as the refresh lock. */
  readonly lockLeaseMs: number;
  /** The subject-token path (createTokenService): a valid subject token, refreshed if needed. */
  readonly subjectTokens: Pick<BrokerApi, 'getValidSubjectToken'>;
  readonly clock?: Clock;
  readonly logger: Logger;
  readonly metrics?: BrokerMetrics;
  /** Records one `token_exchange` entry per exchange attempt at an IdP. */
  readonly audit?: AuditLog;
}

export interface DownstreamService {
  getDownstreamToken(input: DownstreamTokenInput, ctx: CallContext): Promise<DownstreamTokenResult>;
  /** Settles once every exchange in flight has finished and released its lock (shutdown). */
  idle(): Promise<void>;
}

/** What every caller of one flight shares; joiners extend it. */
interface FlightState {
  deadline: number;
  marginMs: number;
  /** The generation found stale on the hot path (undefined: nothing cached). */
  readonly staleGeneration: number | undefined;
  /** The leader's call: the subject token is fetched with it. */
  readonly ctx: CallContext;
}

interface Served {
  readonly record: Pick<
    TokenRecord,
    'accessToken' | 'tokenType' | 'expiresAt' | 'scopes' | 'issuedTokenType' | 'generation'
  >;
  readonly source: DownstreamTokenSource;
  readonly degraded: boolean;
}

const auditOutcome: Record<ExchangeOutcome, string> = {
  exchanged: 'ok',
  rejected: 'rejected',
  unavailable: 'unavailable',
  fenced: 'fenced',
  error: 'failed',
};

/** Module-level context of the service: everything its functions need, explicitly. */
interface DownstreamContext extends UserLockContext {
  readonly idps: IdpRegistry;
  readonly subjectTokens: Pick<BrokerApi, 'getValidSubjectToken'>;
  readonly audit: AuditLog;
}

export function createDownstreamService(options: DownstreamServiceOptions): DownstreamService {
  const ctx: DownstreamContext = {
    store: options.store,
    idps: options.idps,
    clock: options.clock ?? systemClock,
    lockLeaseMs: options.lockLeaseMs,
    metrics: options.metrics ?? noopBrokerMetrics,
    logger: options.logger,
    audit: options.audit ?? noAudit,
    subjectTokens: options.subjectTokens,
  };
  const flights = createSingleflight<Served, FlightState>();

  return {
    /**
     * @throws BrokerError INVALID_REQUEST (unknown downstream), REAUTH_REQUIRED (the subject
     *   token's causes), EXCHANGE_REJECTED, IDP_UNAVAILABLE, STORE_UNAVAILABLE,
     *   REFRESH_IN_PROGRESS
     */
    async getDownstreamToken(input, call) {
      const subject: SubjectRef = { provider: input.provider, userId: input.userId };
      const idp = downstreamIdp(ctx.idps, input);
      if (!options.storageEnabled) throw reauthRequired(ReauthCause.STORE_DISABLED, subject);
      const ref: SubjectRef = { ...subject, downstream: input.downstream };
      const marginMs = Math.max(input.minValidForMs, idp.skewMs);
      // The hot path, no IdP call: the downstream record and the subject record, read together
      // (both are in the Redis store's record cache). A downstream token is served only while
      // the subject record it was exchanged from is still there with the same login epoch:
      // whatever deleted or replaced it (revoke, refresh refused by the IdP, expiry, re-login)
      // takes the downstream tokens with it, even where their own delete failed.
      const [cached, epoch] = await Promise.all([readCached(ctx, ref), subjectEpochNow(ctx, ref)]);
      if (epoch === undefined) throw reauthRequired(ReauthCause.NO_TOKEN, subject);
      if (bound(cached, epoch) && cached.expiresAt - ctx.clock.now() > marginMs) {
        return result(ctx, ref, { record: cached, source: 'CACHED', degraded: false });
      }
      const flight = flights.join(
        JSON.stringify([ref.provider, ref.userId, ref.downstream]),
        () => ({
          deadline: call.deadline,
          marginMs,
          staleGeneration: typeof cached === 'object' ? cached.generation : undefined,
          ctx: call,
        }),
        (state) => exchangeOnce(ctx, ref, idp, state),
      );
      if (!flight.leader) {
        ctx.metrics.coalescedWaiter();
        flight.state.deadline = Math.max(flight.state.deadline, call.deadline);
        flight.state.marginMs = Math.max(flight.state.marginMs, marginMs);
      }
      const served = await waitWithin(flight.promise, call.deadline, call.signal, ctx.clock, () =>
        exchangeInProgress(ref),
      );
      return result(ctx, ref, served);
    },
    idle: () => flights.idle(),
  };
}

/** The provider's client, when it has the downstream. @throws INVALID_REQUEST naming `downstream` */
function downstreamIdp(idps: IdpRegistry, input: DownstreamTokenInput): IdpClient {
  const idp = idps.get(input.provider);
  if (idp.exchange === undefined || !(idp.downstreams ?? []).includes(input.downstream)) {
    throw invalidRequest([
      {
        field: 'downstream',
        description: `unknown downstream ${JSON.stringify(input.downstream.slice(0, 64))} of provider ${JSON.stringify(input.provider)}`,
      },
    ]);
  }
  return idp;
}

function result(ctx: DownstreamContext, ref: SubjectRef, served: Served): DownstreamTokenResult {
  const { record } = served;
  ctx.metrics.downstreamServed(
    ref.provider,
    ref.downstream!,
    served.source === 'CACHED' ? 'cached' : 'exchanged',
  );
  ctx.metrics.tokenServed(record.expiresAt - ctx.clock.now());
  return {
    accessToken: record.accessToken,
    tokenType: record.tokenType,
    expiresAt: new Date(record.expiresAt),
    scopes: record.scopes,
    source: served.source,
    issuedTokenType: record.issuedTokenType ?? ACCESS_TOKEN_TYPE_URI,
    degraded: served.degraded,
  };
}

/** A downstream record that exists but that this process cannot open. */
const UNREADABLE = 'unreadable';
type Cached = TokenRecord | typeof UNREADABLE | undefined;

/**
 * The cached downstream record. One that cannot be opened (tampered, or sealed under a key this
 * replica does not have yet during a rolling key rotation) is not a reason to log the user out,
 * nor to delete it outside the lock — a peer that can open it may be serving it: it is a miss,
 * exchanged anew and overwritten under the lock (putDownstreamToken with `present`).
 */
async function readCached(ctx: DownstreamContext, ref: SubjectRef): Promise<Cached> {
  try {
    return await countStoreErrors(ctx.metrics, 'get', ctx.store.getToken(ref));
  } catch (err) {
    if (!isBrokerError(err, ErrorReason.REAUTH_REQUIRED)) throw err;
    log(ctx, ref).warn({ err }, 'cached downstream token cannot be opened; exchanging anew');
    return UNREADABLE;
  }
}

/** What putDownstreamToken may replace, given what was read. */
function expectedFrom(rec: Cached): ExpectedDownstream {
  if (rec === UNREADABLE) return 'present';
  return rec?.generation ?? 'absent';
}

/** Whether `rec` was exchanged under the subject's login epoch `epoch` (the one stored now). */
function bound(rec: Cached, epoch: number): rec is TokenRecord {
  return typeof rec === 'object' && (rec.loginEpoch ?? 0) === epoch;
}

/**
 * The downstream record and the subject's login epoch now, read together.
 * @throws REAUTH_REQUIRED / NO_TOKEN when there is no subject record
 */
async function readWithEpoch(
  ctx: DownstreamContext,
  ref: SubjectRef,
): Promise<{ rec: Cached; epoch: number }> {
  const [rec, epoch] = await Promise.all([readCached(ctx, ref), subjectEpochNow(ctx, ref)]);
  if (epoch === undefined) {
    throw reauthRequired(ReauthCause.NO_TOKEN, { provider: ref.provider, userId: ref.userId });
  }
  return { rec, epoch };
}

/**
 * A record the flight may hand out: valid for the largest margin asked, or a newer generation
 * than the stale one (a peer just exchanged, and exchanging again could not do better) that has
 * not expired.
 */
function usable(ctx: DownstreamContext, rec: TokenRecord, state: FlightState): boolean {
  const left = rec.expiresAt - ctx.clock.now();
  return left > state.marginMs || (rec.generation !== state.staleGeneration && left > 0);
}

function served(rec: TokenRecord, state: FlightState): Served {
  return {
    record: rec,
    source: rec.generation === state.staleGeneration ? 'CACHED' : 'EXCHANGED',
    degraded: false,
  };
}

function log(ctx: DownstreamContext, ref: SubjectRef): Logger {
  return ctx.logger.child({
    provider: ref.provider,
    downstream: ref.downstream,
    user: hashUserId(ref.userId),
  });
}

function count(
  ctx: DownstreamContext,
  ref: SubjectRef,
  state: FlightState,
  outcome: ExchangeOutcome,
  cause?: string,
): void {
  ctx.metrics.exchange(ref.provider, ref.downstream!, outcome);
  ctx.audit.record({
    event: 'token_exchange',
    outcome: auditOutcome[outcome],
    caller: state.ctx.caller,
    rpc: 'GetDownstreamToken',
    userId: ref.userId,
    provider: ref.provider,
    downstream: ref.downstream,
    cause,
    requestId: state.ctx.requestId,
  });
}

/** Never aborts: a flight goes on for every caller still waiting, whoever started it. */
const FLIGHT_SIGNAL = new AbortController().signal;

/**
 * The call context the flight fetches the subject token with: the leader's identity for logs and
 * audit, but the flight's deadline (the latest of its callers') and no cancellation, so the
 * leader cancelling or timing out does not fail the callers still waiting.
 */
function flightContext(state: FlightState): CallContext {
  const leader = state.ctx;
  return {
    get deadline() {
      return state.deadline;
    },
    signal: FLIGHT_SIGNAL,
    get logger() {
      return leader.logger;
    },
    requestId: leader.requestId,
    caller: leader.caller,
  };
}

/** One flight: the lock loop around one exchange at the IdP. */
function exchangeOnce(
  ctx: DownstreamContext,
  ref: SubjectRef,
  idp: IdpClient,
  state: FlightState,
): Promise<Served> {
  return withUserLock(ctx, ref, {
    deadline: () => state.deadline,
    timedOut: () => exchangeInProgress(ref),
    afterWait: async () => {
      const { rec, epoch } = await readWithEpoch(ctx, ref);
      return bound(rec, epoch) && usable(ctx, rec, state) ? served(rec, state) : undefined;
    },
    underLock: (owner) => exchangeUnderLock(ctx, ref, idp, state, owner),
  });
}

async function exchangeUnderLock(
  ctx: DownstreamContext,
  ref: SubjectRef,
  idp: IdpClient,
  state: FlightState,
  owner: string,
  retried = false,
): Promise<Served> {
  // Double-check under the lock: the previous holder may have exchanged already.
  const { rec, epoch } = await readWithEpoch(ctx, ref);
  if (bound(rec, epoch) && usable(ctx, rec, state)) return served(rec, state);
  // The subject token, valid for the provider's skew only (minValidFor 0: the skew is the floor),
  // not for the downstream margin: the exchange needs a token the IdP accepts now, and asking for
  // more would refresh the subject (rotating its refresh token) on every call whose
  // min_valid_for exceeds the subject lifetime the IdP grants. The price: at an IdP that caps an
  // exchanged token's lifetime at the subject token's remaining one, a token exchanged while the
  // subject has less than the margin left cannot meet the margin, so calls in that window (at
  // most margin − skew long, until the subject is refreshed at the skew) exchange anew — one
  // exchange at a time per user × downstream, as always.
  const subject = await ctx.subjectTokens.getValidSubjectToken(
    { provider: ref.provider, userId: ref.userId, minValidForMs: 0 },
    flightContext(state),
  );
  let tokens: ExchangedToken;
  try {
    tokens = await idp.exchange!(ref.downstream!, subject.accessToken);
  } catch (err) {
    // Only a record of the current login may be served degraded.
    return exchangeFailed(ctx, ref, state, bound(rec, epoch) ? rec : undefined, err);
  }
  const loginEpoch = subject.loginEpoch ?? 0;
  const outcome = await write(ctx, ref, state, expectedFrom(rec), owner, tokens, loginEpoch);
  if (outcome !== SUBJECT_CHANGED) return outcome;
  // The user's subject record was deleted, or replaced by a new login, while the IdP call was in
  // flight: what it issued belongs to a grant that is gone and is neither stored nor served.
  count(ctx, ref, state, 'fenced');
  const now = await subjectEpochNow(ctx, ref);
  if (now === undefined) {
    throw reauthRequired(ReauthCause.NO_TOKEN, { provider: ref.provider, userId: ref.userId });
  }
  // A new login: exchange its token instead, once.
  if (!retried && now !== loginEpoch) return exchangeUnderLock(ctx, ref, idp, state, owner, true);
  throw exchangeInProgress(ref);
}

/** write()'s answer when the subject record changed: the caller decides what follows. */
const SUBJECT_CHANGED = Symbol('subject changed');
/** Writes tried when the downstream record keeps moving under the writer (each re-reads it). */
const WRITE_ATTEMPTS = 3;

/**
 * Stores the exchanged token with one atomic store step that checks everything a concurrent
 * revoke, login or peer could have changed (TokenStore.putDownstreamToken): the lock is still
 * ours, the downstream record is the one read, and the subject record still exists with the
 * login epoch of the subject token that was exchanged. Nothing is written and then checked, so
 * no failure or crash can leave a token of a revoked grant behind.
 */
async function write(
  ctx: DownstreamContext,
  ref: SubjectRef,
  state: FlightState,
  expectedFirst: ExpectedDownstream,
  owner: string,
  tokens: ExchangedToken,
  loginEpoch: number,
): Promise<Served | typeof SUBJECT_CHANGED> {
  const now = ctx.clock.now();
  const next: NewTokenRecord = {
    accessToken: tokens.accessToken,
    refreshToken: undefined,
    tokenType: tokens.tokenType ?? DEFAULT_TOKEN_TYPE,
    expiresAt: tokens.expiresAt,
    refreshExpiresAt: undefined,
    scopes: tokens.scopes ?? [],
    idToken: undefined,
    obtainedVia: 'exchange',
    updatedAt: now,
    subject: undefined,
    issuedTokenType: tokens.issuedTokenType,
    loginEpoch,
  };
  // The record lives as long as the token: there is no refresh token to outlive it.
  const ttlMs = Math.max(MIN_RECORD_TTL_MS, next.expiresAt - now);
  const fresh = (generation: number): Served => ({
    record: { ...next, generation },
    source: 'EXCHANGED',
    degraded: false,
  });
  let expected = expectedFirst;
  for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
    let outcome: DownstreamWrite;
    try {
      outcome = await countStoreErrors(
        ctx.metrics,
        'put_fenced',
        ctx.store.putDownstreamToken(ref, owner, expected, next, ttlMs),
      );
    } catch (err) {
      // The IdP has issued the token from a subject token the subject path has just handed out;
      // failing the call would waste it. If the write landed, it passed every check.
      count(ctx, ref, state, 'exchanged');
      log(ctx, ref).error({ err }, 'exchanged downstream token could not be stored; serving it unsaved');
      return fresh(0);
    }
    if (outcome.written) {
      count(ctx, ref, state, 'exchanged');
      return fresh(outcome.generation);
    }
    if (outcome.reason === 'subject') return SUBJECT_CHANGED;
    // A peer wrote after our lease ran out, or the record expired or was deleted meanwhile.
    const current = await readCached(ctx, ref);
    if (bound(current, loginEpoch) && current.expiresAt > now) {
      count(ctx, ref, state, 'fenced');
      return served(current, state);
    }
    if (outcome.reason === 'lock') {
      // The lease ran out and nobody wrote a usable record: the token is served, not stored,
      // and only while the subject still has the epoch it was exchanged under.
      if ((await subjectEpochNow(ctx, ref)) !== loginEpoch) return SUBJECT_CHANGED;
      count(ctx, ref, state, 'fenced');
      log(ctx, ref).warn('downstream lock lost before the write; serving the exchanged token unsaved');
      return fresh(0);
    }
    expected = expectedFrom(current);
  }
  count(ctx, ref, state, 'fenced');
  log(ctx, ref).warn('downstream record kept moving under the write; serving the exchanged token unsaved');
  return fresh(0);
}

/**
 * The login epoch of the user's subject record now, undefined when there is none. A record that
 * exists but cannot be opened has no epoch this process can compare: it counts as changed.
 */
async function subjectEpochNow(ctx: DownstreamContext, ref: SubjectRef): Promise<number | undefined> {
  try {
    const subject = await countStoreErrors(
      ctx.metrics,
      'get',
      ctx.store.getToken({ provider: ref.provider, userId: ref.userId }),
    );
    return subject === undefined ? undefined : (subject.loginEpoch ?? 0);
  } catch (err) {
    if (isBrokerError(err, ErrorReason.REAUTH_REQUIRED)) return Number.NaN;
    throw err;
  }
}

function exchangeFailed(
  ctx: DownstreamContext,
  ref: SubjectRef,
  state: FlightState,
  rec: TokenRecord | undefined,
  err: unknown,
): Served {
  const metadata = { provider: ref.provider, userId: ref.userId, downstream: ref.downstream! };
  if (err instanceof IdpError && err.kind === 'rejected') {
    count(ctx, ref, state, 'rejected', err.oauthError);
    log(ctx, ref).info({ oauthError: err.oauthError }, 'token exchange rejected by the identity provider');
    if (err.invalidResponse) {
      throw new BrokerError(
        ErrorReason.EXCHANGE_REJECTED,
        "the identity provider's token exchange response failed verification",
        { metadata: { ...metadata, cause: INVALID_IDP_RESPONSE }, cause: err },
      );
    }
    // RFC 8693 §2.2.2: invalid_request, invalid_target, invalid_grant, invalid_scope, … — only
    // the code goes back, never the IdP's description.
    throw new BrokerError(
      ErrorReason.EXCHANGE_REJECTED,
      'the identity provider refused to exchange the subject token for this downstream',
      { metadata: { ...metadata, idpError: err.oauthError ?? 'unknown' }, cause: err },
    );
  }
  const transient = err instanceof IdpError && err.kind === 'unavailable';
  count(ctx, ref, state, transient ? 'unavailable' : 'error');
  if (transient) log(ctx, ref).warn({ err }, 'identity provider unavailable for token exchange');
  else log(ctx, ref).error({ err }, 'token exchange failed unexpectedly');
  // An unexpired cached token is not stale: an outage does not take the downstream away.
  if (rec !== undefined && rec.expiresAt > ctx.clock.now()) {
    return { record: rec, source: 'CACHED', degraded: true };
  }
  throw new BrokerError(
    ErrorReason.IDP_UNAVAILABLE,
    'the identity provider is unavailable; try again later',
    {
      metadata,
      retryAfterMs: (transient ? err.retryAfterMs : undefined) ?? DEFAULT_EXCHANGE_RETRY_MS,
      cause: err,
    },
  );
}

/** DEADLINE_EXCEEDED / REFRESH_IN_PROGRESS: another caller's exchange outlived this call's deadline. */
function exchangeInProgress(ref: SubjectRef): BrokerError {
  return new BrokerError(
    ErrorReason.REFRESH_IN_PROGRESS,
    'the downstream token is being exchanged and the wait would outlive the call deadline',
    { metadata: { provider: ref.provider, userId: ref.userId, downstream: ref.downstream ?? '' } },
  );
}
