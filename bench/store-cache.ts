/**
 * Record cache benchmark (`npx tsx bench/store-cache.ts [--seconds 3] [--redis-url URL]`): the
 * Redis store's getToken for one user, served from the record cache (hit) and with the cache off
 * (a Redis round trip, then decrypting the record), sequentially (latency: µs per call) and with
 * 64 calls in flight (throughput: calls per second). Starts its own redis-server on a free
 * loopback port unless --redis-url is given. Not a test: it prints numbers for
 * docs/PERFORMANCE.md, and imports nothing from test/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/load.js';
import type { TokenRecord, TokenStore } from '../src/core/token-store.js';
import { createKeyRing } from '../src/store/key-ring.js';
import { connectRedis } from '../src/store/redis-connection.js';
import { createRedisStore, type RedisTokenStore } from '../src/store/redis-store.js';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '3' }, 'redis-url': { type: 'string' } },
});
const SECONDS = Number(values.seconds);
const IN_FLIGHT = 64;

const b64url = (n: number): string => randomBytes(n).toString('base64url');
const jwt = (payloadBytes: number): string => `${b64url(27)}.${b64url(payloadBytes)}.${b64url(256)}`;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startRedis(): Promise<{ url: string; stop(): void }> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  process.once('exit', () => child.kill('SIGKILL'));
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (up) break;
    if (i > 200) throw new Error('redis-server did not start (is it on PATH?)');
    await sleep(25);
  }
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill('SIGKILL') };
}

/** Sequential calls for `seconds`: µs per call. */
async function latency(store: TokenStore, ref: { provider: string; userId: string }): Promise<number> {
  for (let i = 0; i < 2_000; i++) await store.getToken(ref);
  const until = performance.now() + SECONDS * 1_000;
  const started = performance.now();
  let n = 0;
  while (performance.now() < until) {
    for (let i = 0; i < 100; i++) await store.getToken(ref);
    n += 100;
  }
  return ((performance.now() - started) * 1_000) / n;
}

/** IN_FLIGHT concurrent call loops for `seconds`: calls per second. */
async function throughput(store: TokenStore, ref: { provider: string; userId: string }): Promise<number> {
  const until = performance.now() + SECONDS * 1_000;
  const started = performance.now();
  let n = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < until) {
        await store.getToken(ref);
        n++;
      }
    }),
  );
  return n / ((performance.now() - started) / 1_000);
}

async function main(): Promise<void> {
  const redis = values['redis-url']
    ? { url: values['redis-url'], stop: () => undefined }
    : await startRedis();
  const config = loadConfig({ env: { CREDBROKER_REDIS_URL: redis.url } }).store;
  const keyRing = createKeyRing([{ id: 'k1', key: randomBytes(32) }]);
  const open = (cached: boolean): RedisTokenStore =>
    createRedisStore({
      connections: connectRedis(config)!,
      keyRing,
      commandTimeoutMs: config.command_timeout,
      ...(cached
        ? { cache: { maxEntries: config.cache.max_entries, heartbeatMs: config.cache.heartbeat } }
        : {}),
    });
  const cachedStore = open(true);
  const plainStore = open(false);
  try {
    for (let i = 0; !cachedStore.cache?.active; i++) {
      if (i > 400) throw new Error('the record cache did not become active');
      await sleep(25);
    }
    const ref = { provider: 'bench', userId: 'user-00001@example.com' };
    const now = Date.now();
    const record: Omit<TokenRecord, 'generation'> = {
      accessToken: jwt(700),
      refreshToken: b64url(64),
      tokenType: 'Bearer',
      expiresAt: now + 3_600_000,
      refreshExpiresAt: now + 86_400_000,
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      idToken: jwt(600),
      obtainedVia: 'login',
      updatedAt: now,
      subject: ref.userId,
    };
    await plainStore.putToken(ref, record, 3_600_000);

    const uncachedUs = await latency(plainStore, ref);
    const cachedUs = await latency(cachedStore, ref);
    const uncachedRate = await throughput(plainStore, ref);
    const cachedRate = await throughput(cachedStore, ref);
    const stats = cachedStore.cache!.stats();
    const lines = [
      `getToken, one user, ${SECONDS} s per figure, redis-server on loopback`,
      `  sequential  cache off: ${uncachedUs.toFixed(1)} µs/call   cache hit: ${cachedUs.toFixed(2)} µs/call   (${(uncachedUs / cachedUs).toFixed(0)}×)`,
      `  ${IN_FLIGHT} in flight cache off: ${Math.round(uncachedRate).toLocaleString('en')} calls/s   cache hit: ${Math.round(cachedRate).toLocaleString('en')} calls/s`,
      `  cache: ${stats.hits.toLocaleString('en')} hits, ${stats.misses} misses, ${stats.entries} entries`,
    ];
    console.log(lines.join('\n'));
  } finally {
    await Promise.all([cachedStore.close(), plainStore.close()]);
    redis.stop();
  }
}

await main();
