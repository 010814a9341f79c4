/**
 * The pino root logger. Created once at the entry point and passed down; `child({ rpc })` per
 * call. Redaction is a second line of defence: no code path logs a request or response body, but
 * a secret-bearing key that slips into a log object is censored at the logger — at any depth of
 * the logged object (one pass, `censorSecrets`), and at the top level of child bindings (pino's
 * `redact`). pino's wildcard paths (`*.key`, `*.*.key`) did the same at ~300 µs per call, half
 * of the broker's CPU on the hot path (docs/PERFORMANCE.md); the one-pass censor costs ~40 µs.
 */
import { createHash } from 'node:crypto';
import { pino, stdSerializers, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/** Keys that may carry a token, code, verifier, key or secret, in any spelling we use. */
export const SECRET_KEYS = [
  'access_token',
  'accessToken',
  'refresh_token',
  'refreshToken',
  'id_token',
  'idToken',
  'code',
  'code_verifier',
  'codeVerifier',
  'verifier',
  'nonce',
  'state',
  'client_secret',
  'clientSecret',
  'authorization',
  'Authorization',
  'password',
  'secret',
  'key',
  'keys',
  'apiKey',
  'api_key',
  'token',
  'assertion',
  'client_assertion',
] as const;

const CENSOR = '[REDACTED]';
const SECRET: ReadonlySet<string> = new Set(SECRET_KEYS);
/** Deeper than anything we log; bounds the walk on a pathological object. */
const MAX_CENSOR_DEPTH = 6;

/**
 * Returns `value` itself when it holds no secret-named key, else a copy with every such key's
 * value replaced by `[REDACTED]` (only the objects on the path to a secret are copied). Errors
 * are left to the `err` serializer (serializeError).
 */
export function censorSecrets(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object' || value instanceof Error || depth > MAX_CENSOR_DEPTH) {
    return value;
  }
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
  // for…in over own keys: Object.keys would allocate an array per logged object.
  for (const key in record) {
    if (!Object.hasOwn(record, key)) continue;
    const item = record[key];
    const censored = SECRET.has(key) ? CENSOR : censorSecrets(item, depth + 1);
    if (censored !== item) (copy ??= { ...record })[key] = censored;
  }
  return copy ?? value;
}

/**
 * Error properties that carry request data rather than a description of the failure: ioredis
 * attaches the failed command with its arguments (`command.args`: key names with the user id,
 * the user id itself, sealed records, lock owners); fetch and OAuth libraries attach the
 * response or its body.
 */
const DROPPED_ERROR_KEYS = ['command', 'response', 'body'] as const;

type SerializedError = Record<string, unknown>;

function scrub(serialized: SerializedError, depth: number): SerializedError {
  for (const key of DROPPED_ERROR_KEYS) delete serialized[key];
  // formatters.log (censorSecrets) does not look inside errors. An error's `code` is its error
  // code (ECONNREFUSED, OAUTH_PARSE_ERROR), not an authorization code: kept.
  for (const key of Object.keys(serialized)) {
    if (key !== 'code' && SECRET.has(key)) serialized[key] = CENSOR;
  }
  // BrokerError metadata names the user (ErrorInfo metadata.userId): logs get the hash only.
  const metadata = serialized.metadata;
  if (metadata !== null && typeof metadata === 'object' && 'userId' in metadata) {
    const { userId, ...rest } = metadata as Record<string, unknown>;
    serialized.metadata = typeof userId === 'string' ? { ...rest, userIdHash: hashUserId(userId) } : rest;
  }
  if (depth < 8) {
    for (const [key, value] of Object.entries(serialized)) {
      if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'message' in value) {
        serialized[key] = scrub(value as SerializedError, depth + 1);
      }
    }
    if (Array.isArray(serialized.aggregateErrors)) {
      serialized.aggregateErrors = (serialized.aggregateErrors as SerializedError[]).map((e) =>
        scrub(e, depth + 1),
      );
    }
  }
  return serialized;
}

/**
 * pino's default error serializer (type, message and stack with those of the `cause` chain,
 * enumerable properties) minus what an error may carry about the request: DROPPED_ERROR_KEYS,
 * and BrokerError `metadata.userId`, which becomes `userIdHash`.
 */
export function serializeError(err: unknown): unknown {
  const serialized = stdSerializers.err(err as Error) as unknown;
  if (serialized === null || typeof serialized !== 'object' || serialized === err) return serialized;
  return scrub(serialized as SerializedError, 0);
}

let lastTimeMs = Number.NaN;
let lastTime = '';

/**
 * pino.stdTimeFunctions.isoTime (`,"time":"<ISO 8601>"`), formatted once per millisecond:
 * formatting a Date was ~2 % of the hot path's CPU, and a busy broker writes many lines per ms.
 */
export function isoTime(): string {
  const now = Date.now();
  if (now !== lastTimeMs) {
    lastTimeMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
}

/**
 * Standard output for every logger of the process: lines are collected during an event-loop turn
 * and written with one synchronous write at its end (setImmediate). A call writes two lines
 * (call, audit) and a busy broker finishes several calls per turn; pino's default destination
 * handed nearly every line to the libuv thread pool as its own fs.write, ~8–10 µs of CPU per call
 * (docs/PERFORMANCE.md). A line now waits at most for the rest of its turn, and is never left in
 * a thread-pool queue: pending lines are written on exit too. One destination for all loggers
 * also keeps their lines in order. Like any synchronous logger, a stalled reader of a full pipe
 * blocks the process rather than letting it buffer without bound.
 */
class TurnBatchedStdout implements DestinationStream {
  private pending = '';
  private scheduled = false;
  private readonly target = pino.destination({ dest: 1, sync: true, minLength: 0 });

  constructor() {
    process.once('exit', () => this.drain());
  }

  write(line: string): void {
    this.pending += line;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.drain);
    }
  }

  /** Hands the pending lines to the underlying stream. */
  readonly drain = (): void => {
    this.scheduled = false;
    const lines = this.pending;
    if (lines === '') return;
    this.pending = '';
    this.target.write(lines);
  };

  flush(callback?: (err?: Error) => void): void {
    this.drain();
    this.target.flush(callback as (err?: Error) => void);
  }

  flushSync(): void {
    this.drain();
    this.target.flushSync();
  }
}

let stdout: TurnBatchedStdout | undefined;
function stdoutDestination(): TurnBatchedStdout {
  return (stdout ??= new TurnBatchedStdout());
}

export interface CreateLoggerOptions {
  readonly level?: string;
  readonly pretty?: boolean;
  /** Where lines go; default stdout. Tests pass a capturing stream. */
  readonly destination?: DestinationStream;
  readonly name?: string;
}

export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const base: LoggerOptions = {
    name: options.name ?? 'credbroker',
    level: options.level ?? 'info',
    // Top-level paths are cheap and also cover child-logger bindings; nested keys: censorSecrets.
    redact: { paths: [...SECRET_KEYS], censor: CENSOR },
    serializers: { err: serializeError },
    timestamp: isoTime,
    formatters: {
      level: (label) => ({ level: label }),
      log: (object) => censorSecrets(object) as Record<string, unknown>,
    },
  };
  if (options.destination) return pino(base, options.destination);
  if (options.pretty)
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true } } });
  // As pino does: when something replaced process.stdout.write (a capture), write through it.
  const tampered =
    process.stdout.write !== (process.stdout.constructor.prototype as { write: unknown }).write;
  return tampered ? pino(base) : pino(base, stdoutDestination());
}

/** Recently hashed user ids: a call logs its user twice (call line, audit line), callers repeat. */
const userHashes = new Map<string, string>();
const MAX_CACHED_USER_HASHES = 10_000;

/**
 * A stable, non-reversible handle for a user id in logs: SHA-256 truncated to 16 hex digits.
 * Lets operators correlate lines for one user without writing the id (often an email) down.
 * Memoized (bounded): the hash was ~3 % of the hot path's CPU, computed twice per call.
 */
export function hashUserId(userId: string): string {
  let hash = userHashes.get(userId);
  if (hash === undefined) {
    hash = createHash('sha256').update('credbroker:user:').update(userId).digest('hex').slice(0, 16);
    if (userHashes.size >= MAX_CACHED_USER_HASHES) userHashes.clear();
    userHashes.set(userId, hash);
  }
  return hash;
}
