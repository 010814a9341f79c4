/**
 * Wraps a domain operation as a grpc-js unary handler: builds the CallContext (deadline, cancel
 * signal, request id, child logger), runs the operation, maps every error in one place
 * (./errors.ts) and logs exactly one line per call — method, code, duration, provider and a hash
 * of the user id; never a request or response body.
 */
import { randomBytes } from 'node:crypto';
import { Metadata, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import type { CallContext } from '../broker/api.js';
import { BrokerError, invalidRequest } from '../core/errors.js';
import { hashUserId, LineWriter, type Logger } from '../logger.js';
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
  /** GetDownstreamToken: the downstream asked for. */
  readonly downstream?: string | undefined;
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
  /** Where calls register while they run, so the server can end them (shutdown). */
  readonly inFlight?: InFlightCalls | undefined;
}

/**
 * The calls being answered right now. server.ts ends those still running when `shutdown_grace`
 * expires: each is answered with the given error at once (exactly once — the handler's own
 * result, whenever it comes, is dropped) and its abort signal fires with that error.
 */
export class InFlightCalls {
  /** @internal Maintained by the call wrapper. */
  readonly calls = new Set<{ end(err: BrokerError): void }>();

  /** Ends every call still in flight with `err`; returns how many there were. */
  endAll(err: BrokerError): number {
    const running = [...this.calls];
    for (const call of running) {
      try {
        call.end(err);
      } catch {
        // One call's logging failing must not leave the others unanswered or stop the shutdown.
      }
    }
    return running.length;
  }
}

/** What a handler body sees: the validated subject of the call, for logging and authorization. */
export interface Subject {
  readonly provider?: string | undefined;
  readonly userId?: string | undefined;
  readonly downstream?: string | undefined;
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

/**
 * Generated request ids are RFC 9562 UUIDv8: 74 bits chosen at random once per process, then a
 * 48-bit counter. Distinct across replicas and restarts unless two processes draw the same 74
 * bits, for one increment instead of randomUUID's string of 20 pieces (≈ 0.6 KB of garbage per
 * call in the allocation profile, docs/PERFORMANCE.md). A request id correlates log lines; it is
 * neither secret nor unguessable, and one a replica generated shows its caller which process
 * answered and how many ids it had generated.
 */
const REQUEST_ID_PREFIX = ((): string => {
  const random = randomBytes(10);
  const hex = random.toString('hex');
  const variant = (0x8 | (random[9]! & 0x3)).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(12, 15)}-${variant}${hex.slice(15, 18)}-`;
})();
let requestCounter = 0;

/** A new request id (see REQUEST_ID_PREFIX). */
export function generateRequestId(): string {
  requestCounter++;
  return REQUEST_ID_PREFIX + requestCounter.toString(16).padStart(12, '0');
}

function requestIdOf(metadata: Metadata): string {
  const given = metadata.get('x-request-id')[0];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : generateRequestId();
}

function deadlineOf(call: ServerUnaryCall<unknown, unknown>): number {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) ? ms : Infinity;
}

/** ErrorInfo metadata of a call that did not fail with a BrokerError (shared, never written). */
const NO_METADATA: Readonly<Record<string, string>> = Object.freeze({});
const NO_OBSERVERS: readonly CallObserver[] = [];
const NO_SUBJECT: Subject = Object.freeze({});
/** The call line's fields, in output order. */
const CALL_LINE_KEYS = [
  'requestId',
  'status',
  'durationMs',
  'provider',
  'user',
  'downstream',
  'caller',
  'reason',
  'cause',
] as const;

/** What every call of one RPC shares: made once per handler, not per call. */
interface Handler<Req, Res, Input extends Subject> {
  readonly rpc: string;
  readonly logger: Logger;
  /** Writes the call line without pino's generic path (undefined: through pino). */
  readonly callLine: LineWriter | undefined;
  readonly observers: readonly CallObserver[];
  readonly authorize: Authorizer | undefined;
  readonly inFlight: InFlightCalls | undefined;
  readonly validate: (request: Req) => Input;
  readonly run: (input: Input, ctx: CallContext) => Res | Promise<Res>;
}

/**
 * One call: its state, and the CallContext the domain sees. A class rather than closures so
 * that a call allocates one object, not one per closure. The abort signal (with its deadline
 * timer and cancel listener) and the per-call child logger are made only when the domain asks
 * for them: the hot path (a stored token) uses neither, and they were a measurable share of
 * its CPU (docs/PERFORMANCE.md).
 */
class UnaryCall<Req, Res, Input extends Subject> implements CallContext {
  readonly deadline: number;
  readonly requestId: string;
  caller: string | undefined = undefined;
  private readonly started = performance.now();
  private subject: Subject = NO_SUBJECT;
  private controller: AbortController | undefined = undefined;
  private timer: NodeJS.Timeout | undefined = undefined;
  private childLogger: Logger | undefined = undefined;
  /** Set once the call is answered (its response, its failure, or end()): never twice. */
  private answered = false;
  /** The error `end` answered with (shutdown), for a signal asked for afterwards. */
  private endedWith: BrokerError | undefined = undefined;

  constructor(
    private readonly handler: Handler<Req, Res, Input>,
    private readonly call: ServerUnaryCall<Req, Res>,
    private readonly callback: sendUnaryData<Res>,
  ) {
    this.requestId = requestIdOf(call.metadata);
    this.deadline = deadlineOf(call as ServerUnaryCall<unknown, unknown>);
  }

  get signal(): AbortSignal {
    if (this.controller) return this.controller.signal;
    const created = new AbortController();
    this.controller = created;
    if (this.answered) {
      // Answered already (shutdown): no listener or deadline timer that nothing would clear.
      created.abort(this.endedWith ?? new Error('ended by the server'));
      return created.signal;
    }
    if (this.call.cancelled) created.abort(new Error('cancelled by the caller'));
    else this.call.once('cancelled', () => created.abort(new Error('cancelled by the caller')));
    if (Number.isFinite(this.deadline)) {
      this.timer = setTimeout(
        () => created.abort(new Error('deadline exceeded')),
        Math.max(0, this.deadline - Date.now()),
      );
      this.timer.unref();
    }
    return created.signal;
  }

  get logger(): Logger {
    return (this.childLogger ??= this.handler.logger.child({ requestId: this.requestId }));
  }

  private authorize(provider: string | undefined): string | undefined {
    return this.handler.authorize?.(
      this.handler.rpc,
      this.call as ServerUnaryCall<unknown, unknown>,
      provider,
    ).caller;
  }

  /** Answers the call with `err` now, unless it has been answered; aborts its signal. */
  end(err: BrokerError): void {
    if (this.answered) return;
    this.endedWith = err;
    try {
      this.fail(err);
    } finally {
      this.controller?.abort(err);
    }
  }

  /**
   * Runs the call. When the operation answers without a promise (a stored token), the call is
   * answered before this returns: no promise, no microtask, none of their garbage.
   */
  execute(): void {
    const { handler } = this;
    handler.inFlight?.calls.add(this);
    let response: Res | Promise<Res>;
    try {
      let input: Input;
      try {
        input = handler.validate(decoded(handler.rpc, this.call.request));
      } catch (invalid) {
        // Authenticate first: an unknown caller learns nothing from validation details (such
        // as the list of configured providers). The provider is checked once it is valid.
        this.caller = this.authorize(undefined);
        throw invalid;
      }
      this.subject = input;
      this.caller = this.authorize(input.provider);
      response = handler.run(input, this);
      if (isPromiseLike(response)) {
        // Neither handler throws (their failures are logged), so the chain never rejects.
        void Promise.resolve(response).then(
          (value) => this.respond(value),
          (err: unknown) => this.failed(err),
        );
        return;
      }
    } catch (err) {
      this.failed(err);
      return;
    }
    this.respond(response);
  }

  /** The operation's answer: sent, unless the call has been answered already (shutdown). */
  private respond(response: Res): void {
    const { handler, requestId } = this;
    try {
      if (this.answered) {
        // Ended by the server meanwhile (shutdown): the caller was told SHUTTING_DOWN and may
        // retry, but the operation took effect; say so, or the log and audit would be wrong.
        handler.logger.warn({ requestId }, 'call completed after it was answered SHUTTING_DOWN');
        return;
      }
      this.answered = true;
      try {
        this.finish(status.OK, undefined, undefined);
      } finally {
        // Answered even when the call line or the response headers could not be written.
        try {
          this.call.sendMetadata(responseMetadata(requestId));
        } finally {
          this.callback(null, response);
        }
      }
    } catch (err) {
      reportError(handler.logger, { err, requestId }, 'finishing the call failed');
    } finally {
      handler.inFlight?.calls.delete(this);
    }
  }

  /** The operation (or validation, or authorization) failed: answered with the error. */
  private failed(err: unknown): void {
    const { handler, requestId } = this;
    try {
      if (!this.answered) this.fail(err);
      // Ended by the server (shutdown): the operation gave up on the signal's own error, or
      // failed otherwise meanwhile — the caller was told SHUTTING_DOWN either way.
      else if (err === this.endedWith) handler.logger.debug({ requestId }, 'call ended by the server');
      else handler.logger.warn({ err, requestId }, 'call failed after it was answered SHUTTING_DOWN');
    } catch (failure) {
      // Never thrown on: on the promise path that would be an unhandled rejection. The call's
      // own error is logged too: for an internal error the call line was its only record.
      reportError(handler.logger, { err, requestId }, 'call failed');
      reportError(handler.logger, { err: failure, requestId }, 'finishing the call failed');
    } finally {
      handler.inFlight?.calls.delete(this);
    }
  }

  private fail(err: unknown): void {
    this.answered = true;
    const serviceError = toServiceError(err);
    serviceError.metadata?.set('x-request-id', this.requestId);
    const brokerError = err instanceof BrokerError ? err : undefined;
    try {
      this.finish(serviceError.code ?? status.UNKNOWN, brokerError, brokerError ? undefined : err);
    } finally {
      // Answered even when the call line could not be written.
      this.callback(serviceError);
    }
  }

  private finish(code: status, err: BrokerError | undefined, internalErr: unknown): void {
    if (this.timer) clearTimeout(this.timer);
    const { handler, subject, requestId, caller } = this;
    const durationMs = Math.round((performance.now() - this.started) * 1000) / 1000;
    const user = subject.userId === undefined ? undefined : hashUserId(subject.userId);
    const { callLine } = handler;
    if (internalErr === undefined && callLine !== undefined) {
      if (callLine.enabled)
        // In CALL_LINE_KEYS order.
        callLine.write([
          requestId,
          status[code],
          durationMs,
          subject.provider,
          user,
          subject.downstream,
          caller,
          err?.reason,
          err?.metadata.cause,
        ]);
    } else {
      const line = {
        requestId,
        status: status[code],
        durationMs,
        provider: subject.provider,
        user,
        downstream: subject.downstream,
        caller,
        reason: err?.reason,
        cause: err?.metadata.cause,
      };
      if (internalErr !== undefined) handler.logger.error({ ...line, err: internalErr }, 'call failed');
      else handler.logger.info(line, 'call');
    }
    const { observers } = handler;
    if (observers.length === 0) return;
    const outcome: CallOutcome = {
      rpc: handler.rpc,
      code,
      reason: err?.reason,
      metadata: err?.metadata ?? NO_METADATA,
      durationMs,
      provider: subject.provider,
      userId: subject.userId,
      downstream: subject.downstream,
      requestId,
      caller,
    };
    for (const observe of observers) {
      try {
        observe(outcome);
      } catch (observerErr) {
        handler.logger.error({ requestId, err: observerErr }, 'call observer failed');
      }
    }
  }
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
  run: (input: Input, ctx: CallContext) => Res | Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  const logger = options.logger.child({ rpc });
  const handler: Handler<Req, Res, Input> = {
    rpc,
    logger,
    callLine: LineWriter.for(logger, 'call', CALL_LINE_KEYS),
    observers: options.observers ?? NO_OBSERVERS,
    authorize: options.authorize,
    inFlight: options.inFlight,
    validate,
    run,
  };
  return (call, callback) => {
    let unaryCall: UnaryCall<Req, Res, Input>;
    try {
      unaryCall = new UnaryCall(handler, call, callback);
    } catch (err) {
      // Not expected (reading the metadata and deadline); the call is answered all the same.
      reportError(logger, { err }, 'call wrapper failed');
      try {
        callback({ code: status.INTERNAL, details: 'internal error' });
      } catch {
        // The stream is gone: nothing left to answer.
      }
      return;
    }
    try {
      unaryCall.execute();
    } catch (err) {
      // Not expected (execute answers and logs its own errors); never thrown into grpc-js.
      reportError(logger, { err }, 'call wrapper failed');
    }
  };
}

/** Whether an operation answered with a promise (or another thenable) rather than a value. */
export function isPromiseLike<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function';
}

/** logger.error that never throws: when the logger itself fails there is nowhere left to say it. */
function reportError(logger: Logger, fields: object, msg: string): void {
  try {
    logger.error(fields, msg);
  } catch {
    // Nothing to do: the destination refused the line.
  }
}

function responseMetadata(requestId: string): Metadata {
  const metadata = new Metadata();
  metadata.set('x-request-id', requestId);
  return metadata;
}
