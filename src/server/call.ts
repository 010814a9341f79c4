/**
 * Wraps a domain operation as a grpc-js unary handler: builds the CallContext (deadline, cancel
 * signal, request id, child logger), runs the operation, maps every error in one place
 * (./errors.ts) and logs exactly one line per call — method, code, duration, provider and a hash
 * of the user id; never a request or response body.
 */
import { randomUUID } from 'node:crypto';
import { Metadata, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import type { CallContext } from '../broker/api.js';
import { BrokerError, invalidRequest } from '../core/errors.js';
import { hashUserId, type Logger } from '../logger.js';
import { toServiceError } from './errors.js';

/** What the call wrapper reports when a call ends (metrics and audit subscribe to this). */
export interface CallOutcome {
  readonly rpc: string;
  readonly code: status;
  /** ErrorInfo.reason when the call failed with a BrokerError. */
  readonly reason: string | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  readonly durationMs: number;
  readonly provider: string | undefined;
  readonly userId: string | undefined;
  readonly requestId: string;
  readonly caller: string | undefined;
}

export type CallObserver = (outcome: CallOutcome) => void;

/**
 * Decides who is calling and whether they may; throws a BrokerError when not. `provider` is
 * undefined when the request failed validation (the caller is authenticated before that error
 * is returned).
 */
export type Authorizer = (
  rpc: string,
  call: ServerUnaryCall<unknown, unknown>,
  provider: string | undefined,
) => { readonly caller: string | undefined };

export interface CallWrapperOptions {
  readonly logger: Logger;
  readonly observers?: readonly CallObserver[];
  readonly authorize?: Authorizer | undefined;
}

/** What a handler body sees: the validated subject of the call, for logging and authorization. */
export interface Subject {
  readonly provider?: string | undefined;
  readonly userId?: string | undefined;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * What the API port's request decoder (server.ts) hands on instead of throwing for bytes that are
 * not a valid request message (malformed protobuf, an int64 beyond 2^53): the wrapper then
 * authenticates the caller and answers INVALID_REQUEST, with a call log line and an audit entry.
 */
export const UNDECODABLE: unique symbol = Symbol('undecodable request');

function decoded<Req>(rpc: string, request: Req): Req {
  if ((request as unknown) !== UNDECODABLE) return request;
  throw invalidRequest([{ field: '', description: `not a valid credbroker.v1.${rpc}Request message` }]);
}

function requestIdOf(metadata: Metadata): string {
  const given = metadata.get('x-request-id')[0];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

function deadlineOf(call: ServerUnaryCall<unknown, unknown>): number {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) ? ms : Infinity;
}

/**
 * @param validate turns the request into the domain input and names its subject (throws
 *   INVALID_REQUEST)
 * @param run the domain operation, result mapped to the wire response
 */
export function unary<Req, Res, Input extends Subject>(
  rpc: string,
  options: CallWrapperOptions,
  validate: (request: Req) => Input,
  run: (input: Input, ctx: CallContext) => Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  const rpcLogger = options.logger.child({ rpc });
  return (call, callback) => {
    const started = performance.now();
    const requestId = requestIdOf(call.metadata);
    const deadline = deadlineOf(call as ServerUnaryCall<unknown, unknown>);
    // The abort signal (with its deadline timer and cancel listener) and the per-call child
    // logger are made only when the domain asks for them: the hot path (a stored token) uses
    // neither, and they were a measurable share of its CPU (docs/PERFORMANCE.md).
    let controller: AbortController | undefined;
    let timer: NodeJS.Timeout | undefined;
    const signalOf = (): AbortSignal => {
      if (controller) return controller.signal;
      const created = new AbortController();
      controller = created;
      if (call.cancelled) created.abort(new Error('cancelled by the caller'));
      else call.once('cancelled', () => created.abort(new Error('cancelled by the caller')));
      if (Number.isFinite(deadline)) {
        timer = setTimeout(
          () => created.abort(new Error('deadline exceeded')),
          Math.max(0, deadline - Date.now()),
        );
        timer.unref();
      }
      return created.signal;
    };
    let childLogger: Logger | undefined;
    const loggerOf = (): Logger => (childLogger ??= rpcLogger.child({ requestId }));
    let subject: Subject = {};
    let caller: string | undefined;

    const finish = (code: status, err: BrokerError | undefined, internalErr?: unknown): void => {
      if (timer) clearTimeout(timer);
      const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
      const outcome: CallOutcome = {
        rpc,
        code,
        reason: err?.reason,
        metadata: err?.metadata ?? {},
        durationMs,
        provider: subject.provider,
        userId: subject.userId,
        requestId,
        caller,
      };
      const line = {
        requestId,
        status: status[code],
        durationMs,
        provider: subject.provider,
        user: subject.userId === undefined ? undefined : hashUserId(subject.userId),
        caller,
        reason: err?.reason,
        cause: err?.metadata.cause,
      };
      if (internalErr !== undefined) rpcLogger.error({ ...line, err: internalErr }, 'call failed');
      else rpcLogger.info(line, 'call');
      for (const observe of options.observers ?? []) {
        try {
          observe(outcome);
        } catch (observerErr) {
          rpcLogger.error({ requestId, err: observerErr }, 'call observer failed');
        }
      }
    };

    void (async () => {
      try {
        const authorize = (provider: string | undefined) =>
          options.authorize?.(rpc, call as ServerUnaryCall<unknown, unknown>, provider).caller;
        try {
          subject = validate(decoded(rpc, call.request));
        } catch (invalid) {
          // Authenticate first: an unknown caller learns nothing from validation details (such
          // as the list of configured providers). The provider is checked once it is valid.
          caller = authorize(undefined);
          throw invalid;
        }
        caller = authorize(subject.provider);
        const ctx: CallContext = {
          deadline,
          requestId,
          caller,
          get signal() {
            return signalOf();
          },
          get logger() {
            return loggerOf();
          },
        };
        const response = await run(subject as Input, ctx);
        finish(status.OK, undefined);
        call.sendMetadata(responseMetadata(requestId));
        callback(null, response);
      } catch (err) {
        const serviceError = toServiceError(err);
        serviceError.metadata?.set('x-request-id', requestId);
        finish(
          serviceError.code ?? status.UNKNOWN,
          err instanceof BrokerError ? err : undefined,
          err instanceof BrokerError ? undefined : err,
        );
        callback(serviceError);
      }
    })();
  };
}

function responseMetadata(requestId: string): Metadata {
  const metadata = new Metadata();
  metadata.set('x-request-id', requestId);
  return metadata;
}
