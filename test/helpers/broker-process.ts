/**
 * Real broker processes for multi-replica tests: `node --import tsx src/cli.ts serve` configured
 * through CREDBROKER_* variables, on a free 127.0.0.1 port, each with a generated
 * gRPC client. `stop()` is a graceful SIGTERM; `kill()` is SIGKILL (a crash: locks are not
 * released). Every process is killed at exit if a test forgot it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StorageOutcome, type CredentialBrokerClient } from '../../src/gen/credbroker/v1/broker.js';
import { CLI } from './cli.js';
import { brokerClient, call } from './grpc.js';
import { signIn } from './login.js';
import { freePort } from './ports.js';
import { TEST_REDIRECT_URI, type TestOidcProvider } from './oidc-provider.js';

export interface BrokerProcess {
  readonly pid: number;
  readonly address: string;
  readonly client: CredentialBrokerClient;
  /** Everything the process wrote so far (JSON log lines and stderr, interleaved). */
  output(): string;
  /** SIGTERM and wait for a graceful exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL and wait: a crash, with no cleanup in the process. */
  kill(): Promise<void>;
}

export interface BrokerEnvOptions {
  readonly redisUrl: string;
  readonly provider: TestOidcProvider;
  /** `id:base64` key list (CREDBROKER_KEYS); the same for every replica sharing a Redis. */
  readonly keys: string;
  /** refresh.lock_lease, e.g. "2s". */
  readonly lockLease?: string;
  /** refresh.skew, e.g. "60s". */
  readonly skew?: string;
  /** Provider id (default "corp"). */
  readonly providerId?: string;
  readonly extra?: Record<string, string>;
}

/** CREDBROKER_* variables for a broker on loopback using `redisUrl` and the test provider. */
export function brokerEnv(options: BrokerEnvOptions): Record<string, string> {
  const id = (options.providerId ?? 'corp').toUpperCase();
  const p = `CREDBROKER_PROVIDER_${id}_`;
  return {
    CREDBROKER_HEALTH_LISTEN: '',
    CREDBROKER_METRICS_LISTEN: '',
    CREDBROKER_LOG_LEVEL: 'info',
    CREDBROKER_STORE_SUBJECT_TOKENS: 'true',
    CREDBROKER_REDIS_URL: options.redisUrl,
    CREDBROKER_KEYS: options.keys,
    CREDBROKER_REFRESH_LOCK_LEASE: options.lockLease ?? '5s',
    CREDBROKER_REFRESH_SKEW: options.skew ?? '60s',
    [`${p}ISSUER`]: options.provider.issuer,
    [`${p}CLIENT_ID`]: options.provider.clients.basic.id,
    [`${p}CLIENT_SECRET`]: options.provider.clients.basic.secret,
    [`${p}CLIENT_AUTH`]: 'client_secret_basic',
    [`${p}REDIRECT_URIS`]: TEST_REDIRECT_URI,
    [`${p}SCOPES`]: 'openid,profile,email,offline_access',
    [`${p}ALLOW_INSECURE_HTTP`]: 'true',
    ...options.extra,
  };
}

/** Whether something accepts TCP connections on 127.0.0.1:port right now. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/**
 * Starts `credbroker serve` on a free loopback port and resolves once it accepts connections.
 * Its stdout and stderr go to a file, not a pipe: pino writes stdout synchronously, and a pipe
 * the (busy) test process does not drain would stall the broker's event loop for seconds —
 * long enough to lose a refresh lock's lease.
 * @throws when the process exits or does not serve within `timeoutMs` (with its output)
 */
export async function startBrokerProcess(
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<BrokerProcess> {
  // The free port may be taken by another process before the broker binds it: try another.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(env, timeoutMs);
    } catch (err) {
      if (attempt >= 3 || !/EADDRINUSE|address already in use|No address added/i.test(String(err))) throw err;
    }
  }
}

async function startOnce(env: Record<string, string>, timeoutMs: number): Promise<BrokerProcess> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'credbroker-'));
  const logFile = join(dir, 'broker.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      ...env,
      CREDBROKER_LISTEN: address,
    },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  children.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  let cleaned = false;
  let lastOutput = '';
  const text = () => {
    if (!cleaned) lastOutput = readFileSync(logFile, 'utf8');
    return lastOutput;
  };
  const running = () => child.exitCode === null && child.signalCode === null;
  const end = async (signal: NodeJS.Signals) => {
    if (running()) child.kill(signal);
    const result = await exited;
    text();
    cleaned = true;
    rmSync(dir, { recursive: true, force: true });
    return result;
  };
  const until = Date.now() + timeoutMs;
  while (!(await accepts(port))) {
    if (!running() || Date.now() > until) {
      const result = await end('SIGKILL');
      throw new Error(
        `broker process did not start serving (exit ${result.code ?? result.signal ?? 'none'}):\n${lastOutput.slice(-4000)}`,
      );
    }
    await sleep(50);
  }
  const client = brokerClient(address);
  return {
    pid: child.pid!,
    address,
    client,
    output: text,
    async stop() {
      client.close();
      return end('SIGTERM');
    },
    async kill() {
      client.close();
      await end('SIGKILL');
    },
  };
}

/**
 * Logs `account` in through a broker (StartLogin → the provider's real sign-in pages →
 * CompleteLogin), storing the tokens under `userId`. @throws unless storage reports STORED
 */
export async function loginThrough(
  client: CredentialBrokerClient,
  options: { userId: string; account?: string; provider?: string },
): Promise<void> {
  const provider = options.provider ?? 'corp';
  const start = await call(client, client.startLogin, {
    provider,
    redirectUri: TEST_REDIRECT_URI,
    scopes: [],
    loginHint: '',
  });
  const auth = await signIn(start.authorizationUrl, { login: options.account ?? 'alice' });
  if (auth.code === undefined) throw new Error(`sign-in returned no code (${auth.error ?? 'no error'})`);
  const done = await call(client, client.completeLogin, {
    provider,
    code: auth.code,
    redirectUri: TEST_REDIRECT_URI,
    state: start.state,
    codeVerifier: '',
    nonce: '',
    userId: options.userId,
  });
  if (done.storage !== StorageOutcome.STORAGE_OUTCOME_STORED) {
    throw new Error(`login for ${options.userId} was not stored (storage ${done.storage})`);
  }
}
