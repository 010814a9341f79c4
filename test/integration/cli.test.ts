import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkHealth } from '../../src/cli/healthcheck.js';
import { userIdHash } from '../../src/logger.js';
import { deriveUserHashKey } from '../../src/log-keys.js';
import { runCli, spawnCli } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { waitForPort } from '../helpers/redis.js';
import { waitUntil } from '../helpers/wait.js';

describe('credbroker CLI', function () {
  // Each case starts real processes through tsx: seconds each on a loaded 2-core machine.
  this.timeout(90_000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'credbroker-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('prints help for every command', async () => {
    const top = await runCli(['--help']);
    assert.equal(top.code, 0);
    for (const command of ['serve', 'check-config', 'keygen', 'healthcheck', 'hash-user-id']) {
      assert.match(top.stdout, new RegExp(`\\b${command}\\b`));
      const help = await runCli([command, '--help']);
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, new RegExp(`credbroker ${command}`));
    }
  });

  it('keygen prints an id and a base64 32-byte key', async () => {
    const result = await runCli(['keygen']);
    assert.equal(result.code, 0);
    const [id, key] = result.stdout.trim().split(':');
    assert.match(id!, /^k\d{8}[0-9a-f]{4}$/);
    assert.equal(Buffer.from(key!, 'base64').length, 32);
  });

  it('hash-user-id prints the handle under every key the logs may have used, the one written with first', async () => {
    const [k1, k2] = [randomBytes(32), randomBytes(32)];
    const keys = {
      CREDBROKER_KEYS: `k1:${k1.toString('base64')},k2:${k2.toString('base64')}`,
      CREDBROKER_ACTIVE_KEY: 'k2',
    };
    const id = 'alice@example.com';
    const fromRing = await runCli(['hash-user-id', '--user', id], keys);
    assert.equal(fromRing.code, 0, fromRing.stderr);
    assert.equal(
      fromRing.stdout,
      `${userIdHash(id, deriveUserHashKey(k2))}  store key k2 (active)\n` +
        `${userIdHash(id, deriveUserHashKey(k1))}  store key k1\n`,
    );
    assert.ok(!fromRing.stdout.includes('alice'), 'the id itself is not printed');

    // log_user_hash_key wins over the ring; the id may come on stdin.
    const logKey = randomBytes(24).toString('base64');
    const own = await runCli(
      ['hash-user-id', '--user', '-'],
      { ...keys, CREDBROKER_LOG_USER_HASH_KEY: logKey },
      15_000,
      `${id}\n`,
    );
    assert.equal(own.code, 0, own.stderr);
    const expected = userIdHash(id, deriveUserHashKey(Buffer.from(logKey, 'utf8')));
    assert.equal(
      own.stdout,
      `${expected}  log_user_hash_key\n` +
        `${userIdHash(id, deriveUserHashKey(k2))}  store key k2 (active), without log_user_hash_key\n` +
        `${userIdHash(id, deriveUserHashKey(k1))}  store key k1, without log_user_hash_key\n`,
    );
    assert.notEqual(expected, userIdHash(id, deriveUserHashKey(k2)));

    const unkeyed = await runCli(['hash-user-id', '--user', id]);
    assert.equal(unkeyed.code, 0, unkeyed.stderr);
    assert.equal(unkeyed.stdout, `${userIdHash(id, undefined)}  unkeyed\n`);

    const missing = await runCli(['hash-user-id']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--user: the user id to hash is required/);
    const short = await runCli(['hash-user-id', '--user', id], { CREDBROKER_LOG_USER_HASH_KEY: 'too-short' });
    assert.equal(short.code, 2);
    assert.match(short.stderr, /log_user_hash_key: must be at least 32 characters/);
    const spaces = await runCli(['hash-user-id', '--user', id], {
      CREDBROKER_LOG_USER_HASH_KEY: ' '.repeat(40),
    });
    assert.equal(spaces.code, 2, 'a key of blanks is no key');
    // Surrounding whitespace (a Secret made from a file ends in a newline) is not part of the key.
    const padded = await runCli(['hash-user-id', '--user', id], {
      CREDBROKER_LOG_USER_HASH_KEY: `${logKey}\n`,
    });
    assert.equal(padded.stdout.split('  ')[0], expected);
    assert.ok(!short.stderr.includes('too-short'), 'the key is not echoed');
  });

  it('check-config prints the effective config with secrets masked', async () => {
    const secret = write('secret', 'sup3r-s3cret\n');
    const config = write(
      'ok.yaml',
      `listen: 127.0.0.1:50051\nproviders:\n  - id: corp\n    issuer: https://login.example.com\n    client_id: c\n    client_secret_file: ${secret}\n    redirect_uris: [https://app.example.com/cb]\n`,
    );
    const key = Buffer.alloc(32, 7).toString('base64');
    const logKey = write('log-key', 'log-user-hash-key-0123456789abcdefghij\n');
    const result = await runCli(['check-config', '--config', config], {
      CREDBROKER_KEYS: `k1:${key}`,
      CREDBROKER_LOG_USER_HASH_KEY_FILE: logKey,
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /client_secret: "\*\*\*"/);
    assert.match(result.stdout, /log_user_hash_key: "\*\*\*"/);
    assert.ok(!result.stdout.includes('sup3r-s3cret'));
    assert.ok(!result.stdout.includes(key));
    assert.ok(!result.stdout.includes('log-user-hash-key-0123'));

    // Neither log_user_hash_key nor store keys: user ids in logs are plain hashes, said on stderr.
    const unkeyed = await runCli(['check-config', '--config', config]);
    assert.equal(unkeyed.code, 0, unkeyed.stderr);
    assert.match(unkeyed.stderr, /warning: user ids in log lines are plain SHA-256 hashes/);
    assert.ok(!result.stderr.includes('plain SHA-256'), 'no such warning with a key');
  });

  for (const [what, yaml, field] of [
    ['a bad type', 'store:\n  subject_tokens: maybe\n', 'store.subject_tokens'],
    [
      'an unknown provider field',
      'providers:\n  - id: corp\n    issuer: https://x.example\n    client_id: c\n    client_secret: s\n    redirect_uris: [https://a.example/cb]\n    tenantt: x\n',
      'providers[0]',
    ],
    [
      'a bad URL',
      'providers:\n  - id: corp\n    issuer: ftp//nope\n    client_id: c\n    client_secret: s\n    redirect_uris: [https://a.example/cb]\n',
      'providers[0].issuer',
    ],
  ] as const) {
    it(`check-config and serve exit non-zero naming the field for ${what}`, async () => {
      const config = write(`bad-${field}.yaml`, yaml);
      for (const command of ['check-config', 'serve']) {
        const result = await runCli([command, '--config', config]);
        assert.equal(result.code, 2, `${command}: ${result.stdout}${result.stderr}`);
        assert.ok(result.stderr.includes(field), `${command} stderr: ${result.stderr}`);
      }
    });
  }

  it('serve ends at a second SIGTERM during the shutdown delay, killed by that signal, with whole log lines', async () => {
    const health = await freePort();
    const child = spawnCli(['serve'], {
      CREDBROKER_LISTEN: `127.0.0.1:${await freePort()}`,
      CREDBROKER_HEALTH_LISTEN: `127.0.0.1:${health}`,
      CREDBROKER_METRICS_LISTEN: '',
      CREDBROKER_SHUTDOWN_DELAY: '60s',
    });
    try {
      await waitForPort(health, 15_000);
      child.kill('SIGTERM');
      await waitUntil(() => child.output().stdout.includes('"msg":"shutting down"'), {
        timeoutMs: 10_000,
        intervalMs: 25,
        what: 'the shutting-down line',
      });
      // Handled: the batched lines are written, then the signal is raised again with no handler.
      child.kill('SIGTERM');
      const result = await child.exited;
      assert.equal(result.signal, 'SIGTERM', `${result.code} ${result.stderr}`);
      const lines = result.stdout.trim().split('\n');
      assert.ok(
        lines.every((l) => JSON.parse(l) !== undefined),
        'whole JSON lines only',
      );
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('serve answers health, reports NOT_SERVING after SIGTERM and exits 0 within the grace period', async () => {
    const [api, health] = [await freePort(), await freePort()];
    const child = spawnCli(['serve'], {
      CREDBROKER_LISTEN: `127.0.0.1:${api}`,
      CREDBROKER_HEALTH_LISTEN: `127.0.0.1:${health}`,
      CREDBROKER_METRICS_LISTEN: '',
      CREDBROKER_SHUTDOWN_DELAY: '1500ms',
      CREDBROKER_SHUTDOWN_GRACE: '3s',
    });
    try {
      await waitForPort(health, 15_000);
      assert.equal(
        await checkHealth({ address: `127.0.0.1:${health}`, service: '', timeoutMs: 2000 }),
        'SERVING',
      );
      const probe = await runCli(['healthcheck', '--address', `127.0.0.1:${health}`]);
      assert.equal(probe.code, 0, probe.stderr);
      assert.equal(probe.stdout.trim(), 'SERVING');
      const signalled = Date.now();
      child.kill('SIGTERM');
      // NOT_SERVING as soon as the signal is handled, well within the 1.5 s shutdown delay.
      await waitUntil(
        async () =>
          (await checkHealth({ address: `127.0.0.1:${health}`, service: '', timeoutMs: 500 }).catch(
            () => undefined,
          )) === 'NOT_SERVING',
        { timeoutMs: 1_200, intervalMs: 25, what: 'NOT_SERVING after SIGTERM' },
      );
      assert.equal(
        await checkHealth({
          address: `127.0.0.1:${api}`,
          service: 'credbroker.v1.CredentialBroker',
          timeoutMs: 1000,
        }),
        'NOT_SERVING',
      );
      const result = await child.exited;
      assert.equal(result.code, 0, result.stderr);
      assert.ok(Date.now() - signalled < 3000 + 1500 + 1000, 'exits within delay + grace');
      const down = await runCli(['healthcheck', '--address', `127.0.0.1:${health}`, '--timeout', '500ms']);
      assert.equal(down.code, 1);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
