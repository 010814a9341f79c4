import { logVerbosity, setLogger, setLogVerbosity } from '@grpc/grpc-js';
import type { Logger } from '../logger.js';

/**
 * grpc-js tracers (GRPC_TRACE=server_call, all, …) print a call's request headers as JSON, the
 * caller's `authorization: Bearer <api key>` included. The logger's redact list cannot see into a
 * message string, so the value is cut out here.
 */
const AUTHORIZATION_HEADER = /("authorization"\s*:\s*)(\[[^\]]*\]|"[^"]*")/gi;
const BEARER_CREDENTIAL = /\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*/gi;

/** A grpc-js diagnostic line without any `authorization` value or bearer credential in it. */
export function scrubGrpcLogText(text: string): string {
  return text.replace(AUTHORIZATION_HEADER, '$1"[REDACTED]"').replace(BEARER_CREDENTIAL, '$1 [REDACTED]');
}

/** Routes grpc-js's own diagnostics into pino (STYLE §7), at warn level and above by default. */
export function routeGrpcLogs(logger: Logger): void {
  const grpcLogger = logger.child({ component: 'grpc-js' });
  const write =
    (level: 'error' | 'info' | 'debug') =>
    (...args: unknown[]): void =>
      grpcLogger[level](scrubGrpcLogText(args.map(String).join(' ')));
  setLogger({ error: write('error'), info: write('info'), debug: write('debug') });
  setLogVerbosity(logger.isLevelEnabled('debug') ? logVerbosity.DEBUG : logVerbosity.ERROR);
}
