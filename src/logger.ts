/**
 * The pino root logger. Created once at the entry point and passed down; `child({ rpc })` per
 * call. The redact list is a second line of defence: no code path logs a request or response
 * body, but a secret-bearing key that slips into a log object is censored at the logger.
 */
import { createHash } from 'node:crypto';
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

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

const redactPaths = SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

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
    redact: { paths: redactPaths, censor: '[REDACTED]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  if (options.destination) return pino(base, options.destination);
  if (options.pretty)
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true } } });
  return pino(base);
}

/**
 * A stable, non-reversible handle for a user id in logs: SHA-256 truncated to 16 hex digits.
 * Lets operators correlate lines for one user without writing the id (often an email) down.
 */
export function hashUserId(userId: string): string {
  return createHash('sha256').update('credbroker:user:').update(userId).digest('hex').slice(0, 16);
}
