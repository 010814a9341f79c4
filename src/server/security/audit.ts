/**
 * The audit log: one JSON line per security-relevant event, written by a pino logger named
 * `audit` to the same destination as the service log, so operators route it by `name`. It sits
 * at `info` whatever `log_level` says (an audit trail is not debug output); only `silent`
 * silences it. Entries carry names, ids and outcomes — never token material (src/broker/audit.ts).
 * The user id is written as `user`, the same keyed handle as in the call log (src/logger.ts
 * hashUserId, src/log-keys.ts): user ids are often e-mail addresses, and the handle still answers
 * "whose token went to which caller" for an operator who runs `credbroker hash-user-id`.
 */
import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import type { AuditEntry, AuditEventName, AuditLog } from '../../broker/audit.js';
import { createLogger, hashUserId, LineWriter, type Logger } from '../../logger.js';
import type { CallObserver } from '../call.js';

export const AUDIT_LOGGER_NAME = 'audit';
/** An audit line's fields, in output order. */
const AUDIT_KEYS = [
  'event',
  'outcome',
  'caller',
  'rpc',
  'user',
  'provider',
  'cause',
  'requestId',
  'downstream',
] as const;

/** The server's AuditLog: entries as `audit` lines on the service log's destination. */
class LoggerAuditLog implements AuditLog {
  private readonly line: LineWriter | undefined;

  constructor(
    private readonly audit: Logger,
    private readonly logger: Logger,
  ) {
    this.line = LineWriter.for(audit, 'audit', AUDIT_KEYS);
  }

  record(entry: AuditEntry): void {
    this.write(
      entry.event,
      entry.outcome,
      entry.caller,
      entry.rpc,
      entry.userId,
      entry.provider,
      entry.cause,
      entry.requestId,
      entry.downstream,
    );
  }

  /** record() without the entry object (the call observer, once per call). */
  write(
    event: AuditEventName,
    outcome: string,
    caller: string | undefined,
    rpc: string | undefined,
    userId: string | undefined,
    provider: string | undefined,
    cause: string | undefined,
    requestId: string | undefined,
    downstream: string | undefined,
  ): void {
    try {
      // As in the call log: user ids are often e-mail addresses; the hash correlates.
      const user = userId === undefined ? undefined : hashUserId(userId);
      const { line } = this;
      if (line === undefined) {
        this.audit.info(
          { event, outcome, caller, rpc, user, provider, cause, requestId, downstream },
          'audit',
        );
      } else if (line.enabled) {
        // In AUDIT_KEYS order.
        line.write([event, outcome, caller, rpc, user, provider, cause, requestId, downstream]);
      }
    } catch (err) {
      this.logger.error({ err }, 'writing an audit event failed');
    }
  }
}

/**
 * An AuditLog writing to `logger`'s destination under its own logger name. A pino child would
 * repeat the `name` key in every line (`"name":"credbroker","name":"audit"`), which log
 * pipelines resolve differently, so this is a sibling root logger on the same stream.
 */
export function createAuditLog(logger: Logger): AuditLog {
  const destination = (logger as unknown as Record<symbol, pino.DestinationStream | undefined>)[
    pino.symbols.streamSym
  ];
  const audit = createLogger({
    name: AUDIT_LOGGER_NAME,
    level: logger.level === 'silent' ? 'silent' : 'info',
    ...(destination ? { destination } : {}),
  });
  return new LoggerAuditLog(audit, logger);
}

const eventByRpc: Record<string, AuditEventName> = {
  StartLogin: 'login_start',
  CompleteLogin: 'login_complete',
  GetValidSubjectToken: 'token_release',
  RevokeSubjectToken: 'revoke',
  GetDownstreamToken: 'downstream_token_release',
};

/**
 * A call observer that turns every finished CredentialBroker call into an audit entry: denials
 * (UNAUTHENTICATED / PERMISSION_DENIED from the caller policy) as `denied`, everything else as
 * the RPC's event with outcome `ok` or the ErrorInfo reason.
 */
export function auditObserver(audit: AuditLog): CallObserver {
  return (outcome) => {
    const denied = outcome.code === status.UNAUTHENTICATED || outcome.code === status.PERMISSION_DENIED;
    const event = denied ? 'denied' : eventByRpc[outcome.rpc];
    if (event === undefined) return;
    const result = outcome.code === status.OK ? 'ok' : (outcome.reason ?? status[outcome.code]);
    // On a denial the policy names the recognised caller in the error's metadata.
    const caller = outcome.caller ?? outcome.metadata.caller;
    if (audit instanceof LoggerAuditLog) {
      audit.write(
        event,
        result,
        caller,
        outcome.rpc,
        outcome.userId,
        outcome.provider,
        outcome.metadata.cause,
        outcome.requestId,
        outcome.downstream,
      );
      return;
    }
    audit.record({
      event,
      outcome: result,
      caller,
      rpc: outcome.rpc,
      userId: outcome.userId,
      provider: outcome.provider,
      downstream: outcome.downstream,
      cause: outcome.metadata.cause,
      requestId: outcome.requestId,
    });
  };
}
