/**
 * What the per-call logging of a GetValidSubjectToken call costs in CPU — src/server/call.ts's
 * `logger.child({ rpc })`, `.child({ requestId })` and `info` call line, plus the audit entry
 * (`token_release`, src/server/security/audit.ts: a second root logger, always at info) — with
 * the production logger
 * (src/logger.ts: pino with 75 redact paths, two thirds of them `*.key` / `*.*.key` wildcards),
 * compared with pino without redaction and with a candidate that keeps the same protection:
 * top-level redact paths (cheap) plus a `formatters.log` that censors secret keys at any depth
 * of the logged object in one pass. The candidate is measured here only; src/logger.ts is
 * unchanged (see docs/PERFORMANCE.md).
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { createLogger, SECRET_KEYS } from '../src/logger.js';

const CENSOR = '[REDACTED]';
const SECRET: ReadonlySet<string> = new Set(SECRET_KEYS);

/** Returns `value`, or a shallow-copied path to every secret key replaced by CENSOR (depth ≤ 6). */
export function censorSecrets(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object' || value instanceof Error || depth > 6) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, i) => {
      const censored = censorSecrets(item, depth + 1);
      if (censored !== item) (copy ??= [...value])[i] = censored;
    });
    return copy ?? value;
  }
  const record = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(record)) {
    const item = record[key];
    const censored = SECRET.has(key) ? CENSOR : censorSecrets(item, depth + 1);
    if (censored !== item) (copy ??= { ...record })[key] = censored;
  }
  return copy ?? value;
}

const sink = () =>
  new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });

function candidateLogger(): Logger {
  return pino(
    {
      name: 'credbroker',
      level: 'info',
      redact: { paths: [...SECRET_KEYS], censor: CENSOR },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: (object) => censorSecrets(object) as Record<string, unknown>,
      },
    },
    sink(),
  );
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

export interface LoggerCost {
  /** CPU µs per call for the logging of one call (2 child loggers, call line, audit line). */
  readonly productionLogger: number;
  readonly withoutRedaction: number;
  readonly candidateTopLevelRedactPlusFormatter: number;
}

export function measureLoggerCost(calls = 20_000): LoggerCost {
  return {
    productionLogger: perCallMicros(() => createLogger({ level: 'info', destination: sink() }), calls),
    withoutRedaction: perCallMicros(() => pino({ level: 'info' }, sink()), calls),
    candidateTopLevelRedactPlusFormatter: perCallMicros(candidateLogger, calls),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(measureLoggerCost());
