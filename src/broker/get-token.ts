/**
 * GetValidSubjectToken and RevokeSubjectToken (docs/architecture.md §4): the token service. The hot path is a
 * record the store holds in process (peekToken), answered without a promise, else one store
 * read; anything that is not valid for the margin asked goes to the refresher
 * (./refresh.ts), which refreshes once per user across every replica.
 */
import type { IdpRegistry } from '../core/idp-client.js';
import type { Logger } from '../logger.js';
import type { TokenRecord, TokenStore } from '../core/token-store.js';
import type { BrokerApi, CallContext, GetTokenInput, GetTokenResult } from './api.js';
import { noAudit, type AuditLog } from './audit.js';
import { systemClock, type Clock } from '../core/clock.js';
import { ErrorReason, isBrokerError, ReauthCause, reauthRequired, type SubjectRef } from '../core/errors.js';
import { noopBrokerMetrics, type BrokerMetrics } from './metrics.js';
import { createRefresher, type ServedToken } from './refresh.js';
import { revokeSubjectToken } from './revoke.js';

/** docs/architecture.md §3: records whose refresh token has no known expiry are kept at most 30 days. */
export const DEFAULT_MAX_RECORD_TTL_MS = 30 * 24 * 3600 * 1000;

export interface TokenServiceOptions {
  readonly store: TokenStore;
  readonly idps: IdpRegistry;
  /** False when `store.subject_tokens` is off or no key is configured: every get is STORE_DISABLED. */
  readonly storageEnabled: boolean;
  /** `refresh.lock_lease`, ms. */
  readonly lockLeaseMs: number;
  /** `store.max_record_ttl`, ms. */
  readonly maxRecordTtlMs?: number;
  readonly clock?: Clock;
  readonly logger: Logger;
  readonly metrics?: BrokerMetrics;
  /** Records one `refresh` entry per refresh attempt at an IdP. */
  readonly audit?: AuditLog;
}

export type TokenService = Pick<BrokerApi, 'getValidSubjectToken' | 'revokeSubjectToken'> & {
  /** Settles once every refresh in flight has finished and released its lock (shutdown). */
  idle(): Promise<void>;
};

export function createTokenService(options: TokenServiceOptions): TokenService {
  const { store, idps, storageEnabled, lockLeaseMs, logger } = options;
  const clock = options.clock ?? systemClock;
  const metrics = options.metrics ?? noopBrokerMetrics;
  const refresher = createRefresher({
    store,
    clock,
    lockLeaseMs,
    maxRecordTtlMs: options.maxRecordTtlMs ?? DEFAULT_MAX_RECORD_TTL_MS,
    logger,
    metrics,
    audit: options.audit ?? noAudit,
  });

  function result(
    token: ServedToken,
    source: GetTokenResult['source'],
    degraded: boolean,
    served?: object,
  ): GetTokenResult {
    metrics.tokenServed(token.expiresAt - clock.now());
    return {
      accessToken: token.accessToken,
      tokenType: token.tokenType,
      expiresAt: new Date(token.expiresAt),
      scopes: token.scopes,
      source,
      degraded,
      loginEpoch: token.loginEpoch ?? 0,
      served,
    };
  }

  /** max(min_valid_for, provider skew); undefined for a provider idps does not know. */
  function storedMargin(input: GetTokenInput): number | undefined {
    try {
      return Math.max(input.minValidForMs, idps.get(input.provider).skewMs);
    } catch {
      return undefined;
    }
  }

  /**
   * The path with a promise: `peeked` is the record the store already handed out in process
   * (not valid for the margin), else the store is asked.
   */
  async function readOrRefresh(
    ref: SubjectRef,
    input: GetTokenInput,
    ctx: CallContext,
    peeked: TokenRecord | undefined,
  ): Promise<GetTokenResult> {
    if (!storageEnabled) throw reauthRequired(ReauthCause.STORE_DISABLED, ref);
    const idp = idps.get(input.provider);
    const marginMs = Math.max(input.minValidForMs, idp.skewMs);
    // One store read, or none when the peek found the record. UNDECRYPTABLE is thrown by the
    // store. Counted as countStoreErrors does, without its per-call closure and extra promise.
    let rec = peeked;
    if (rec === undefined) {
      try {
        rec = await store.getToken(ref);
      } catch (err) {
        if (isBrokerError(err, ErrorReason.STORE_UNAVAILABLE)) metrics.storeError('get');
        throw err;
      }
    }
    if (rec === undefined) throw reauthRequired(ReauthCause.NO_TOKEN, ref);
    if (rec.expiresAt - clock.now() > marginMs) return result(rec, 'STORED', false, rec);
    const refreshed = await refresher.refresh(ref, idp, rec, marginMs, ctx);
    return result(refreshed.token, refreshed.source, refreshed.degraded);
  }

  return {
    /**
     * A token valid for max(min_valid_for, provider skew), refreshed if needed. Synchronous when
     * the store holds a current record valid for the margin in process (TokenStore.peekToken).
     * @throws BrokerError (always as a rejection) REAUTH_REQUIRED (every cause of
     *   docs/architecture.md §2), IDP_UNAVAILABLE, STORE_UNAVAILABLE, REFRESH_IN_PROGRESS
     */
    getValidSubjectToken(input, ctx) {
      try {
        const ref: SubjectRef = { provider: input.provider, userId: input.userId };
        const peeked = storageEnabled ? store.peekToken?.(ref) : undefined;
        // The hot path: the record in process, valid for the margin — no promise. An unknown
        // provider is left to the path below, which rejects with idps.get's error.
        if (peeked !== undefined) {
          const marginMs = storedMargin(input);
          if (marginMs !== undefined && peeked.expiresAt - clock.now() > marginMs)
            return result(peeked, 'STORED', false, peeked);
        }
        return readOrRefresh(ref, input, ctx, peeked);
      } catch (err) {
        return Promise.reject(err as Error);
      }
    },

    /** @throws BrokerError STORE_UNAVAILABLE */
    async revokeSubjectToken(input) {
      return revokeSubjectToken({ store, idps, storageEnabled, metrics }, input);
    },

    idle: () => refresher.idle(),
  };
}
