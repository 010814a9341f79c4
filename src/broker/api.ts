/**
 * The broker's domain API: what the four RPCs do, in domain types. src/server validates the
 * wire request into these inputs and maps results and BrokerErrors back to the wire; nothing
 * here knows about gRPC.
 */
import type { Identity } from '../core/identity.js';
import type { Logger } from '../logger.js';

/** Per-call context handed to the domain by the transport. */
export interface CallContext {
  /** Absolute deadline in epoch milliseconds; Infinity when the caller set none. */
  readonly deadline: number;
  /** Aborted when the caller cancels or the deadline passes. */
  readonly signal: AbortSignal;
  /** Child logger carrying the RPC name and request id. */
  readonly logger: Logger;
  /** Correlates the call's log lines and audit events. */
  readonly requestId: string;
  /** The authenticated caller's name, when caller authentication is configured. */
  readonly caller?: string | undefined;
}

export interface StartLoginInput {
  readonly provider: string;
  readonly redirectUri: string;
  readonly scopes: readonly string[];
  readonly loginHint: string | undefined;
}
export interface StartLoginResult {
  readonly authorizationUrl: string;
  readonly state: string;
  readonly expiresAt: Date;
}

export interface CompleteLoginInput {
  readonly provider: string;
  readonly code: string;
  readonly redirectUri: string;
  /** Exactly one of `state` and `codeVerifier` is set. */
  readonly state: string | undefined;
  readonly codeVerifier: string | undefined;
  readonly nonce: string | undefined;
  readonly userId: string | undefined;
}
export type StorageOutcome = 'STORED' | 'DISABLED' | 'FAILED';
export interface CompleteLoginResult {
  readonly userId: string;
  readonly identity: Identity;
  readonly storage: StorageOutcome;
  readonly accessTokenExpiresAt: Date;
  readonly scopes: readonly string[];
}

export interface GetTokenInput {
  readonly provider: string;
  readonly userId: string;
  /** The margin the caller needs, in milliseconds; the provider's skew is a floor. */
  readonly minValidForMs: number;
}
export type TokenSource = 'STORED' | 'REFRESHED';
export interface GetTokenResult {
  readonly accessToken: string;
  readonly tokenType: string;
  readonly expiresAt: Date;
  readonly scopes: readonly string[];
  readonly source: TokenSource;
  /** The IdP was unreachable; the token is unexpired but has less than the requested margin. */
  readonly degraded: boolean;
  /**
   * The login epoch of the record the token belongs to (TokenRecord.loginEpoch; 0 for records
   * older than epochs). Internal, not on the wire: GetDownstreamToken binds what it exchanges
   * to it. Optional for callers that build results themselves.
   */
  readonly loginEpoch?: number;
  /**
   * The stored record this result was read from, unchanged (source STORED, not degraded): the
   * same object for every result served from the same stored state, a new one whenever the
   * record changes, since records are never mutated. The server keys what it derives from the
   * result on it (the encoded response, src/server/service.ts). Internal, not on the wire.
   */
  readonly served?: object;
}

export interface RevokeInput {
  readonly provider: string;
  readonly userId: string;
  readonly revokeAtIdp: boolean;
}
export type IdpRevocationOutcome = 'NOT_REQUESTED' | 'REVOKED' | 'NOT_SUPPORTED' | 'FAILED';
export interface RevokeResult {
  readonly deleted: boolean;
  readonly idpRevocation: IdpRevocationOutcome;
}

export interface DownstreamTokenInput {
  readonly provider: string;
  readonly userId: string;
  /** Id of a downstream configured under the provider (`providers[].downstreams[].id`). */
  readonly downstream: string;
  /** The margin the caller needs, in milliseconds; the provider's skew is a floor. */
  readonly minValidForMs: number;
}
export type DownstreamTokenSource = 'CACHED' | 'EXCHANGED';
export interface DownstreamTokenResult {
  readonly accessToken: string;
  readonly tokenType: string;
  readonly expiresAt: Date;
  readonly scopes: readonly string[];
  readonly source: DownstreamTokenSource;
  /** RFC 8693 `issued_token_type` of the token. */
  readonly issuedTokenType: string;
  /** The IdP was unreachable; the cached token is unexpired but has less than the requested margin. */
  readonly degraded: boolean;
}

/** The operations. Each throws BrokerError for every failure a caller should see. */
export interface BrokerApi {
  startLogin(input: StartLoginInput, ctx: CallContext): Promise<StartLoginResult>;
  completeLogin(input: CompleteLoginInput, ctx: CallContext): Promise<CompleteLoginResult>;
  /**
   * Answers without a promise when the store holds a record in process that is valid for the
   * margin (TokenStore.peekToken): the hot path. Otherwise, and for every error, a promise.
   */
  getValidSubjectToken(input: GetTokenInput, ctx: CallContext): GetTokenResult | Promise<GetTokenResult>;
  revokeSubjectToken(input: RevokeInput, ctx: CallContext): Promise<RevokeResult>;
  /**
   * A token for a downstream API, exchanged from the user's subject token (RFC 8693 or Entra
   * on-behalf-of) and cached. Absent where no downstream support is composed (the server then
   * answers UNIMPLEMENTED).
   */
  getDownstreamToken?(input: DownstreamTokenInput, ctx: CallContext): Promise<DownstreamTokenResult>;
}
