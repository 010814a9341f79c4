import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkHealth } from '../../src/cli/healthcheck.js';
import { API_SERVICE_NAME } from '../../src/server/health.js';
import { startReadiness, type Readiness } from '../../src/server/readiness.js';
import { createStore } from '../../src/store/index.js';
import type { TokenStore } from '../../src/core/token-store.js';
import { freePort } from '../helpers/ports.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { startTestServer, testConfig, type TestServer } from '../helpers/server.js';

const INTERVAL_MS = 200;

/** Polls the health port until `service` reports `want`; returns what it saw last. */
async function waitForStatus(
  address: string,
  service: string,
  want: string,
  withinMs = 5000,
): Promise<string> {
  const until = Date.now() + withinMs;
  let seen = '';
  while (Date.now() < until) {
    seen = await checkHealth({ address, service, timeoutMs: 1000 }).catch((err: Error) => err.message);
    if (seen === want) return seen;
    await sleep(50);
  }
  return seen;
}

describe('Readiness', () => {
  let redis: RedisServer | undefined;
  let store: TokenStore | undefined;
  let ts: TestServer | undefined;
  let readiness: Readiness | undefined;
  afterEach(async () => {
    readiness?.close();
    await ts?.stop();
    await store?.close();
    await redis?.stop();
    readiness = undefined;
    ts = undefined;
    store = undefined;
    redis = undefined;
  });

  it('reports the API NOT_SERVING while Redis is down and SERVING again when it returns; liveness stays SERVING', async () => {
    redis = await startRedis();
    ts = await startTestServer();
    const config = testConfig('', {
      CREDBROKER_REDIS_URL: redis.url,
      CREDBROKER_STORE_COMMAND_TIMEOUT: '500ms',
    });
    // The production probe: the Redis TokenStore's ping.
    store = createStore(config.store, undefined, ts.logs.logger);
    // The store fails fast instead of queueing, also while it makes its first connection.
    for (
      let i = 0;
      !(await store.ping().then(
        () => true,
        () => false,
      ));
      i++
    ) {
      assert.ok(i < 100, 'the store connects to redis-server');
      await sleep(50);
    }
    const results: boolean[] = [];
    readiness = startReadiness({
      probe: () => store!.ping(),
      health: ts.server.health,
      intervalMs: INTERVAL_MS,
      logger: ts.logs.logger,
      onResult: (ready) => results.push(ready),
    });
    const health = ts.healthAddress!;
    assert.equal(await readiness.check(), true);
    assert.equal(
      await checkHealth({ address: health, service: API_SERVICE_NAME, timeoutMs: 1000 }),
      'SERVING',
    );

    await redis.stop();
    assert.equal(await waitForStatus(health, API_SERVICE_NAME, 'NOT_SERVING'), 'NOT_SERVING');
    assert.equal(await checkHealth({ address: health, service: '', timeoutMs: 1000 }), 'SERVING');
    assert.equal(readiness.ready, false);
    assert.ok(
      ts.logs.records().some((l) => l.msg === 'store unreachable: readiness NOT_SERVING'),
      'the transition is logged',
    );

    await redis.start();
    assert.equal(await waitForStatus(health, API_SERVICE_NAME, 'SERVING'), 'SERVING');
    assert.equal(await checkHealth({ address: health, service: '', timeoutMs: 1000 }), 'SERVING');
    assert.ok(ts.logs.records().some((l) => l.msg === 'store reachable again: readiness SERVING'));
    assert.deepEqual(
      results.filter((r, i) => i === 0 || r !== results[i - 1]),
      [true, false, true],
      'probe results went ready → not ready → ready',
    );
    // Transitions only: not one log line per probe.
    assert.equal(ts.logs.records().filter((l) => String(l.msg).startsWith('store ')).length, 2);
  });

  it('does not warn while the store makes its first connection, and is SERVING once it answers', async () => {
    redis = await startRedis();
    ts = await startTestServer();
    const config = testConfig('', { CREDBROKER_REDIS_URL: redis.url });
    store = createStore(config.store, undefined, ts.logs.logger);
    // Probing starts at once, while the store is still connecting (its first ping fails fast).
    readiness = startReadiness({
      probe: () => store!.ping(),
      health: ts.server.health,
      intervalMs: 2000,
      logger: ts.logs.logger,
    });
    assert.equal(await readiness.started(), true);
    assert.equal(
      await checkHealth({ address: ts.healthAddress!, service: API_SERVICE_NAME, timeoutMs: 1000 }),
      'SERVING',
    );
    assert.equal(ts.logs.records().filter((l) => String(l.msg).startsWith('store ')).length, 0);
  });

  it('warns once the start-up window is over and the store is still unreachable', async () => {
    ts = await startTestServer();
    const port = await freePort();
    const config = testConfig('', { CREDBROKER_REDIS_URL: `redis://127.0.0.1:${port}` });
    store = createStore(config.store, undefined, ts.logs.logger);
    readiness = startReadiness({
      probe: () => store!.ping(),
      health: ts.server.health,
      intervalMs: 300,
      logger: ts.logs.logger,
    });
    assert.equal(await readiness.started(), false);
    assert.equal(
      await checkHealth({ address: ts.healthAddress!, service: API_SERVICE_NAME, timeoutMs: 1000 }),
      'NOT_SERVING',
    );
    assert.equal(await checkHealth({ address: ts.healthAddress!, service: '', timeoutMs: 1000 }), 'SERVING');
    for (
      let i = 0;
      i < 40 && !ts.logs.records().some((l) => l.msg === 'store unreachable: readiness NOT_SERVING');
      i++
    ) {
      await sleep(50);
    }
    assert.equal(
      ts.logs.records().filter((l) => l.msg === 'store unreachable: readiness NOT_SERVING').length,
      1,
    );
  });

  it('counts a probe that hangs past its timeout as not ready', async () => {
    ts = await startTestServer();
    readiness = startReadiness({
      probe: () => new Promise(() => {}),
      health: ts.server.health,
      intervalMs: 60_000,
      timeoutMs: 100,
      logger: ts.logs.logger,
    });
    assert.equal(await readiness.check(), false);
    assert.equal(
      await checkHealth({ address: ts.healthAddress!, service: API_SERVICE_NAME, timeoutMs: 1000 }),
      'NOT_SERVING',
    );
  });

  it('never flips a shutting-down server back to SERVING', async () => {
    ts = await startTestServer();
    readiness = startReadiness({
      probe: async () => true,
      health: ts.server.health,
      intervalMs: 60_000,
      logger: ts.logs.logger,
    });
    ts.server.health.markShuttingDown();
    assert.equal(await readiness.check(), true);
    assert.equal(
      await checkHealth({ address: ts.healthAddress!, service: API_SERVICE_NAME, timeoutMs: 1000 }),
      'NOT_SERVING',
    );
    assert.equal(
      await checkHealth({ address: ts.healthAddress!, service: '', timeoutMs: 1000 }),
      'NOT_SERVING',
    );
  });
});
