/**
 * The audit trail's contract, in domain terms. Security-relevant events — a token released, a
 * login completed, a refresh, a revoke, a denied call — are recorded as one structured entry
 * each. The server implements it (src/server/security/audit.ts, a pino logger named `audit`);
 * the domain only calls `record`, so src/broker stays free of transport and logging details.
 *
 * An entry never carries token material: no access, refresh or ID token, code, verifier, state,
 * nonce, secret or API key. Only names, ids and outcomes.
 */

export type AuditEventName =
  /** GetValidSubjectToken answered (outcome `ok`: a token left the broker). */
  | 'token_release'
  /** StartLogin answered. */
  | 'login_start'
  /** CompleteLogin answered (outcome `ok`: the user logged in). */
  | 'login_complete'
  /** A refresh at the IdP was attempted (recorded by the refresh engine). */
  | 'refresh'
  /** RevokeSubjectToken answered. */
  | 'revoke'
  /** GetDownstreamToken answered (outcome `ok`: a downstream token left the broker). */
  | 'downstream_token_release'
  /** A token exchange for a downstream API was attempted at the IdP (RFC 8693 / Entra OBO). */
  | 'token_exchange'
  /** A call was refused by the caller policy (CALLER_UNAUTHENTICATED / CALLER_FORBIDDEN). */
  | 'denied';

export interface AuditEntry {
  readonly event: AuditEventName;
  /**
   * `ok`, or what went wrong: the ErrorInfo reason (`REAUTH_REQUIRED`, `CALLER_FORBIDDEN`, …)
   * or, for a refresh, `rejected` / `unavailable` / `failed`.
   */
  readonly outcome: string;
  /** The authenticated caller's configured name (or certificate subject when none matched). */
  readonly caller?: string | undefined;
  /** The RPC that caused the event; a refresh carries the RPC that triggered it. */
  readonly rpc?: string | undefined;
  readonly userId?: string | undefined;
  readonly provider?: string | undefined;
  /** ErrorInfo metadata.cause, or a refresh's cause (`invalid_grant`, `timeout`, …). */
  readonly cause?: string | undefined;
  readonly requestId?: string | undefined;
  /** The downstream id, for `token_exchange` and `downstream_token_release`. */
  readonly downstream?: string | undefined;
}

/** Records audit events. Implementations never throw and never block the call. */
export interface AuditLog {
  record(entry: AuditEntry): void;
}

/** An audit log that records nothing (unit tests of the domain, tools). */
export const noAudit: AuditLog = { record: () => undefined };
