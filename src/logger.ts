/**
 * The pino root logger. Created once at the entry point and passed down; `child({ rpc })` per
 * call. Redaction is a second line of defence: no code path logs a request or response body, but
 * a secret-bearing key that slips into a log object is censored at the logger — at any depth of
 * the logged object (one pass, `censorSecrets`), and at the top level of child bindings (pino's
 * `redact`). pino's wildcard paths (`*.key`, `*.*.key`) did the same at ~300 µs per call, half
 * of the broker's CPU on the hot path (docs/PERFORMANCE.md); the one-pass censor costs ~40 µs.
 */
import { createHash, createHmac } from 'node:crypto';
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

/** A line waits at most this long in the stdout batch (ms)… */
export const STDOUT_FLUSH_MS = 5;
/** …or until the batch holds this many characters (a deferred line counted as DEFERRED_LINE_CHARS). */
export const STDOUT_FLUSH_CHARS = 64 * 1024;

/** Where BatchedStdout hands its batches (pino's synchronous destination on fd 1). */
export interface LineTarget {
  write(lines: string): unknown;
}

/** What a deferred line (BatchedStdout.defer) counts for against STDOUT_FLUSH_CHARS (a call line: ≈ 400). */
const DEFERRED_LINE_CHARS = 512;

/**
 * Standard output for every logger of the process: lines are collected and written with one
 * synchronous write when the batch is STDOUT_FLUSH_MS old or about STDOUT_FLUSH_CHARS long,
 * whichever comes first, and on exit. A call writes two lines (call, audit); pino's default
 * destination handed nearly every line to the libuv thread pool as its own fs.write, and one
 * synchronous write per event-loop turn was still a write system call for every one or two calls
 * at load (docs/PERFORMANCE.md). The fixed-shape lines of LineWriter (the call line, the audit
 * entry) are kept as their values and formatted together when the batch is written: formatting
 * a line between two calls' gRPC work cost ≈ 2 µs more per call than formatting the batch's
 * lines in one go (docs/PERFORMANCE.md, seventh pass). A line is never left in a thread-pool
 * queue, and one destination for all loggers keeps their lines in order. Lines still pending
 * are written on 'exit' (process.exit, an uncaught exception, the end of the event loop) and
 * before a second SIGTERM ends the process (src/main.ts); a process killed by a signal it does
 * not handle — SIGKILL, or SIGTERM before src/main.ts has installed its handlers — loses at most
 * the last STDOUT_FLUSH_MS of lines. Like any synchronous logger, a stalled reader of a full
 * pipe blocks the process rather than letting it buffer without bound. A failing write (EIO,
 * ENOSPC, a closed descriptor) drops that batch, and a line that cannot be formatted drops that
 * line; each is reported once on stderr: logging never throws into the code that logs (a call
 * would be left unanswered).
 */
export class BatchedStdout implements DestinationStream {
  /**
   * The batch, in order: a line as a string, or a deferred line as three entries — its
   * LineWriter, its time field and its values (one array, not an object per line).
   */
  private items: unknown[] = [];
  /** Characters in the batch (a deferred line counted as DEFERRED_LINE_CHARS). */
  private size = 0;
  private timer: NodeJS.Timeout | undefined = undefined;
  private failed = false;
  private formatFailed = false;

  constructor(private readonly target: LineTarget) {}

  write(line: string): void {
    this.items.push(line);
    this.grew(line.length);
  }

  /**
   * A LineWriter's line, formatted when the batch is written: `time` is its time field, taken
   * now; `values` are never changed afterwards (LineWriter.write).
   */
  defer(writer: LineWriter, time: string, values: readonly FieldValue[]): void {
    this.items.push(writer, time, values);
    this.grew(DEFERRED_LINE_CHARS);
  }

  private grew(chars: number): void {
    this.size += chars;
    if (this.size >= STDOUT_FLUSH_CHARS) this.drain();
    else if (this.timer === undefined) {
      this.timer = setTimeout(this.drain, STDOUT_FLUSH_MS);
      // Pending lines never keep the process alive: exit writes them.
      this.timer.unref();
    }
  }

  /** Hands the pending lines to the target now. */
  readonly drain = (): void => {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const { items } = this;
    if (items.length === 0) return;
    // A new batch before anything runs: a line logged meanwhile (by the target) joins it.
    this.items = [];
    this.size = 0;
    let lines = '';
    for (let i = 0; i < items.length;) {
      const item = items[i];
      if (item instanceof LineWriter) {
        try {
          lines += item.format(items[i + 1] as string, items[i + 2] as readonly FieldValue[]);
        } catch (err) {
          // Not expected (the values are strings and numbers): that line only is lost.
          this.reportFormatFailure(err);
        }
        i += 3;
      } else {
        lines += String(item);
        i += 1;
      }
    }
    try {
      this.target.write(lines);
    } catch (err) {
      this.reportFailure(err);
    }
  };

  /** Reports the first line that could not be formatted on stderr. */
  private reportFormatFailure(err: unknown): void {
    if (this.formatFailed) return;
    this.formatFailed = true;
    process.stderr.write(`credbroker: formatting a log line failed (${String(err)}); such lines are lost\n`);
  }

  /** Reports the first failed write on stderr (the only place left to say it). */
  reportFailure(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    const code = (err as NodeJS.ErrnoException | undefined)?.code ?? String(err);
    process.stderr.write(`credbroker: writing log lines to stdout failed (${code}); lines are being lost\n`);
  }

  flush(callback?: (err?: Error) => void): void {
    this.drain();
    callback?.();
  }

  flushSync(): void {
    this.drain();
  }
}

/** The process's stdout destination: pino's synchronous destination on fd 1, batched. */
function createStdout(): BatchedStdout {
  const target = pino.destination({ dest: 1, sync: true, minLength: 0 });
  const batched = new BatchedStdout(target);
  // sonic-boom emits write errors other than EPIPE (which it ignores); unheard, they would throw.
  target.on('error', (err: Error) => batched.reportFailure(err));
  process.once('exit', batched.drain);
  return batched;
}

let stdout: BatchedStdout | undefined;
function stdoutDestination(): BatchedStdout {
  return (stdout ??= createStdout());
}

/** Writes the log lines still pending on stdout now (before a process ends by a signal). */
export function flushStdout(): void {
  stdout?.drain();
}

/** formatters.log of every logger made here: the censor (LineWriter recognises it). */
function censorLog(object: Record<string, unknown>): Record<string, unknown> {
  return censorSecrets(object) as Record<string, unknown>;
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
      log: censorLog,
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

const {
  lsCacheSym,
  timeSym,
  chindingsSym,
  endSym,
  streamSym,
  needsMetadataGsym,
  mixinSym,
  hooksSym,
  nestedKeySym,
  messageKeySym,
  serializersSym,
  stringifiersSym,
  formattersSym,
  wildcardFirstSym,
} = pino.symbols;
/** Not in pino's typings; a child made with `{ msgPrefix }` holds it here. */
const msgPrefixSym = (pino.symbols as unknown as Record<string, symbol | undefined>).msgPrefixSym;
/** pino's level number of `info`. */
const INFO = 30;

/**
 * One field of a fixed-shape line (LineWriter): `,"key":<JSON value>`, or '' for undefined, which
 * pino omits too. `key` is a literal of the caller's; string values go through JSON.stringify.
 */
export function jsonField(key: string, value: FieldValue): string {
  if (value === undefined) return '';
  const prefix = fieldPrefix(key);
  if (typeof value === 'number') return prefix.bare + (Number.isFinite(value) ? value : 'null');
  // Most values (ids, hashes, codes) need no escaping: quoted as they are, as JSON.stringify would.
  return NEEDS_ESCAPE.test(value) ? prefix.bare + JSON.stringify(value) : prefix.quoted + value + '"';
}

/**
 * `,"key":` and `,"key":"` for each key jsonField has seen, made once: building them per field
 * was two more strings per field, ≈ 0.7 KB of garbage per call (docs/PERFORMANCE.md). The keys
 * are the callers' literals, a fixed set.
 */
const fieldPrefixes = new Map<string, { readonly bare: string; readonly quoted: string }>();
function fieldPrefix(key: string): { readonly bare: string; readonly quoted: string } {
  let prefix = fieldPrefixes.get(key);
  if (prefix === undefined) {
    const bare = `,${JSON.stringify(key)}:`;
    prefix = { bare, quoted: `${bare}"` };
    fieldPrefixes.set(key, prefix);
  }
  return prefix;
}
/** What JSON.stringify escapes in a string: quote, backslash, control characters, surrogates. */
// eslint-disable-next-line no-control-regex -- the control characters are what is looked for
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

type PinoInternals = Record<symbol, unknown>;

/** A field value of a fixed-shape line (LineWriter): undefined is omitted, as pino omits it. */
export type FieldValue = string | number | undefined;

/**
 * Writes one info line of a fixed shape — the call line, the audit entry — byte for byte as the
 * logger's `info(fields, msg)` would (level, time, bindings, fields in the order given, message),
 * without pino's generic work per line: a fields object, the censor pass over it (the fixed keys
 * carry no secret: none is in SECRET_KEYS and every value is a name, id, hash, code or number),
 * a key lookup in the serializers and redaction stringifiers per field, and the key escaping.
 * Those were ≈ 6 µs of the hot path's CPU per call plus the garbage (docs/PERFORMANCE.md).
 * The line goes to the logger's own stream, so lines stay in order with the logger's others; on
 * the process's stdout (BatchedStdout) it is formatted when its batch is written.
 */
export class LineWriter {
  /** The logger's stream when it is the process's stdout batch, which formats lines itself. */
  private readonly batched: BatchedStdout | undefined;

  private constructor(
    private readonly logger: Logger,
    private readonly msg: string,
    private readonly keys: readonly string[],
  ) {
    const stream = (logger as unknown as PinoInternals)[streamSym];
    this.batched = stream instanceof BatchedStdout ? stream : undefined;
  }

  /**
   * A writer for `logger`'s info lines with message `msg` and the fields `keys`, or undefined
   * when the logger does something per line that the writer does not (a mixin, hooks, a nested
   * key, a serializer or redaction of one of `keys`, a log formatter other than the censor, a
   * stream that wants metadata): the caller then logs through pino.
   */
  static for(logger: Logger, msg: string, keys: readonly string[]): LineWriter | undefined {
    const l = logger as unknown as PinoInternals;
    const hooks = l[hooksSym] as { logMethod?: unknown; streamWrite?: unknown } | undefined;
    const serializers = (l[serializersSym] ?? {}) as Record<string, unknown>;
    const stringifiers = (l[stringifiersSym] ?? {}) as Record<string | symbol, unknown>;
    const formatters = l[formattersSym] as { log?: unknown } | undefined;
    const stream = l[streamSym] as Record<symbol, unknown> | undefined;
    const plain =
      typeof l[lsCacheSym] === 'object' &&
      typeof l[timeSym] === 'function' &&
      typeof l[chindingsSym] === 'string' &&
      typeof l[endSym] === 'string' &&
      l[messageKeySym] === 'msg' &&
      !l[mixinSym] &&
      !l[nestedKeySym] &&
      (msgPrefixSym === undefined || !l[msgPrefixSym]) &&
      !hooks?.logMethod &&
      !hooks?.streamWrite &&
      stream !== undefined &&
      stream[needsMetadataGsym] !== true &&
      (formatters?.log === undefined || formatters.log === censorLog) &&
      stringifiers[wildcardFirstSym] === undefined &&
      keys.every((k) => serializers[k] === undefined && stringifiers[k] === undefined && !SECRET.has(k));
    return plain ? new LineWriter(logger, `,"msg":${JSON.stringify(msg)}`, [...keys]) : undefined;
  }

  /** Whether the logger writes info lines now (its level may change at run time). */
  get enabled(): boolean {
    return this.logger.levelVal <= INFO;
  }

  /**
   * Writes the line with `values` for the writer's keys, in their order; the caller does not
   * change `values` afterwards (a batched line is formatted later, with the time taken now).
   */
  write(values: readonly FieldValue[]): void {
    const l = this.logger as unknown as PinoInternals;
    const time = (l[timeSym] as () => string)();
    if (this.batched !== undefined) this.batched.defer(this, time, values);
    else (l[streamSym] as DestinationStream).write(this.format(time, values));
  }

  /** The line for `values` with the time field `time`, as pino's `info(fields, msg)` writes it. */
  format(time: string, values: readonly FieldValue[]): string {
    const l = this.logger as unknown as PinoInternals;
    const { keys } = this;
    let fields = '';
    for (let i = 0; i < keys.length; i++) fields += jsonField(keys[i]!, values[i]);
    return (
      (l[lsCacheSym] as Record<number, string>)[INFO]! +
      time +
      (l[chindingsSym] as string) +
      fields +
      this.msg +
      (l[endSym] as string)
    );
  }
}

/** Recently hashed user ids: a call logs its user twice (call line, audit line), callers repeat. */
const userHashes = new Map<string, string>();
const MAX_CACHED_USER_HASHES = 10_000;
/** What user ids are hashed with in this process's lines; undefined: no key (see userIdHash). */
let userHashKey: Buffer | undefined;

/**
 * Sets the key this process hashes user ids with in its log and audit lines: once at start-up
 * (src/app.ts, from src/log-keys.ts userHashKeys); undefined for none.
 */
export function setUserHashKey(key: Buffer | undefined): void {
  userHashKey = key;
  userHashes.clear();
}

/**
 * The handle of a user id in logs: 16 hex digits of HMAC-SHA-256 under `key`, or of a plain
 * SHA-256 without one. Lets operators correlate lines for one user without writing the id
 * (often an e-mail address) down. Only the keyed form keeps the id from whoever reads the logs:
 * a plain hash of a guessable id is found by hashing guesses. `credbroker hash-user-id` prints
 * the handle an id has under each configured key.
 */
export function userIdHash(userId: string, key: Buffer | undefined): string {
  const hash =
    key === undefined
      ? createHash('sha256').update('credbroker:user:').update(userId)
      : createHmac('sha256', key).update(userId);
  return hash.digest('hex').slice(0, 16);
}

/**
 * userIdHash under this process's key (setUserHashKey). Memoized (bounded): the hash was ~3 % of
 * the hot path's CPU, computed twice per call.
 */
export function hashUserId(userId: string): string {
  let hash = userHashes.get(userId);
  if (hash === undefined) {
    hash = userIdHash(userId, userHashKey);
    if (userHashes.size >= MAX_CACHED_USER_HASHES) userHashes.clear();
    userHashes.set(userId, hash);
  }
  return hash;
}
