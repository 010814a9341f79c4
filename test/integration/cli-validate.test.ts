/**
 * `check-config` and `serve` run the same deployment checks (src/deployment.ts): what one refuses
 * the other refuses, with exit code 2 and the same one-line message naming the field; and
 * check-config contacts neither Redis nor the identity provider.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPki, type TestPki } from '../helpers/certs.js';
import { runCli, type CliResult } from '../helpers/cli.js';

/** A loopback TCP listener that counts the connections it is offered (and closes them). */
async function connectionCounter(): Promise<{ port: number; count(): number; close(): Promise<void> }> {
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return {
    port: address.port,
    count: () => connections,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** stderr without the `credbroker <command>: ` prefix, for comparing the two commands. */
function message(command: string, result: CliResult): string {
  return result.stderr.trim().replace(`credbroker ${command}: `, '');
}

describe('credbroker check-config and serve validate the deployment alike', function () {
  // Each case starts real processes through tsx: seconds each on a loaded 2-core machine.
  this.timeout(120_000);
  let dir: string;
  let pki: TestPki;
  let redis: Awaited<ReturnType<typeof connectionCounter>>;
  let idp: Awaited<ReturnType<typeof connectionCounter>>;
  const key = `k1:${randomBytes(32).toString('base64')}`;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'credbroker-cli-validate-'));
    pki = createPki();
    redis = await connectionCounter();
    idp = await connectionCounter();
  });
  after(async () => {
    await redis.close();
    await idp.close();
    pki.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const write = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  /** A config that passes every check; `provider` is appended to the provider entry. */
  const config = (name: string, provider: string, top = 'listen: 127.0.0.1:0\n'): string =>
    write(
      name,
      `${top}health_listen: 127.0.0.1:0\nmetrics_listen: ""\n` +
        `store:\n  subject_tokens: true\n  redis_url: redis://127.0.0.1:${redis.port}\n` +
        `providers:\n  - id: corp\n    issuer: https://127.0.0.1:${idp.port}\n    client_id: c\n` +
        `    redirect_uris: [https://app.example.com/cb]\n${provider}`,
    );
  const privateKey = (): string =>
    write(
      'signing.pem',
      generateKeyPairSync('ec', { namedCurve: 'P-256' })
        .privateKey.export({ format: 'pem', type: 'pkcs8' })
        .toString(),
    );

  it('check-config passes a good deployment (TLS, key ring, private_key_jwt) without contacting Redis or the IdP', async () => {
    const ca = pki.ca('ca');
    const server = ca.issue('server', {
      subject: '/CN=credbroker',
      sans: ['DNS:localhost'],
      usage: 'server',
    });
    const file = config(
      'good.yaml',
      `    client_auth: private_key_jwt\n    private_key_file: ${privateKey()}\n`,
      `listen: 0.0.0.0:0\ntls:\n  cert_file: ${server.certFile}\n  key_file: ${server.keyFile}\n` +
        `  client_ca_file: ${ca.certFile}\n` +
        'callers:\n  - name: orders\n    tls_subject: CN=orders\n    allow: [GetValidSubjectToken]\n',
    );
    const result = await runCli(['check-config', '--config', file], { CREDBROKER_KEYS: key });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /private_key_jwt/);
    assert.equal(result.stderr, '');
    assert.ok(!result.stdout.includes(key.slice(3)), 'the key is masked');
    assert.equal(redis.count(), 0, 'check-config dialled Redis');
    assert.equal(idp.count(), 0, 'check-config dialled the identity provider');
  });

  it('check-config prints warnings on stderr and still exits 0', async () => {
    const file = config('insecure.yaml', '    client_secret: s\n', 'listen: 0.0.0.0:0\ninsecure: true\n');
    const result = await runCli(['check-config', '--config', file]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /warning: RUNNING INSECURE: /);
    assert.match(result.stderr, /warning: store\.subject_tokens is on but no encryption key/);
  });

  const bad: readonly {
    readonly what: string;
    readonly file: () => string;
    readonly env?: Record<string, string>;
    readonly expected: RegExp;
  }[] = [
    {
      what: 'a private_key_jwt key that is not a PEM key (IdpConfigError)',
      file: () =>
        config(
          'bad-idp-key.yaml',
          `    client_auth: private_key_jwt\n    private_key_file: ${write('not-a-key.pem', 'hello\n')}\n`,
        ),
      env: { CREDBROKER_KEYS: key },
      expected: /^invalid configuration: providers\.corp\.private_key_file: not a PEM private key$/,
    },
    {
      what: 'a plain-http token endpoint (IdpConfigError)',
      file: () =>
        config(
          'bad-idp-url.yaml',
          '    client_secret: s\n    token_endpoint: http://login.example.com/token\n',
        ),
      env: { CREDBROKER_KEYS: key },
      expected:
        /^invalid configuration: providers\.corp\.token_endpoint: http:\/\/login\.example\.com\/token: http is allowed only with allow_insecure_http$/,
    },
    {
      what: 'a key that is not 32 bytes (KeyRingError)',
      file: () => config('bad-key.yaml', '    client_secret: s\n'),
      env: { CREDBROKER_KEYS: 'k1:c2VjcmV0LWtleQ==' },
      expected: /^invalid configuration: store\.keys: key "k1" is 10 bytes, expected 32 \(AES-256\)$/,
    },
    {
      what: 'an active_key that is not in the ring (KeyRingError)',
      file: () => config('bad-active.yaml', '    client_secret: s\n'),
      env: { CREDBROKER_KEYS: key, CREDBROKER_ACTIVE_KEY: 'k9' },
      expected: /^invalid configuration: store\.active_key "k9" is not in the key ring \(ids: k1\)$/,
    },
    {
      what: 'a missing TLS certificate file',
      file: () =>
        config(
          'bad-tls.yaml',
          '    client_secret: s\n',
          `listen: 127.0.0.1:0\ntls:\n  cert_file: ${join(dir, 'nope.crt')}\n  key_file: ${join(dir, 'nope.key')}\n`,
        ),
      env: { CREDBROKER_KEYS: key },
      expected: /^invalid configuration: tls\.cert_file: cannot read .*nope\.crt \(ENOENT\)$/,
    },
    {
      what: 'a non-loopback listen without caller authentication',
      file: () => config('bad-exposure.yaml', '    client_secret: s\n', 'listen: 0.0.0.0:0\n'),
      env: { CREDBROKER_KEYS: key },
      expected: /^invalid configuration: listen: 0\.0\.0\.0:0 is reachable from other hosts/,
    },
  ];

  for (const { what, file, env, expected } of bad) {
    it(`check-config and serve both exit 2 with the same one-line message for ${what}`, async () => {
      const path = file();
      const messages: string[] = [];
      for (const command of ['check-config', 'serve']) {
        const result = await runCli([command, '--config', path], env ?? {}, 30_000);
        assert.equal(result.code, 2, `${command} exited ${result.code}: ${result.stderr}`);
        const text = message(command, result);
        assert.match(text, expected, `${command} stderr: ${result.stderr}`);
        assert.ok(!/\n\s+at /.test(result.stderr), `${command} printed a stack: ${result.stderr}`);
        messages.push(text);
      }
      assert.equal(messages[0], messages[1]);
      assert.equal(messages[0]!.split('\n').length, 1, 'one line');
      assert.equal(redis.count(), 0, 'a refused deployment dialled Redis');
      assert.equal(idp.count(), 0, 'a refused deployment dialled the identity provider');
    });
  }

  it('check-config lists every problem at once, one line each', async () => {
    const path = config(
      'bad-many.yaml',
      `    client_auth: private_key_jwt\n    private_key_file: ${join(dir, 'missing.pem')}\n`,
      'listen: 0.0.0.0:0\n',
    );
    const result = await runCli(['check-config', '--config', path], { CREDBROKER_KEYS: 'k1:short' });
    assert.equal(result.code, 2, result.stderr);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines[0], 'credbroker check-config: invalid configuration:');
    assert.equal(lines.length, 4, result.stderr);
    assert.match(lines[1]!, /^ {2}- listen: /);
    assert.match(lines[2]!, /^ {2}- store\.keys: key "k1" is \d+ bytes, expected 32/);
    assert.match(lines[3]!, /^ {2}- providers\.corp\.private_key_file: cannot read .* \(ENOENT\)$/);
  });
});
