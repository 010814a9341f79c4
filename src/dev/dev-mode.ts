/**
 * Dev mode: what `npm start` runs when no configuration is given at all (./start.ts decides).
 * A broker on 127.0.0.1 with the embedded memory store, an ephemeral encryption key (records die
 * with the process), subject-token storage on and a plaintext API on loopback, plus the
 * development OpenID Provider (./dev-provider.ts) with a test user. It prints what it started and
 * how to call it, and writes a session file that `npm run demo` reads.
 *
 * Optional variables, dev mode only: CREDBROKER_DEV_LISTEN (API, default 127.0.0.1:50051) and
 * CREDBROKER_DEV_METRICS_LISTEN (default 127.0.0.1:9464, "" off). Both must be loopback.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKey } from '../cli/keygen.js';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../logger.js';
import { shutdownSignal, startBroker, type Running } from '../main.js';
import { isLoopbackListen } from '../server/security/exposure.js';
import { withPort } from '../server/server.js';
import { DEV_USER, startDevProvider, type DevProvider } from './dev-provider.js';

export const DEV_PROVIDER_ID = 'dev';
const DEFAULT_DEV_LISTEN = '127.0.0.1:50051';
const DEFAULT_DEV_METRICS_LISTEN = '127.0.0.1:9464';

/** What the demo needs to drive a session; no secret in it. */
export interface DevSession {
  readonly broker: string;
  readonly provider: string;
  readonly redirectUri: string;
  readonly issuer: string;
  readonly user: string;
  readonly revokeUrl: string;
  readonly statusUrl: string;
  readonly accessTokenTtlSeconds: number;
  readonly metrics: string | undefined;
  readonly pid: number;
}

/** Where dev mode writes its session and the demo reads it (TMPDIR decides). */
export function devSessionFile(): string {
  return join(tmpdir(), 'credbroker-dev.json');
}

export interface DevMode {
  readonly session: DevSession;
  readonly running: Running;
  readonly provider: DevProvider;
  stop(): Promise<void>;
}

/**
 * Starts the dev provider and the broker.
 * @throws Error when a dev listen address is not loopback, or a port is taken
 */
export async function startDevMode(env: Readonly<Record<string, string | undefined>>): Promise<DevMode> {
  const listen = env.CREDBROKER_DEV_LISTEN ?? DEFAULT_DEV_LISTEN;
  const metricsListen = env.CREDBROKER_DEV_METRICS_LISTEN ?? DEFAULT_DEV_METRICS_LISTEN;
  for (const [name, value] of [
    ['CREDBROKER_DEV_LISTEN', listen],
    ['CREDBROKER_DEV_METRICS_LISTEN', metricsListen],
  ] as const) {
    if (value !== '' && !isLoopbackListen(value)) {
      throw new Error(`${name}: dev mode listens on loopback only (e.g. 127.0.0.1:50051), got ${value}`);
    }
  }
  const provider = await startDevProvider();
  try {
    const { id, key } = generateKey();
    const p = `CREDBROKER_PROVIDER_${DEV_PROVIDER_ID.toUpperCase()}_`;
    // A synthetic environment: the same validation path as production, nothing read from disk.
    const config = loadConfig({
      env: {
        CREDBROKER_LISTEN: listen,
        CREDBROKER_HEALTH_LISTEN: '',
        CREDBROKER_METRICS_LISTEN: metricsListen,
        CREDBROKER_LOG_PRETTY: 'true',
        CREDBROKER_STORE_SUBJECT_TOKENS: 'true',
        CREDBROKER_KEYS: `${id}:${key}`,
        [`${p}ISSUER`]: provider.issuer,
        [`${p}CLIENT_ID`]: provider.clientId,
        [`${p}CLIENT_SECRET`]: provider.clientSecret,
        [`${p}CLIENT_AUTH`]: 'client_secret_basic',
        [`${p}REDIRECT_URIS`]: provider.redirectUri,
        [`${p}SCOPES`]: 'openid,profile,email,offline_access',
        [`${p}ALLOW_INSECURE_HTTP`]: 'true',
      },
    });
    const logger = createLogger({ level: config.log_level, pretty: true });
    const running = await startBroker(config, logger);
    const broker = withPort(config.listen, running.server.ports!.api);
    const metricsPort = running.metricsPort;
    const session: DevSession = {
      broker,
      provider: DEV_PROVIDER_ID,
      redirectUri: provider.redirectUri,
      issuer: provider.issuer,
      user: DEV_USER.login,
      revokeUrl: provider.revokeUrl,
      statusUrl: provider.statusUrl,
      accessTokenTtlSeconds: provider.accessTokenTtl,
      metrics:
        metricsPort === undefined ? undefined : `http://${withPort(metricsListen, metricsPort)}/metrics`,
      pid: process.pid,
    };
    const file = devSessionFile();
    writeFileSync(file, `${JSON.stringify(session, null, 2)}\n`, { mode: 0o600 });
    return {
      session,
      running,
      provider,
      stop: async () => {
        await running.server.shutdown();
        await provider.close();
        rmSync(file, { force: true });
      },
    };
  } catch (err) {
    await provider.close();
    throw err;
  }
}

/** The banner: what runs where, and how to call it. */
export function describeDevMode(session: DevSession): string {
  const b = session.broker;
  return `
credbroker dev mode — for development only; nothing here is secure or persistent.

  broker API    ${b}  (plaintext gRPC on loopback, reflection on, no caller authentication)
  store         embedded memory store, ephemeral AES-256 key: records vanish at exit
  OpenID Prov.  ${session.issuer}  (provider id "${session.provider}", user "${session.user}", any password)
  redirect_uri  ${session.redirectUri}  (shows the code and state to paste into CompleteLogin)
  metrics       ${session.metrics ?? 'off'}
  session file  ${devSessionFile()}

Try it:
  npm run demo                                   # the whole walkthrough, step by step
  grpcurl -plaintext ${b} list
  grpcurl -plaintext -d '{"redirect_uri":"${session.redirectUri}"}' \\
    ${b} credbroker.v1.CredentialBroker/StartLogin
    → open authorization_url, sign in as "${session.user}", then CompleteLogin with the code and state:
  grpcurl -plaintext -d '{"code":"…","state":"…","redirect_uri":"${session.redirectUri}"}' \\
    ${b} credbroker.v1.CredentialBroker/CompleteLogin
  grpcurl -plaintext -d '{"user_id":"${session.user}"}' ${b} credbroker.v1.CredentialBroker/GetValidSubjectToken

Ctrl-C stops everything.
`;
}

/** Runs dev mode until SIGINT/SIGTERM. @returns the exit code */
export async function runDevMode(env: Readonly<Record<string, string | undefined>>): Promise<number> {
  const dev = await startDevMode(env);
  console.log(describeDevMode(dev.session));
  await shutdownSignal();
  await dev.stop();
  return 0;
}
