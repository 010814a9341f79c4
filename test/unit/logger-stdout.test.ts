/**
 * The stdout destination (src/logger.ts BatchedStdout), in child processes whose standard output
 * is a pipe read here: lines arrive whole and in order, batches are bounded by size, and pending
 * lines are written however the process ends short of SIGKILL.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const LOGGER = fileURLToPath(new URL('../../src/logger.ts', import.meta.url));

interface Run {
  readonly code: number | null;
  readonly lines: Record<string, unknown>[];
  /** How many separate reads the pipe delivered (≥ the number of writes that reached it). */
  readonly chunks: number;
}

/** Runs `body` (ES module code; `logger` is a createLogger() on stdout) in a child process. */
function runChild(body: string): Promise<Run> {
  const script = `import { createLogger } from ${JSON.stringify(LOGGER)};
const logger = createLogger({ name: 't' });
${body}`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let out = '';
  let chunks = 0;
  child.stdout.on('data', (d: Buffer) => {
    chunks++;
    out += d.toString();
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) =>
      resolve({
        code,
        chunks,
        lines: out
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as Record<string, unknown>),
      }),
    );
  });
}

describe('logger: standard output', function () {
  this.timeout(20_000);

  it('writes every line whole and in order, and the lines still pending when the process exits', async () => {
    const run = await runChild(`for (let i = 0; i < 3000; i++) logger.info({ i }, 'line');
process.exit(3);`);
    assert.equal(run.code, 3);
    assert.deepEqual(
      run.lines.map((l) => l.i),
      Array.from({ length: 3000 }, (_, i) => i),
    );
    // 3000 lines of ≈ 100 characters are ≈ 300 KB: written in batches of 64 Ki characters, so
    // the pipe saw several writes, not one per line and not one at exit.
    assert.ok(run.chunks >= 3 && run.chunks < 1000, `${run.chunks} reads`);
  });

  it('writes lines logged while the process stays up, without waiting for more', async () => {
    // The child logs a line, another 200 ms later, and kills itself 200 ms after that: SIGKILL
    // writes nothing at exit, so both lines came out through the batch timer (5 ms).
    const run = await runChild(`logger.info('first');
setTimeout(() => {
  logger.info('second');
  setTimeout(() => process.kill(process.pid, 'SIGKILL'), 200);
}, 200);`);
    assert.deepEqual(
      run.lines.map((l) => l.msg),
      ['first', 'second'],
    );
  });

  it('writes pending lines when the process dies of an uncaught exception', async () => {
    const run = await runChild(`logger.info('before the throw');
throw new Error('boom');`);
    assert.equal(run.code, 1);
    assert.deepEqual(
      run.lines.map((l) => l.msg),
      ['before the throw'],
    );
  });
});
