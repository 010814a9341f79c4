import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../../src/config/error.js';
import { loadConfigIsolated } from '../../src/config/isolated.js';
import { loadConfig } from '../../src/config/load.js';

/** `credbroker serve` loads its configuration in a worker (src/config/isolated.ts). */
describe('loadConfigIsolated', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'credbroker-isolated-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('gives what loadConfig gives: file, environment and secret files, deeply frozen', async () => {
    const secret = write('secret', 'isolated-client-secret\n');
    const file = write(
      'ok.yaml',
      `listen: 127.0.0.1:0
providers:
  - id: corp
    issuer: https://idp.example.com
    client_id: broker
    client_secret_file: ${secret}
    redirect_uris: [https://app.example.com/callback]
`,
    );
    const env = { CREDBROKER_LOG_LEVEL: 'warn' };
    const isolated = await loadConfigIsolated({ env, file });
    assert.deepEqual(isolated, loadConfig({ env, file }));
    assert.equal(isolated.providers[0]!.client_secret, 'isolated-client-secret');
    assert.equal(isolated.log_level, 'warn');
    assert.deepEqual(isolated.source, { file, env: ['CREDBROKER_LOG_LEVEL'] });
    assert.ok(Object.isFrozen(isolated) && Object.isFrozen(isolated.providers[0]));
  });

  it('rejects with the ConfigError loadConfig throws, every problem named', async () => {
    const file = write('bad.yaml', 'listen: 127.0.0.1:0\nstore:\n  kind: nowhere\n');
    const env = { CREDBROKER_LOG_LEVEL: 'loud', CREDBROKER_NOT_A_SETTING: '1' };
    let expected: readonly string[] = [];
    try {
      loadConfig({ env, file });
    } catch (err) {
      expected = (err as ConfigError).problems;
    }
    assert.ok(expected.length >= 3, `expected several problems, got ${expected.join('; ')}`);
    await assert.rejects(loadConfigIsolated({ env, file }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.problems, expected);
      return true;
    });
  });

  it('rejects, never hangs, when the worker fails: it throws, exits without an answer, or answers an error', async () => {
    // Plain JavaScript workers: the same `new Worker(url)` branch as the built server's.
    const worker = (name: string, code: string) => pathToFileURL(write(name, code));
    await assert.rejects(
      loadConfigIsolated({ env: {} }, worker('throws.mjs', "throw new Error('worker broke');")),
      /worker broke/,
    );
    await assert.rejects(
      loadConfigIsolated({ env: {} }, worker('silent.mjs', 'process.exit(3);')),
      /the worker exited with code 3/,
    );
    await assert.rejects(
      loadConfigIsolated(
        { env: {} },
        worker(
          'message.mjs',
          "import { parentPort } from 'node:worker_threads'; parentPort.postMessage({ ok: false, message: 'odd failure' });",
        ),
      ),
      (err: unknown) =>
        !(err instanceof ConfigError) && /loading the configuration failed: odd failure/.test(String(err)),
    );
    const config = await loadConfigIsolated(
      { env: {} },
      worker(
        'ok.mjs',
        "import { parentPort, workerData } from 'node:worker_threads'; parentPort.postMessage({ ok: true, config: { nested: { file: workerData.file ?? null } } });",
      ),
    );
    assert.ok(Object.isFrozen(config) && Object.isFrozen((config as unknown as { nested: object }).nested));
  });

  it('names an unreadable file as loadConfig does', async () => {
    await assert.rejects(loadConfigIsolated({ env: {}, file: join(dir, 'missing.yaml') }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.problems, [`config file ${join(dir, 'missing.yaml')}: cannot read it (ENOENT)`]);
      return true;
    });
  });
});
