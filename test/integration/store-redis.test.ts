/**
 * The TokenStore contract against a real redis-server and a real three-node Redis Cluster, plus
 * what only Redis can show: outages and recovery on the same store instance.
 */
import assert from 'node:assert/strict';
import { Cluster, Redis } from 'ioredis';
import { isBrokerError } from '../../src/core/errors.js';
import { loadConfig, type StoreConfig } from '../../src/config/load.js';
import type { KeyRing } from '../../src/store/key-ring.js';
import { causeKey, tokenKey } from '../../src/store/keys.js';
import { connectRedis, type RedisClient } from '../../src/store/redis-connection.js';
import { createRedisStore } from '../../src/store/redis-store.js';
import type { TokenStore } from '../../src/core/token-store.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';
import { startSentinel } from '../helpers/redis-sentinel.js';
import { freePort } from '../helpers/ports.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import {
  contractKeyRing,
  freshRef,
  sampleRecord,
  storeContract,
  type RawAccess,
} from '../unit/store-contract.js';

function storeConfig(env: Record<string, string>): StoreConfig {
  return loadConfig({ env: { CREDBROKER_STORE_COMMAND_TIMEOUT: '500ms', ...env } }).store;
}

/** As createStore opens it in production: with the record cache unless configured off. */
function openStore(config: StoreConfig, keyRing: KeyRing | undefined): TokenStore {
  const connections = connectRedis(config)!;
  const { cache } = config;
  return createRedisStore({
    connections,
    keyRing,
    commandTimeoutMs: config.command_timeout,
    ...(cache.enabled ? { cache: { maxEntries: cache.max_entries, heartbeatMs: cache.heartbeat } } : {}),
  });
}

/** Waits until the store answers (connections start in the background). */
async function ready(store: TokenStore): Promise<TokenStore> {
  const until = Date.now() + 10_000;
  for (;;) {
    try {
      await store.ping();
      return store;
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function masters(client: RedisClient): Redis[] {
  return client instanceof Cluster ? client.nodes('master') : [client];
}

function rawAccess(client: RedisClient): RawAccess {
  return {
    async scan(pattern) {
      const found: { key: string; pttl: number; content: Buffer }[] = [];
      for (const node of masters(client)) {
        let cursor = '0';
        do {
          const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
          cursor = next;
          for (const key of keys) {
            const type = await node.type(key);
            let content: Buffer = Buffer.alloc(0);
            if (type === 'hash') {
              const fields = Object.entries(await node.hgetallBuffer(key));
              content = Buffer.concat(fields.flatMap(([field, value]) => [Buffer.from(field), value]));
            } else if (type === 'string') {
              content = (await node.getBuffer(key)) ?? content;
            }
            found.push({ key, pttl: await node.pttl(key), content });
          }
        } while (cursor !== '0');
      }
      return found;
    },
    async copyToken(from, to) {
      const fields = await client.hgetallBuffer(tokenKey(from));
      await client.hset(tokenKey(to), fields);
      await client.pexpire(tokenKey(to), 60_000);
    },
    async setCause(ref, cause, ttlMs) {
      await client.set(causeKey(ref), cause, 'PX', ttlMs);
    },
  };
}

describe('Redis store', function () {
  this.timeout(60_000);

  describe('standalone', () => {
    let server: RedisServer;
    let config: StoreConfig;
    let store: TokenStore;
    let raw: Redis;
    storeContract('redis (standalone)', {
      raw: true,
      setup: async () => {
        server = await startRedis();
        config = storeConfig({ CREDBROKER_REDIS_URL: server.url });
        store = await ready(openStore(config, contractKeyRing));
        raw = new Redis(server.url, { lazyConnect: false });
        return { store, raw: rawAccess(raw), reopen: async (ring) => ready(openStore(config, ring)) };
      },
      teardown: async () => {
        await store?.close();
        raw?.disconnect();
        await server?.stop();
      },
    });
  });

  describe('sentinel', () => {
    let server: RedisServer;
    let sentinel: { address: string; stop(): Promise<void> };
    let config: StoreConfig;
    let store: TokenStore;
    let raw: Redis;
    storeContract('redis (through Sentinel)', {
      raw: true,
      setup: async () => {
        server = await startRedis();
        sentinel = await startSentinel(server.port);
        config = storeConfig({
          CREDBROKER_REDIS_SENTINELS: sentinel.address,
          CREDBROKER_REDIS_SENTINEL_NAME: 'credbroker',
        });
        store = await ready(openStore(config, contractKeyRing));
        assert.equal(store.kind, 'redis-sentinel');
        raw = new Redis(server.url);
        return { store, raw: rawAccess(raw), reopen: async (ring) => ready(openStore(config, ring)) };
      },
      teardown: async () => {
        await store?.close();
        raw?.disconnect();
        await sentinel?.stop();
        await server?.stop();
      },
    });
  });

  describe('cluster', () => {
    let cluster: RedisCluster;
    let config: StoreConfig;
    let store: TokenStore;
    let raw: Cluster;
    storeContract('redis (three-node cluster)', {
      raw: true,
      setup: async () => {
        cluster = await startRedisCluster();
        config = storeConfig({ CREDBROKER_REDIS_CLUSTER: cluster.urls.join(',') });
        store = await ready(openStore(config, contractKeyRing));
        raw = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
        await new Promise((resolve) => raw.once('ready', resolve));
        return { store, raw: rawAccess(raw), reopen: async (ring) => ready(openStore(config, ring)) };
      },
      teardown: async () => {
        await store?.close();
        raw?.disconnect();
        await cluster?.stop();
      },
    });
  });

  describe('cluster outage', () => {
    let cluster: RedisCluster;
    let store: TokenStore;
    before(async () => {
      cluster = await startRedisCluster();
      store = await ready(
        openStore(storeConfig({ CREDBROKER_REDIS_CLUSTER: cluster.urls.join(',') }), contractKeyRing),
      );
    });
    after(async () => {
      await store?.close();
      await cluster?.stop();
    });

    it('fails fast with STORE_UNAVAILABLE for users on a stopped master, and recovers when it returns', async () => {
      const refs = Array.from({ length: 30 }, () => freshRef());
      for (const ref of refs) await store.putToken(ref, sampleRecord(), 60_000);
      await cluster.stopNode(0);
      let unavailable = 0;
      for (const ref of refs) {
        const t = performance.now();
        try {
          await store.getToken(ref);
        } catch (err) {
          assert.ok(isBrokerError(err, 'STORE_UNAVAILABLE'), String(err));
          unavailable += 1;
        }
        assert.ok(performance.now() - t < 1_500, `took ${Math.round(performance.now() - t)} ms`);
      }
      assert.ok(unavailable > 0, 'users on the stopped master are unavailable');
      await cluster.startNode(0);
      const until = Date.now() + 15_000;
      for (const ref of refs) {
        for (;;) {
          try {
            await store.putToken(ref, sampleRecord(), 60_000);
            assert.ok(await store.getToken(ref));
            break;
          } catch (err) {
            if (!isBrokerError(err, 'STORE_UNAVAILABLE') || Date.now() > until) throw err;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }
    });
  });

  describe('outage', () => {
    let server: RedisServer;
    let store: TokenStore;
    before(async () => {
      server = await startRedis();
      store = await ready(openStore(storeConfig({ CREDBROKER_REDIS_URL: server.url }), contractKeyRing));
    });
    after(async () => {
      await store?.close();
      await server?.stop();
    });

    it('serves its very first call once connected, and fails within the timeout when Redis was never up', async () => {
      const fresh = openStore(storeConfig({ CREDBROKER_REDIS_URL: server.url }), contractKeyRing);
      const nowhere = openStore(
        storeConfig({ CREDBROKER_REDIS_URL: `redis://127.0.0.1:${await freePort()}` }),
        contractKeyRing,
      );
      try {
        await fresh.ping();
        assert.equal(await fresh.getToken(freshRef()), undefined);
        const t = performance.now();
        await assert.rejects(nowhere.ping(), { reason: 'STORE_UNAVAILABLE' });
        assert.ok(performance.now() - t < 1_500, `took ${Math.round(performance.now() - t)} ms`);
      } finally {
        await Promise.all([fresh.close(), nowhere.close()]);
      }
    });

    it('fails with STORE_UNAVAILABLE within the command timeout while Redis is down, and recovers on the same instance', async () => {
      const ref = freshRef();
      await store.putToken(ref, sampleRecord(), 60_000);
      await server.stop();
      for (const op of [() => store.getToken(ref), () => store.acquireLock(ref, 1_000), () => store.ping()]) {
        const t = performance.now();
        await assert.rejects(op(), (err: unknown) => {
          assert.ok(isBrokerError(err, 'STORE_UNAVAILABLE'), String(err));
          assert.ok(err.retryAfterMs !== undefined && err.retryAfterMs > 0);
          return true;
        });
        assert.ok(performance.now() - t < 1_500, `took ${Math.round(performance.now() - t)} ms`);
      }
      await server.start();
      await ready(store);
      // No persistence: the record died with the server, but every operation works again.
      assert.equal(await store.getToken(ref), undefined);
      assert.equal(await store.putToken(ref, sampleRecord(), 60_000), 1);
      const owner = await store.acquireLock(ref, 1_000);
      assert.ok(owner);
      assert.equal(await store.releaseLock(ref, owner), true);
    });
  });
});
