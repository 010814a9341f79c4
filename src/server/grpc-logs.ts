import { logVerbosity, setLogger, setLogVerbosity } from '@grpc/grpc-js';
import type { Logger } from '../logger.js';

/** Routes grpc-js's own diagnostics into pino (STYLE §7), at warn level and above by default. */
export function routeGrpcLogs(logger: Logger): void {
  const grpcLogger = logger.child({ component: 'grpc-js' });
  const write =
    (level: 'error' | 'info' | 'debug') =>
    (...args: unknown[]): void =>
      grpcLogger[level](args.map(String).join(' '));
  setLogger({ error: write('error'), info: write('info'), debug: write('debug') });
  setLogVerbosity(logger.isLevelEnabled('debug') ? logVerbosity.DEBUG : logVerbosity.ERROR);
}
