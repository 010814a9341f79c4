/**
 * The store contract the domain is written against. Implementations: memory (one process, the
 * embedded default) and Redis (standalone, Sentinel, Cluster). Records are handed in and out as
 * plaintext domain objects; every implementation seals them (./envelope.ts) before they leave
 * the process's memory, so Redis never sees a token, a code or a verifier in plaintext.
 *
 * Errors: STORE_UNAVAILABLE (BrokerError) when the backend cannot be reached within the
 * configured command timeout; REAUTH_REQUIRED with cause UNDECRYPTABLE when a record exists but
 * cannot be opened (wrong or lost key, tampered, moved to another user's key). Never "absent"
 * for a record that exists. Without a key ring (storage disabled) getToken, putToken and
 * putTokenFenced throw REAUTH_REQUIRED with cause STORE_DISABLED; deletes, login state and
 * locks keep working.
 */
import type { ReauthCause, SubjectRef } from './errors.js';

/** One user's tokens at one provider (plaintext of proto credbroker.store.v1.StoredToken). */
export interface TokenRecord {
  readonly accessToken: string;
  /** Undefined when the IdP issued none. */
  readonly refreshToken: string | undefined;
  readonly tokenType: string;
  /** Access-token expiry, epoch ms. Always known: never "never expires". */
  readonly expiresAt: number;
  /** Refresh-token expiry, epoch ms, when the IdP said so. */
  readonly refreshExpiresAt: number | undefined;
  readonly scopes: readonly string[];
  readonly idToken: string | undefined;
  /** `exchange`: a downstream token (SubjectRef.downstream), from a token exchange. */
  readonly obtainedVia: 'login' | 'refresh' | 'exchange';
  /** Epoch ms of the write. */
  readonly updatedAt: number;
  /**
   * Monotonic per (provider, user), assigned by the store on every write, surviving delete and
   * re-login (the tombstone remembers the last one). Fenced writes compare against it.
   */
  readonly generation: number;
  /** The IdP subject the tokens belong to. */
  readonly subject: string | undefined;
  /** RFC 8693 `issued_token_type` of a downstream token (obtainedVia `exchange`). */
  readonly issuedTokenType?: string | undefined;
  /**
   * The login epoch. A subject record's is the generation its login was written with (putToken
   * sets it), carried unchanged by refreshes: a revoke followed by a new login changes it, a
   * refresh does not. A downstream record's is the epoch of the subject record whose token was
   * exchanged for it (putDownstreamToken checks it). Undefined (0): written before epochs existed.
   */
  readonly loginEpoch?: number | undefined;
}

/**
 * A record to write; the store assigns the generation. `loginEpoch` is ignored by putToken (a
 * login starts an epoch); putTokenFenced must be given the epoch of the record it replaces.
 */
export type NewTokenRecord = Omit<TokenRecord, 'generation'>;

/** What putDownstreamToken did: the generation written, or why nothing was. */
export type DownstreamWrite =
  | { readonly written: true; readonly generation: number }
  | {
      readonly written: false;
      /**
       * `lock`: the lock is not (or no longer) the writer's; `generation`: the downstream record
       * is not the one expected (a peer wrote, or it expired or was deleted); `subject`: the
       * user's subject record is gone or has another login epoch (revoked, re-logged in).
       */
      readonly reason: 'lock' | 'generation' | 'subject';
    };

/** The downstream record putDownstreamToken may replace. */
export type ExpectedDownstream =
  /** No record (whatever tombstone). */
  | 'absent'
  /** A record of any generation: one this process could not open (a key it lacks). */
  | 'present'
  /** Exactly this generation. */
  | number;

/** What StartLogin keeps for CompleteLogin: single use, bound to provider and redirect_uri. */
export interface LoginState {
  readonly provider: string;
  readonly redirectUri: string;
  /** PKCE verifier (RFC 7636). Secret: sealed at rest. */
  readonly codeVerifier: string;
  /** OIDC nonce. */
  readonly nonce: string;
  readonly scopes: readonly string[];
  /** Epoch ms. */
  readonly createdAt: number;
}

/** Options of getToken. */
export interface ReadOptions {
  /**
   * Read the backend itself, not a process-local copy (the Redis store's record cache, whose
   * invalidation by a peer's write may still be on its way): for re-reads that decide on what a
   * peer may just have written. Stores without such a copy ignore it.
   */
  readonly fresh?: boolean | undefined;
}

/** Why a record is deleted, remembered for a while (TokenStore.deleteTokenIfGeneration). */
export interface DeletionCause {
  readonly cause: ReauthCause;
  readonly ttlMs: number;
}

export interface TokenStore {
  /** `memory`, `redis`, `redis-cluster` or `redis-sentinel`, for logs and metrics. */
  readonly kind: string;

  /**
   * The record, or undefined when none is stored. A returned record is never changed afterwards,
   * and a store returns the same object again only while the stored record is unchanged (the
   * server keys its encoded response on it: GetTokenResult.served).
   * @throws STORE_UNAVAILABLE, REAUTH_REQUIRED/UNDECRYPTABLE
   */
  getToken(ref: SubjectRef, options?: ReadOptions): Promise<TokenRecord | undefined>;
  /**
   * The record when this process holds it and knows it to be current without asking the backend
   * (the memory store; the Redis store's record cache while its invalidation link is up), else
   * undefined — which means "ask getToken", not "absent". Synchronous, so that the hot path
   * serves a stored token without a promise; never throws (getToken reports every error). The
   * same record-identity contract as getToken. Optional: a store without it is always asked.
   */
  peekToken?(ref: SubjectRef): TokenRecord | undefined;
  /**
   * Unconditional write (CompleteLogin): assigns generation = last + 1 and clears a tombstone.
   * @param ttlMs record lifetime (refresh-token expiry, or the configured maximum)
   * @returns the generation written
   */
  putToken(ref: SubjectRef, record: NewTokenRecord, ttlMs: number): Promise<number>;
  /**
   * Fenced write (refresh): succeeds only while `lockOwner` holds the user's lock AND the stored
   * record's generation is still `expectedGeneration` (no tombstone, no newer write). Writes
   * generation = expectedGeneration + 1.
   * @returns false when the fence rejected the write (nothing written)
   */
  putTokenFenced(
    ref: SubjectRef,
    lockOwner: string,
    expectedGeneration: number,
    record: NewTokenRecord,
    ttlMs: number,
  ): Promise<boolean>;
  /**
   * The write of a downstream token (ref.downstream set), one atomic step: it lands only while
   * `lockOwner` holds ref's lock, ref's record is still `expected`, and the user's subject record
   * (ref without downstream) exists with login epoch `record.loginEpoch` (0 when undefined).
   * Writes generation = last (record or tombstone) + 1 and clears ref's tombstone. Nothing
   * checked here can change between the check and the write, so a revoke or a new login that
   * happened while the exchange was in flight can never be outlived by its result.
   */
  putDownstreamToken(
    ref: SubjectRef,
    lockOwner: string,
    expected: ExpectedDownstream,
    record: NewTokenRecord,
    ttlMs: number,
  ): Promise<DownstreamWrite>;
  /**
   * Deletes the record and leaves a tombstone (remembering the generation) so that a fenced write
   * already in flight cannot resurrect it. @returns whether a record existed
   */
  deleteToken(ref: SubjectRef): Promise<boolean>;
  /**
   * Deletes (with tombstone) only if the stored generation is `expectedGeneration`. With
   * `because`, the store remembers why for `because.ttlMs` (deletedBecause). A delete without a
   * cause (here or deleteToken) that deletes a record, and every putToken, forget it.
   */
  deleteTokenIfGeneration(
    ref: SubjectRef,
    expectedGeneration: number,
    because?: DeletionCause,
  ): Promise<boolean>;
  /**
   * Why ref's record was deleted, when a deleteTokenIfGeneration with a cause deleted it within
   * that cause's ttl and nothing has been written or deleted since; else undefined. For callers
   * that find the record gone after waiting for another replica's refresh (src/broker/refresh.ts).
   * Optional: a store without it reports no cause.
   * @throws STORE_UNAVAILABLE
   */
  deletedBecause?(ref: SubjectRef): Promise<ReauthCause | undefined>;

  /**
   * Keeps login state for `ttlMs`, sealed under a key derived from `state` itself (HKDF), and
   * keyed by SHA-256(state): works with storage disabled, and Redis never sees state or verifier.
   */
  putLoginState(state: string, value: LoginState, ttlMs: number): Promise<void>;
  /** Atomically reads and deletes (single use). Undefined when unknown, expired or used. */
  consumeLoginState(state: string): Promise<LoginState | undefined>;

  /** Tries to take the user's refresh lock. @returns a random owner token, or undefined when held */
  acquireLock(ref: SubjectRef, leaseMs: number): Promise<string | undefined>;
  /** Extends the lease if `owner` still holds the lock. */
  renewLock(ref: SubjectRef, owner: string, leaseMs: number): Promise<boolean>;
  /** Compare-and-delete by owner, then notifies waiters. @returns whether it was still held */
  releaseLock(ref: SubjectRef, owner: string): Promise<boolean>;
  /**
   * Resolves when the lock is released (notification, not polling), or after `timeoutMs`, or
   * when `signal` aborts — whichever comes first. Never rejects for timeout or abort.
   */
  waitForUnlock(ref: SubjectRef, timeoutMs: number, signal?: AbortSignal): Promise<void>;

  /** Round trip to the backend. @throws STORE_UNAVAILABLE */
  ping(): Promise<void>;
  close(): Promise<void>;
}
