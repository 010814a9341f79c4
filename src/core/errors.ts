/**
 * The one error type of the domain. Every failure the broker reports to a caller is a
 * BrokerError with a reason from a closed set; src/server/errors.ts maps it to a gRPC status in
 * exactly one place. The public `message` never contains a token, a code, a secret or an IdP
 * response body; internal detail travels only in `cause`, which is logged, never sent.
 */

/** ErrorInfo.reason values (proto: credbroker.v1.ErrorReason). */
export const ErrorReason = {
  REAUTH_REQUIRED: 'REAUTH_REQUIRED',
  IDP_UNAVAILABLE: 'IDP_UNAVAILABLE',
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
  REFRESH_IN_PROGRESS: 'REFRESH_IN_PROGRESS',
  INVALID_REQUEST: 'INVALID_REQUEST',
  LOGIN_STATE_INVALID: 'LOGIN_STATE_INVALID',
  LOGIN_REJECTED: 'LOGIN_REJECTED',
  CALLER_UNAUTHENTICATED: 'CALLER_UNAUTHENTICATED',
  CALLER_FORBIDDEN: 'CALLER_FORBIDDEN',
  NOT_IMPLEMENTED: 'NOT_IMPLEMENTED',
  INTERNAL_ERROR: 'INTERNAL_ERROR',
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  EXCHANGE_REJECTED: 'EXCHANGE_REJECTED',
} as const;
export type ErrorReason = (typeof ErrorReason)[keyof typeof ErrorReason];

/** ErrorInfo.metadata.cause when the reason is REAUTH_REQUIRED (proto: credbroker.v1.ReauthCause). */
export const ReauthCause = {
  NO_TOKEN: 'NO_TOKEN',
  STORE_DISABLED: 'STORE_DISABLED',
  NO_REFRESH_TOKEN: 'NO_REFRESH_TOKEN',
  REFRESH_REJECTED: 'REFRESH_REJECTED',
  UNDECRYPTABLE: 'UNDECRYPTABLE',
} as const;
export type ReauthCause = (typeof ReauthCause)[keyof typeof ReauthCause];

/** One invalid request field (google.rpc.BadRequest.FieldViolation). `field` is the proto field name. */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

export interface BrokerErrorOptions {
  /** ErrorInfo metadata, lowerCamelCase keys (`cause`, `provider`, `userId`, `idpError`). */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Suggested client back-off (google.rpc.RetryInfo), in milliseconds. */
  readonly retryAfterMs?: number;
  /** Field violations (google.rpc.BadRequest), for INVALID_REQUEST. */
  readonly violations?: readonly FieldViolation[];
  /** Internal detail for the log. Never sent to a caller. */
  readonly cause?: unknown;
}

export class BrokerError extends Error {
  override readonly name = 'BrokerError';
  readonly reason: ErrorReason;
  readonly metadata: Readonly<Record<string, string>>;
  readonly retryAfterMs: number | undefined;
  readonly violations: readonly FieldViolation[];

  /** @param message public, safe to send to the caller: no secrets, no IdP bodies. */
  constructor(reason: ErrorReason, message: string, options: BrokerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.reason = reason;
    this.metadata = Object.freeze({ ...options.metadata });
    this.retryAfterMs = options.retryAfterMs;
    this.violations = Object.freeze([...(options.violations ?? [])]);
  }
}

export function isBrokerError(err: unknown, reason?: ErrorReason): err is BrokerError {
  return err instanceof BrokerError && (reason === undefined || err.reason === reason);
}

/** The subject of a stored token: whose token, at which provider. */
export interface SubjectRef {
  readonly provider: string;
  readonly userId: string;
  /**
   * Set for a downstream token record (`providers[].downstreams[].id`): a separate record and
   * lock of the same user, whose envelope binds this id too. Unset: the subject token itself.
   */
  readonly downstream?: string | undefined;
}

const reauthMessages: Record<ReauthCause, string> = {
  NO_TOKEN: 're-authentication required: no token is stored for this user',
  STORE_DISABLED: 're-authentication required: token storage is disabled',
  NO_REFRESH_TOKEN: 're-authentication required: the token is expiring and there is no refresh token',
  REFRESH_REJECTED: 're-authentication required: the identity provider rejected the refresh',
  UNDECRYPTABLE: 're-authentication required: the stored token cannot be decrypted',
};

/** FAILED_PRECONDITION / REAUTH_REQUIRED with its cause (docs/architecture.md §2). */
export function reauthRequired(cause: ReauthCause, subject: SubjectRef, internal?: unknown): BrokerError {
  return new BrokerError(ErrorReason.REAUTH_REQUIRED, reauthMessages[cause], {
    metadata: { cause, provider: subject.provider, userId: subject.userId },
    cause: internal,
  });
}

/** INVALID_ARGUMENT / INVALID_REQUEST naming the offending fields. */
export function invalidRequest(violations: readonly FieldViolation[]): BrokerError {
  const message = `invalid request: ${violations.map((v) => `${v.field}: ${v.description}`).join('; ')}`;
  return new BrokerError(ErrorReason.INVALID_REQUEST, message, { violations });
}
