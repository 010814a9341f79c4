/**
 * The one place where errors become gRPC statuses (AIP-193). Every status carries a
 * google.rpc.Status in `grpc-status-details-bin` with exactly one ErrorInfo (domain
 * `credbroker.v1`), plus RetryInfo or BadRequest where docs/architecture.md §2 says so. Anything that is not a
 * BrokerError becomes INTERNAL "internal error": its message is logged by the caller of
 * `toServiceError`, never sent, because grpc-js would put `error.message` on the wire.
 */
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { BrokerError, ErrorReason } from '../core/errors.js';
import { Any } from '../gen/google/protobuf/any.js';
import { BadRequest, ErrorInfo, RetryInfo } from '../gen/google/rpc/error_details.js';
import { Status } from '../gen/google/rpc/status.js';

export const ERROR_DOMAIN = 'credbroker.v1';
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

const codeByReason: Record<ErrorReason, status> = {
  REAUTH_REQUIRED: status.FAILED_PRECONDITION,
  IDP_UNAVAILABLE: status.UNAVAILABLE,
  STORE_UNAVAILABLE: status.UNAVAILABLE,
  REFRESH_IN_PROGRESS: status.DEADLINE_EXCEEDED,
  INVALID_REQUEST: status.INVALID_ARGUMENT,
  LOGIN_STATE_INVALID: status.FAILED_PRECONDITION,
  LOGIN_REJECTED: status.FAILED_PRECONDITION,
  CALLER_UNAUTHENTICATED: status.UNAUTHENTICATED,
  CALLER_FORBIDDEN: status.PERMISSION_DENIED,
  NOT_IMPLEMENTED: status.UNIMPLEMENTED,
  INTERNAL_ERROR: status.INTERNAL,
  SHUTTING_DOWN: status.UNAVAILABLE,
  EXCHANGE_REJECTED: status.FAILED_PRECONDITION,
};

/** Default back-off when an UNAVAILABLE error names none (google.rpc.RetryInfo is required there). */
const DEFAULT_RETRY_MS = 1000;

function pack(typeName: string, value: Uint8Array): Any {
  return { typeUrl: `type.googleapis.com/${typeName}`, value: Buffer.from(value) };
}

/** Encodes a BrokerError as google.rpc.Status bytes. */
export function encodeStatusDetails(err: BrokerError): Buffer {
  const code = codeByReason[err.reason];
  const details: Any[] = [
    pack(
      'google.rpc.ErrorInfo',
      ErrorInfo.encode({ reason: err.reason, domain: ERROR_DOMAIN, metadata: { ...err.metadata } }).finish(),
    ),
  ];
  const retryMs = err.retryAfterMs ?? (code === status.UNAVAILABLE ? DEFAULT_RETRY_MS : undefined);
  if (retryMs !== undefined) {
    const seconds = Math.floor(retryMs / 1000);
    details.push(
      pack(
        'google.rpc.RetryInfo',
        RetryInfo.encode({ retryDelay: { seconds, nanos: (retryMs - seconds * 1000) * 1e6 } }).finish(),
      ),
    );
  }
  if (err.violations.length > 0) {
    details.push(
      pack(
        'google.rpc.BadRequest',
        BadRequest.encode({
          fieldViolations: err.violations.map((v) => ({
            field: v.field,
            description: v.description,
            reason: '',
            localizedMessage: undefined,
          })),
        }).finish(),
      ),
    );
  }
  return Buffer.from(Status.encode({ code, message: err.message, details }).finish());
}

const internal = new BrokerError(ErrorReason.INTERNAL_ERROR, 'internal error');

/**
 * Maps any thrown value to the ServiceError handed to grpc-js. Only a BrokerError's public
 * message reaches the wire; everything else becomes INTERNAL "internal error".
 */
export function toServiceError(err: unknown): ServiceError {
  const brokerError = err instanceof BrokerError ? err : internal;
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_KEY, encodeStatusDetails(brokerError));
  return Object.assign(new Error(brokerError.message), {
    code: codeByReason[brokerError.reason],
    details: brokerError.message,
    metadata,
  });
}
