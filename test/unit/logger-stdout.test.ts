/**
 * The stdout destination (src/logger.ts BatchedStdout), in child processes whose standard output
 * is a pipe read here: lines arrive whole and in order, batches are bounded by size, and pending
 * lines are written however the process ends short of SIGKILL.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { BatchedStdout, STDOUT_FLUSH_CHARS, STDOUT_FLUSH_MS } from '../../src/logger.js';

const LOGGER = fileURLToPath(new URL('../../src/logger.ts', import.meta.url));

interface Run {
  readonly code: number | null;
  readonly lines: Record<string, unknown>[];
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
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) =>
      resolve({
        code,
        lines: out
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as Record<string, unknown>),
      }),
    );
  });
}

describe('logger: BatchedStdout', () => {
  const line = (i: number) => `{"i":${i},"pad":"${'x'.repeat(90)}"}\n`;

  it('writes nothing while the batch is young and small, then one write with every line in order', async () => {
    const writes: string[] = [];
    const out = new BatchedStdout({ write: (s: string) => writes.push(s) });
    for (let i = 0; i < 10; i++) out.write(line(i));
    assert.equal(writes.length, 0, 'no write per line');
    await sleep(STDOUT_FLUSH_MS * 10);
    assert.deepEqual(writes, [Array.from({ length: 10 }, (_, i) => line(i)).join('')]);
  });

  it('writes as soon as the batch reaches its size bound, never more than the bound plus one line', () => {
    const writes: string[] = [];
    const out = new BatchedStdout({ write: (s: string) => writes.push(s) });
    const lines = Math.ceil((3 * STDOUT_FLUSH_CHARS) / line(0).length);
    for (let i = 0; i < lines; i++) out.write(line(i));
    // Synchronously, before any timer could run: the size bound alone wrote these.
    assert.equal(writes.length, 3);
    for (const w of writes) {
      assert.ok(w.length >= STDOUT_FLUSH_CHARS && w.length < STDOUT_FLUSH_CHARS + line(lines).length);
    }
    out.drain();
    assert.equal(writes.join(''), Array.from({ length: lines }, (_, i) => line(i)).join(''));
  });

  it('never throws into the code that logs when a write fails, and says so once on stderr', () => {
    const reported: string[] = [];
    const original = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) =>
      reported.push(String(chunk)) > 0) as typeof process.stderr.write;
    try {
      const out = new BatchedStdout({
        write: () => {
          throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
        },
      });
      for (let i = 0; i < 2 * STDOUT_FLUSH_CHARS; i += 100) out.write(line(i));
      out.drain();
    } finally {
      process.stderr.write = original;
    }
    assert.equal(reported.length, 1);
    assert.match(reported[0]!, /writing log lines to stdout failed \(ENOSPC\)/);
  });
});

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
