import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/logger.js';

/** A pino logger whose JSON lines are kept in memory, to assert on (and to prove secrets absent). */
export interface CapturedLogs {
  readonly logger: Logger;
  readonly lines: string[];
  text(): string;
  records(): Record<string, unknown>[];
}

export function captureLogs(level = 'trace'): CapturedLogs {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((l) => l !== ''),
      );
      callback();
    },
  });
  const logger = createLogger({ level, destination });
  return {
    logger,
    lines,
    text: () => lines.join('\n'),
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
