/**
 * Real broker processes for multi-replica tests: `node --import tsx src/cli.ts serve` configured
 * through CREDBROKER_* variables, on 127.0.0.1 with an OS-chosen port, each with a generated
 * gRPC client. `stop()` is a graceful SIGTERM; `kill()` is SIGKILL (a crash: locks are not
 * released). Every process is killed at exit if a test forgot it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { StorageOutcome, type CredentialBrokerClient } from '../../src/gen/credbroker/v1/broker.js';
import { spawnCli, type CliResult } from './cli.js';
import { brokerClient, call } from './grpc.js';
import { signIn } from './login.js';
import { TEST_REDIRECT_URI, type TestOidcProvider } from './oidc-provider.js';

export interface BrokerProcess {
  readonly pid: number;
  readonly address: string;
  readonly client: CredentialBrokerClient;
  /** Everything the process wrote so far (JSON log lines on stdout, then stderr). */
  output(): string;
  /** SIGTERM and wait for a graceful exit. */
  stop(): Promise<CliResult>;
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
    CREDBROKER_LISTEN: '127.0.0.1:0',
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

/**
 * Starts `credbroker serve` and resolves once it logs "credbroker serving" with its port.
 * @throws when the process exits or does not serve within `timeoutMs` (with its output)
 */
export async function startBrokerProcess(
  env: Record<string, string>,
  timeoutMs = 20_000,
): Promise<BrokerProcess> {
  const child = spawnCli(['serve'], env);
  const text = () => {
    const { stdout, stderr } = child.output();
    return `${stdout}${stderr}`;
  };
  const until = Date.now() + timeoutMs;
  let address: string | undefined;
  while (address === undefined) {
    for (const line of child.output().stdout.split('\n')) {
      if (!line.includes('"credbroker serving"')) continue;
      const listen = (JSON.parse(line) as { listen?: string }).listen;
      if (listen !== undefined) address = listen;
    }
    if (address !== undefined) break;
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > until) {
      child.kill('SIGKILL');
      await child.exited;
      throw new Error(`broker process did not start serving:\n${text().slice(-4000)}`);
    }
    await sleep(25);
  }
  const client = brokerClient(address);
  return {
    pid: child.pid!,
    address,
    client,
    output: text,
    async stop() {
      client.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return child.exited;
    },
    async kill() {
      client.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await child.exited;
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
