/**
 * A generated-client wrapper for tests: promise-returning calls and decoding of the
 * google.rpc.Status in grpc-status-details-bin with the generated types.
 */
import { credentials, Metadata, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { CredentialBrokerClient } from '../../src/gen/credbroker/v1/broker.js';
import { BadRequest, ErrorInfo, RetryInfo } from '../../src/gen/google/rpc/error_details.js';
import { Status } from '../../src/gen/google/rpc/status.js';

export interface DecodedError {
  readonly code: number;
  readonly message: string;
  readonly status: Status;
  readonly errorInfo: ErrorInfo;
  readonly errorInfoCount: number;
  readonly retryInfo: RetryInfo | undefined;
  readonly badRequest: BadRequest | undefined;
}

/** Decodes a ServiceError's rich status. @throws when the trailer is missing. */
export function decodeError(err: ServiceError): DecodedError {
  const raw = err.metadata?.get('grpc-status-details-bin')[0];
  if (!(raw instanceof Buffer)) throw new Error(`no grpc-status-details-bin on ${err.code} ${err.details}`);
  const status = Status.decode(raw);
  const of = (type: string) =>
    status.details.filter((d) => d.typeUrl === `type.googleapis.com/google.rpc.${type}`);
  const infos = of('ErrorInfo');
  const retry = of('RetryInfo')[0];
  const bad = of('BadRequest')[0];
  return {
    code: err.code,
    message: err.details,
    status,
    errorInfo: ErrorInfo.decode(infos[0]!.value),
    errorInfoCount: infos.length,
    retryInfo: retry ? RetryInfo.decode(retry.value) : undefined,
    badRequest: bad ? BadRequest.decode(bad.value) : undefined,
  };
}

type Callback<Res> = (err: ServiceError | null, res: Res) => void;
type UnaryMethod<Req, Res> = (
  req: Req,
  md: Metadata,
  opts: { deadline?: number },
  cb: Callback<Res>,
) => unknown;

/** Calls a unary method; resolves with the response or rejects with the ServiceError. */
export function call<Req, Res>(
  client: CredentialBrokerClient,
  method: UnaryMethod<Req, Res>,
  request: Req,
  options: { metadata?: Metadata; deadlineMs?: number } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const deadline = options.deadlineMs === undefined ? undefined : Date.now() + options.deadlineMs;
    method.call(
      client,
      request,
      options.metadata ?? new Metadata(),
      deadline === undefined ? {} : { deadline },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
}

/** Awaits a call expected to fail; returns its decoded error. @throws when it succeeds. */
export async function callError<Req, Res>(
  client: CredentialBrokerClient,
  method: UnaryMethod<Req, Res>,
  request: Req,
  options: { metadata?: Metadata; deadlineMs?: number } = {},
): Promise<DecodedError> {
  try {
    await call(client, method, request, options);
  } catch (err) {
    return decodeError(err as ServiceError);
  }
  throw new Error('expected the call to fail, it succeeded');
}

export function brokerClient(
  address: string,
  creds: ChannelCredentials = credentials.createInsecure(),
): CredentialBrokerClient {
  return new CredentialBrokerClient(address, creds);
}
