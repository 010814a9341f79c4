/**
 * What the per-call logging of a GetValidSubjectToken call costs in CPU — src/server/call.ts's
 * `logger.child({ rpc })`, `.child({ requestId })` and `info` call line, plus the audit entry
 * (`token_release`, src/server/security/audit.ts: a second root logger, always at info) — with
 * the production logger (src/logger.ts: top-level redact paths plus the one-pass `censorSecrets`
 * formatter), compared with pino without redaction and with the wildcard redaction
 * (`*.key`, `*.*.key`) src/logger.ts used before (see docs/PERFORMANCE.md).
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { BatchedStdout, createLogger, LineWriter, SECRET_KEYS } from '../src/logger.js';

const sink = () =>
  new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });

/** What src/logger.ts did before: pino's wildcard redaction (`*.key`, `*.*.key`) of every key. */
function wildcardRedactLogger(): Logger {
  const paths = SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);
  return pino({ level: 'info', redact: { paths, censor: '[REDACTED]' } }, sink());
}

function perCallMicros(make: () => Logger, calls: number): number {
  const logger = make();
  const audit = make();
  const line = { status: 'OK', durationMs: 0.42, provider: 'corp', user: '0123456789abcdef' };
  const entry = {
    event: 'token_release',
    outcome: 'ok',
    rpc: 'GetValidSubjectToken',
    user: '0123456789abcdef',
    provider: 'corp',
  };
  const once = (i: number) => {
    logger
      .child({ rpc: 'GetValidSubjectToken' })
      .child({ requestId: `req-${i}` })
      .info(line, 'call');
    audit.info({ ...entry, requestId: `req-${i}` }, 'audit');
  };
  for (let i = 0; i < 2000; i++) once(i); // warm up the JIT
  const started = process.cpuUsage();
  for (let i = 0; i < calls; i++) once(i);
  const used = process.cpuUsage(started);
  return Math.round(((used.user + used.system) / calls) * 10) / 10;
}

/**
 * The two lines as src/server/call.ts and src/server/security/audit.ts write them now (no
 * per-call child logger): through pino's `info(fields, msg)` (`fixed = false`, what they did
 * before the LineWriter) or through the LineWriter (`fixed = true`).
 */
function twoLinesMicros(fixed: boolean, calls: number): number {
  // src/logger.ts's stdout destination (the LineWriter's lines formatted when a batch is
  // written), handing its batches to a target that drops them.
  const destination = new BatchedStdout({ write: () => undefined });
  const logger = createLogger({ level: 'info', destination }).child({ rpc: 'GetValidSubjectToken' });
  const audit = createLogger({ level: 'info', destination, name: 'audit' });
  const callKeys = ['requestId', 'status', 'durationMs', 'provider', 'user'];
  const auditKeys = ['event', 'outcome', 'rpc', 'user', 'provider', 'requestId'];
  const callLine = LineWriter.for(logger, 'call', callKeys)!;
  const auditLine = LineWriter.for(audit, 'audit', auditKeys)!;
  const user = '0123456789abcdef';
  const once = (i: number) => {
    const requestId = `req-${i}`;
    const durationMs = (i % 1000) / 997;
    if (fixed) {
      callLine.write([requestId, 'OK', durationMs, 'corp', user]);
      auditLine.write(['token_release', 'ok', 'GetValidSubjectToken', user, 'corp', requestId]);
    } else {
      logger.info({ requestId, status: 'OK', durationMs, provider: 'corp', user }, 'call');
      audit.info(
        {
          event: 'token_release',
          outcome: 'ok',
          rpc: 'GetValidSubjectToken',
          user,
          provider: 'corp',
          requestId,
        },
        'audit',
      );
    }
  };
  for (let i = 0; i < 5000; i++) once(i); // warm up the JIT
  destination.drain();
  const started = process.cpuUsage();
  for (let i = 0; i < calls; i++) once(i);
  // The last batch's lines are formatted (and handed on) here: part of what the calls cost.
  destination.drain();
  const used = process.cpuUsage(started);
  return Math.round(((used.user + used.system) / calls) * 100) / 100;
}

export interface LoggerCost {
  /** CPU µs per call for the logging of one call (2 child loggers, call line, audit line). */
  readonly productionLogger: number;
  readonly withoutRedaction: number;
  readonly previousWildcardRedaction: number;
  /** The call and audit lines as written now (LineWriter), and through pino's info() before it. */
  readonly twoLinesFixedWriter: number;
  readonly twoLinesPinoInfo: number;
}

export function measureLoggerCost(calls = 20_000): LoggerCost {
  return {
    productionLogger: perCallMicros(() => createLogger({ level: 'info', destination: sink() }), calls),
    withoutRedaction: perCallMicros(() => pino({ level: 'info' }, sink()), calls),
    previousWildcardRedaction: perCallMicros(wildcardRedactLogger, calls),
    twoLinesPinoInfo: twoLinesMicros(false, calls * 5),
    twoLinesFixedWriter: twoLinesMicros(true, calls * 5),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(measureLoggerCost());
