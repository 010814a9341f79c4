import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { DevSession } from '../../src/dev/dev-mode.js';
import { isUnconfigured } from '../../src/dev/unconfigured.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Proc {
  readonly child: ChildProcess;
  output(): string;
  readonly exited: Promise<number | null>;
}

function run(script: string, args: readonly string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, script), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

describe('npm start with no configuration (dev mode) and npm run demo', () => {
  let dir: string | undefined;
  const procs: Proc[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGKILL');
        await p.exited;
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('starts dev mode only when no configuration is given at all', () => {
    assert.equal(isUnconfigured([], {}), true);
    assert.equal(isUnconfigured(['serve'], { PATH: '/bin', CREDBROKER_DEV_LISTEN: '127.0.0.1:0' }), true);
    assert.equal(isUnconfigured(['serve', '--config', 'c.yaml'], {}), false);
    assert.equal(isUnconfigured(['serve', '--config=c.yaml'], {}), false);
    assert.equal(isUnconfigured(['serve', '-c', 'c.yaml'], {}), false);
    assert.equal(isUnconfigured(['serve'], { CREDBROKER_CONFIG: 'c.yaml' }), false);
    assert.equal(isUnconfigured(['serve'], { CREDBROKER_REDIS_URL: 'redis://r:6379' }), false);
    assert.equal(isUnconfigured(['keygen'], {}), false);
  });

  it('runs plain credbroker (no dev mode) as soon as any configuration is given', async () => {
    const configured = run('src/dev/start.ts', ['serve', '--config', '/nonexistent/credbroker.yaml'], {});
    procs.push(configured);
    assert.equal(await configured.exited, 2);
    assert.match(configured.output(), /config file \/nonexistent\/credbroker\.yaml: cannot read it/);
    assert.doesNotMatch(configured.output(), /dev mode|oidc-provider/);
  });

  it('runs the whole walkthrough against the dev broker, then shuts down cleanly', async function () {
    this.timeout(60_000);
    dir = mkdtempSync(join(tmpdir(), 'credbroker-demo-'));
    const env = {
      TMPDIR: dir,
      CREDBROKER_DEV_LISTEN: '127.0.0.1:0',
      CREDBROKER_DEV_METRICS_LISTEN: '127.0.0.1:0',
    };
    const dev = run('src/dev/start.ts', ['serve'], env);
    procs.push(dev);
    const sessionFile = join(dir, 'credbroker-dev.json');
    for (let i = 0; !existsSync(sessionFile); i++) {
      assert.ok(i < 400 && dev.child.exitCode === null, `dev mode starts: ${dev.output()}`);
      await sleep(50);
    }
    const session = JSON.parse(readFileSync(sessionFile, 'utf8')) as DevSession;
    assert.match(session.broker, /^127\.0\.0\.1:\d+$/);
    assert.match(session.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);

    const demo = run('scripts/demo.ts', [], { TMPDIR: dir });
    procs.push(demo);
    const code = await demo.exited;
    const out = demo.output();
    assert.equal(code, 0, out);
    const expected = [
      /1\. StartLogin/,
      /PKCE S256/,
      /2\. Sign in at the dev OpenID Provider as "alice"/,
      /identity: Alice Liddell <alice@example\.com>, subject "alice"/,
      /user_id "alice", storage STORED/,
      /→ STORED: Bearer sha256:[0-9a-f]{12}/,
      /→ REFRESHED: Bearer sha256:[0-9a-f]{12}/,
      /1 refresh grant; the refresh token was rotated/,
      /1 grant revoked/,
      /REAUTH_REQUIRED, cause REFRESH_REJECTED/,
      /REAUTH_REQUIRED, cause NO_TOKEN/,
      /Demo complete: 8 steps as expected/,
    ];
    let at = 0;
    for (const pattern of expected) {
      const match = pattern.exec(out.slice(at));
      assert.ok(match, `${pattern} after position ${at} in:\n${out}`);
      at += match.index + match[0].length;
    }
    // Tokens appear only as fingerprints: no opaque token (43+ base64url characters) is printed.
    assert.doesNotMatch(out, /[A-Za-z0-9_-]{43,}/);

    // The domain metrics of that session, from the real token service.
    const metrics = await (await fetch(session.metrics!)).text();
    assert.match(metrics, /^credbroker_refreshes_total\{provider="dev",outcome="refreshed"\} 1$/m);
    assert.match(metrics, /^credbroker_refreshes_total\{provider="dev",outcome="rejected"\} 1$/m);
    assert.match(
      metrics,
      /^credbroker_reauth_required_total\{rpc="GetValidSubjectToken",cause="REFRESH_REJECTED"\} 1$/m,
    );
    assert.match(metrics, /^credbroker_token_remaining_lifetime_seconds_count 2$/m);

    assert.match(dev.output(), /credbroker dev mode — for development only/);
    assert.match(dev.output(), new RegExp(`broker API +${session.broker.replace(/\./g, '\\.')}`));
    dev.child.kill('SIGTERM');
    assert.equal(await dev.exited, 0, dev.output());
    assert.equal(existsSync(sessionFile), false, 'the session file is removed at exit');
  });

  it('tells the user to start the dev broker when none is running', async () => {
    dir = mkdtempSync(join(tmpdir(), 'credbroker-demo-'));
    const demo = run('scripts/demo.ts', [], { TMPDIR: dir });
    procs.push(demo);
    assert.equal(await demo.exited, 1);
    assert.match(demo.output(), /start the dev broker first with `npm start`/);
  });
});
