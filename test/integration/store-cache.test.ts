/**
 * The Redis store's record cache across replicas, on a real redis-server, through a real
 * Sentinel and on a real three-node Cluster: two store instances (two replicas' worth of
 * connections) share one Redis; what one writes, refreshes or revokes must drop the other's
 * cached entry, and losing the invalidation link must drop the whole cache.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import type { SubjectRef } from '../../src/core/errors.js';
import { loadConfig, type StoreConfig } from '../../src/config/load.js';
import { startInvalidation } from '../../src/store/invalidation.js';
import { loginKey, tokenKey } from '../../src/store/keys.js';
import { createRecordCache } from '../../src/store/record-cache.js';
import { connectRedis, type RedisConnections } from '../../src/store/redis-connection.js';
import { createRedisStore, type RedisTokenStore, type StoreCache } from '../../src/store/redis-store.js';
import { clusterFailover, startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';
import { startRedisProxy } from '../helpers/redis-proxy.js';
import { startSentinel, type RedisSentinel } from '../helpers/redis-sentinel.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { contractKeyRing, freshRef, sampleRecord } from '../unit/store-contract.js';

const HOUR = 3_600_000;
/** Invalidations arrive in about a millisecond on loopback; this is the give-up point only. */
const PATIENCE_MS = 5_000;

function storeConfig(env: Record<string, string>): StoreConfig {
  return loadConfig({
    env: { CREDBROKER_STORE_COMMAND_TIMEOUT: '1s', CREDBROKER_STORE_CACHE_HEARTBEAT: '200ms', ...env },
  }).store;
}

function openStore(config: StoreConfig): RedisTokenStore {
  return createRedisStore({
    connections: connectRedis(config)!,
    keyRing: contractKeyRing,
    commandTimeoutMs: config.command_timeout,
    cache: {
      maxEntries: config.cache.max_entries,
      heartbeatMs: config.cache.heartbeat,
      maxAgeMs: config.cache.max_age,
    },
  });
}

/** Polls `probe` until it returns true; @returns the ms it took. @throws after PATIENCE_MS */
async function waitUntil(
  what: string,
  probe: () => boolean | Promise<boolean>,
  patienceMs = PATIENCE_MS,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await probe()) return performance.now() - started;
    if (performance.now() - started > patienceMs) throw new Error(`not within ${patienceMs} ms: ${what}`);
    await sleep(2);
  }
}

function cacheOf(store: RedisTokenStore): StoreCache {
  assert.ok(store.cache, 'the cache is on');
  return store.cache;
}

/**
 * Reads `ref` on `store` until a read is a cache hit. The first read may fill nothing: the
 * invalidation of the write before it can arrive while it is in flight (and must then win).
 */
async function cached(store: RedisTokenStore, ref: SubjectRef): Promise<void> {
  await waitUntil('a read of the record is served from the cache', async () => {
    const hits = cacheOf(store).stats().hits;
    await store.getToken(ref);
    return cacheOf(store).stats().hits === hits + 1;
  });
}

/** Kills every invalidation link on the given nodes, as an operator's CLIENT KILL would. */
async function killLinks(nodes: readonly Redis[]): Promise<number> {
  let killed = 0;
  for (const node of nodes) {
    const list = (await node.client('LIST')) as string;
    for (const line of list.split('\n')) {
      if (!/ name=credbroker-invalidation /.test(` ${line} `)) continue;
      const id = /(?:^| )id=(\d+)/.exec(line)?.[1];
      if (id !== undefined) killed += Number(await node.call('CLIENT', 'KILL', 'ID', id));
    }
  }
  return killed;
}

interface Topology {
  config: StoreConfig;
  /** A plain connection to every master. */
  masters: Redis[];
  stop(): Promise<void>;
}

function cacheSuite(name: string, start: () => Promise<Topology>, extra?: (t: () => Topology) => void): void {
  describe(name, function () {
    this.timeout(60_000);
    let topology: Topology;
    let a: RedisTokenStore;
    let b: RedisTokenStore;

    before(async () => {
      topology = await start();
      a = openStore(topology.config);
      b = openStore(topology.config);
      await waitUntil('both caches active', () => cacheOf(a).active && cacheOf(b).active);
    });
    after(async () => {
      await a?.close();
      await b?.close();
      for (const m of topology?.masters ?? []) m.disconnect();
      await topology?.stop();
    });

    it('serves a repeated read from the cache, and an entry equal to what Redis holds', async () => {
      const ref = freshRef();
      const g = await a.putToken(ref, sampleRecord(), HOUR);
      await cached(b, ref);
      const fromCache = await b.getToken(ref);
      assert.equal(fromCache?.generation, g);
      const c = openStore({ ...topology.config, cache: { ...topology.config.cache, enabled: false } });
      try {
        assert.deepEqual(fromCache, await c.getToken(ref));
      } finally {
        await c.close();
      }
    });

    it("peekToken serves the cached entry itself, and nothing once another replica's write dropped it", async () => {
      const ref = freshRef();
      const g = await a.putToken(ref, sampleRecord(), HOUR);
      assert.equal(b.peekToken(ref), undefined, 'nothing cached yet: ask getToken');
      const read = await b.getToken(ref);
      await cached(b, ref);
      const peeked = b.peekToken(ref);
      assert.equal(peeked, await b.getToken(ref), 'the entry itself (its encoded response is keyed on it)');
      assert.equal(peeked?.generation, g);
      assert.deepEqual(peeked, read);
      await a.putToken(ref, sampleRecord(), HOUR);
      await waitUntil('B no longer peeks the replaced record', () => b.peekToken(ref) === undefined);
      // A closed store peeks nothing, whatever it had cached.
      const c = openStore(topology.config);
      await waitUntil('C caches', () => cacheOf(c).active);
      await cached(c, ref);
      assert.ok(c.peekToken(ref) !== undefined);
      await c.close();
      assert.equal(c.peekToken(ref), undefined);
    });

    it("drops another replica's entry when one replica writes (login or refresh)", async () => {
      const ref = freshRef();
      await a.putToken(ref, sampleRecord(), HOUR);
      await cached(b, ref);
      const invalidations = cacheOf(b).stats().invalidations;
      const g = await a.putToken(ref, sampleRecord(), HOUR);
      const ms = await waitUntil(
        'B reads the new generation',
        async () => (await b.getToken(ref))?.generation === g,
      );
      assert.ok(cacheOf(b).stats().invalidations > invalidations);
      // A fenced write (refresh) by A reaches B the same way.
      await cached(b, ref);
      const owner = (await a.acquireLock(ref, 5_000))!;
      assert.equal(await a.putTokenFenced(ref, owner, g, sampleRecord(), HOUR), true);
      await a.releaseLock(ref, owner);
      await waitUntil(
        'B reads the refreshed generation',
        async () => (await b.getToken(ref))?.generation === g + 1,
      );
      console.log(`      [${name}] write on A visible on B after ${ms.toFixed(1)} ms`);
    });

    it('makes a revoke (delete with tombstone) on one replica visible on another', async () => {
      const ref = freshRef();
      await a.putToken(ref, sampleRecord(), HOUR);
      await cached(b, ref);
      assert.equal(await a.deleteToken(ref), true);
      const ms = await waitUntil('B sees no record', async () => (await b.getToken(ref)) === undefined);
      console.log(`      [${name}] revoke on A visible on B after ${ms.toFixed(1)} ms`);
    });

    it("shows a replica its own writes at once, without waiting for Redis's invalidation", async () => {
      const ref = freshRef();
      await a.putToken(ref, sampleRecord(), HOUR);
      await cached(a, ref);
      const g = await a.putToken(ref, sampleRecord(), HOUR);
      assert.equal((await a.getToken(ref))?.generation, g);
      await cached(a, ref);
      assert.equal(await a.deleteTokenIfGeneration(ref, g), true);
      assert.equal(await a.getToken(ref), undefined);
    });

    it('re-reads from Redis after taking the lock, so a peer refresh is never hidden', async () => {
      const ref = freshRef();
      const g = await a.putToken(ref, sampleRecord(), HOUR);
      await cached(b, ref);
      // The domain re-reads after taking the lock to see a peer's refresh, whose invalidation
      // may still be on its way: that read must go to Redis.
      const owner = (await b.acquireLock(ref, 5_000))!;
      assert.ok(owner);
      const misses = cacheOf(b).stats().misses;
      assert.equal((await b.getToken(ref))?.generation, g);
      assert.equal(cacheOf(b).stats().misses, misses + 1, 'the read after acquireLock went to Redis');
      await b.releaseLock(ref, owner);
    });

    it('answers a fresh read from Redis even when the record is cached, and refills the entry', async () => {
      const ref = freshRef();
      const g = await a.putToken(ref, sampleRecord(), HOUR);
      await cached(b, ref);
      const { misses, hits } = cacheOf(b).stats();
      // The domain's re-reads after invalid_grant and for a re-login's merge ask for this.
      assert.equal((await b.getToken(ref, { fresh: true }))?.generation, g);
      assert.equal(cacheOf(b).stats().misses, misses + 1, 'the fresh read went to Redis');
      assert.equal(cacheOf(b).stats().hits, hits);
      await cached(b, ref);
    });

    it("re-reads the user's subject record from Redis after writing one of their downstream records", async () => {
      const ref = freshRef();
      await a.putToken(ref, sampleRecord(), HOUR);
      await cached(a, ref);
      // GetDownstreamToken writes the exchanged token, then re-checks that the subject was not
      // revoked meanwhile: that check must not be answered by the cache.
      await a.putToken({ ...ref, downstream: 'orders' }, sampleRecord(), HOUR);
      const misses = cacheOf(a).stats().misses;
      assert.ok(await a.getToken(ref));
      assert.equal(cacheOf(a).stats().misses, misses + 1);
    });

    it('drops the whole cache when the invalidation link is killed, and fills again once it is back', async () => {
      const ref = freshRef();
      await a.putToken(ref, sampleRecord(), HOUR);
      await cached(b, ref);
      const flushes = cacheOf(b).stats().flushes;
      assert.ok((await killLinks(topology.masters)) >= 1);
      await waitUntil('B drops its cache', () => cacheOf(b).stats().flushes > flushes);
      assert.equal(cacheOf(b).stats().entries, 0);
      assert.equal(b.peekToken(ref), undefined, 'nothing is peeked without the link');
      // While the link is down, a write is not missed: the cache is off or dropped again on re-arm.
      const g = await a.putToken(ref, sampleRecord(), HOUR);
      assert.equal((await b.getToken(ref))?.generation, g);
      await waitUntil('B re-arms its link', () => cacheOf(b).active);
      await cached(b, ref);
      assert.equal((await b.getToken(ref))?.generation, g);
    });

    it('delivers invalidations to the writing process itself (BCAST without NOLOOP), not for login state', async () => {
      const connections = connectRedis(topology.config)!;
      const seen: string[] = [];
      const cache = createRecordCache<unknown>({ maxEntries: 10, maxAgeMs: 30_000 });
      const link = startInvalidation({
        connections,
        heartbeatMs: 1_000,
        cache: {
          invalidate: (key) => seen.push(key),
          clear: () => cache.clear(),
          setActive: (active) => cache.setActive(active),
        },
      });
      try {
        await waitUntil('the link is up', () => link.up);
        const ref = freshRef();
        // Login state is outside the tracked prefix: its write, sent first, announces nothing.
        const login = loginKey(`state-of-${ref.userId}`);
        await connections.client.set(login, 'x', 'PX', 60_000);
        // The same process's command connection writes the key.
        await connections.client.set(tokenKey(ref), 'x', 'PX', 60_000);
        await waitUntil('its own write is announced to it', () => seen.includes(tokenKey(ref)));
        // Invalidations arrive in order on one link: the login write's would have come first.
        // (On Cluster the two keys may live on different masters, whose links are not ordered.)
        if (link.connections().length === 1)
          assert.equal(seen.includes(login), false, 'login state is not tracked');
      } finally {
        await link.close();
        connections.client.disconnect();
      }
    });

    extra?.(() => topology);
  });
}

describe('Redis store record cache', () => {
  cacheSuite(
    'standalone',
    async () => {
      // DEBUG SLEEP stalls the server without closing a connection: a silent partition.
      const server: RedisServer = await startRedis(['--enable-debug-command', 'yes']);
      return {
        config: storeConfig({ CREDBROKER_REDIS_URL: server.url }),
        masters: [new Redis(server.url)],
        stop: () => server.stop(),
      };
    },
    (topology) => {
      it('drops the whole cache on FLUSHALL (a null invalidation)', async () => {
        const store = openStore(topology().config);
        try {
          const ref = freshRef();
          await store.putToken(ref, sampleRecord(), HOUR);
          await waitUntil('active', () => cacheOf(store).active);
          await store.getToken(ref);
          assert.equal(cacheOf(store).stats().entries, 1);
          const flushes = cacheOf(store).stats().flushes;
          await topology().masters[0]!.flushall();
          await waitUntil('dropped', () => cacheOf(store).stats().flushes > flushes);
          assert.equal(await store.getToken(ref), undefined);
        } finally {
          await store.close();
        }
      });

      it('drops the cache when a heartbeat goes unanswered (Redis stalled, connections open)', async () => {
        const store = openStore(topology().config); // heartbeat 200 ms, command timeout 1 s
        try {
          const ref = freshRef();
          await store.putToken(ref, sampleRecord(), HOUR);
          await waitUntil('a read is served from the cache', async () => {
            const hits = cacheOf(store).stats().hits;
            await store.getToken(ref);
            return cacheOf(store).stats().hits > hits;
          });
          const flushes = cacheOf(store).stats().flushes;
          const stalledFor = 3_000;
          const stalled = performance.now();
          const stall = topology().masters[0]!.call('DEBUG', 'SLEEP', String(stalledFor / 1000));
          await waitUntil('the cache is dropped', () => cacheOf(store).stats().flushes > flushes);
          const ms = performance.now() - stalled;
          assert.equal(cacheOf(store).active, false);
          assert.ok(ms < stalledFor - 500, `dropped ${ms.toFixed(0)} ms into a ${stalledFor} ms stall`);
          await stall;
          await waitUntil('the link is back', () => cacheOf(store).active);
          assert.equal((await store.getToken(ref))?.accessToken !== undefined, true);
          console.log(`      [standalone] cache dropped ${ms.toFixed(0)} ms into a silent stall`);
        } finally {
          await store.close();
        }
      });

      it('stays off, reading Redis on every call, when Redis refuses CLIENT TRACKING (ACL)', async () => {
        const admin = topology().masters[0]!;
        await admin.call('ACL', 'SETUSER', 'nocache', 'on', '>pw', '~credbroker:*', '&*', '+@all', '-client');
        const url = new URL(topology().config.redis_url!);
        url.username = 'nocache';
        url.password = 'pw';
        const store = openStore(storeConfig({ CREDBROKER_REDIS_URL: url.toString() }));
        try {
          const ref = freshRef();
          const g = await store.putToken(ref, sampleRecord(), HOUR);
          // Redis's ACL log shows the refused CLIENT command of the invalidation link.
          await waitUntil('the link was refused', async () => {
            const log = JSON.stringify(await admin.call('ACL', 'LOG'));
            return log.includes('nocache') && log.includes('client');
          });
          for (let i = 0; i < 20; i++) {
            assert.equal((await store.getToken(ref))?.generation, g);
            await sleep(10);
          }
          assert.equal(cacheOf(store).active, false);
          assert.equal(cacheOf(store).stats().hits, 0);
        } finally {
          await store.close();
          await admin.call('ACL', 'DELUSER', 'nocache');
        }
      });

      it('stays off while the command connection is on another server than the link (run_id check)', async () => {
        // The command connection goes through a proxy that is then switched to another Redis,
        // while the link stays on the first: the partial partition after a failover in which
        // commands reach the new master and the link an old one that still answers PING.
        const first = topology().config.redis_url!;
        const other = await startRedis();
        const proxy = await startRedisProxy(Number(new URL(first).port));
        const viaProxy = connectRedis(storeConfig({ CREDBROKER_REDIS_URL: proxy.url }))!;
        viaProxy.client.on('error', () => undefined); // cut by the proxy on purpose
        const direct = connectRedis(topology().config)!;
        direct.client.disconnect();
        const connections: RedisConnections = {
          kind: 'redis',
          client: viaProxy.client,
          createSubscriber: viaProxy.createSubscriber,
          createTrackingConnection: direct.createTrackingConnection,
        };
        let active = false;
        const activations: boolean[] = [];
        const link = startInvalidation({
          connections,
          heartbeatMs: 100,
          cache: {
            invalidate: () => undefined,
            clear: () => undefined,
            setActive: (next) => {
              active = next;
              activations.push(next);
            },
          },
        });
        try {
          await waitUntil('the cache is active (link and commands on one server)', () => active);
          const linkConnection = link.connections()[0]!;
          let armings = 0;
          linkConnection.on('ready', () => armings++);
          proxy.switchTo(other.port);
          await waitUntil('the cache is off once the command connection closed', () => !active);
          const since = activations.length;
          // Each mismatch found reconnects the link (after a heartbeat), which finds it again.
          await waitUntil('the link re-armed twice on its server', () => armings >= 2);
          assert.deepEqual(activations.slice(since).filter(Boolean), [], 'never served meanwhile');
          assert.equal(link.up, false);
          // Both on one server again: the cache serves again.
          proxy.switchTo(Number(new URL(first).port));
          await waitUntil('the cache is active again', () => active);
        } finally {
          await link.close();
          viaProxy.client.disconnect();
          await proxy.close();
          await other.stop();
        }
      });

      it('reads Redis on every call with the cache configured off', async () => {
        const store = createRedisStore({
          connections: connectRedis(topology().config)!,
          keyRing: contractKeyRing,
          commandTimeoutMs: 1_000,
        });
        try {
          assert.equal(store.cache, undefined);
          const ref = freshRef();
          const g = await store.putToken(ref, sampleRecord(), HOUR);
          assert.equal((await store.getToken(ref))?.generation, g);
        } finally {
          await store.close();
        }
      });
    },
  );

  cacheSuite('through Sentinel', async () => {
    const server = await startRedis();
    const sentinel: RedisSentinel = await startSentinel(server.port);
    return {
      config: storeConfig({
        CREDBROKER_REDIS_SENTINELS: sentinel.address,
        CREDBROKER_REDIS_SENTINEL_NAME: 'credbroker',
      }),
      masters: [new Redis(server.url)],
      stop: async () => {
        await sentinel.stop();
        await server.stop();
      },
    };
  });

  describe('across a Sentinel failover', function () {
    this.timeout(90_000);
    let master: RedisServer;
    let replica: RedisServer;
    let sentinel: RedisSentinel;
    let a: RedisTokenStore;
    let b: RedisTokenStore;

    before(async () => {
      master = await startRedis();
      replica = await startRedis(['--replicaof', '127.0.0.1', String(master.port)]);
      sentinel = await startSentinel(master.port);
      const config = storeConfig({
        CREDBROKER_REDIS_SENTINELS: sentinel.address,
        CREDBROKER_REDIS_SENTINEL_NAME: 'credbroker',
      });
      a = openStore(config);
      b = openStore(config);
      await waitUntil('both caches active', () => cacheOf(a).active && cacheOf(b).active);
    });
    after(async () => {
      await a?.close();
      await b?.close();
      await sentinel?.stop();
      await replica?.stop();
      await master?.stop();
    });

    it('a write through the new master drops the entry a replica had cached before and after', async () => {
      const ref = freshRef();
      const g1 = await a.putToken(ref, sampleRecord(), HOUR);
      const direct = new Redis(master.url);
      try {
        // On the replica before the failover, so the record survives it: replication keeps
        // order, so once this connection's later write is acknowledged by it, so is the record.
        await direct.set('credbroker-test:replicated', '1');
        assert.equal(await direct.call('WAIT', '1', '5000'), 1);
      } finally {
        direct.disconnect();
      }
      await cached(b, ref);
      const flushes = cacheOf(b).stats().flushes;

      assert.equal(await sentinel.failover(), replica.port);
      // Both stores' command connections follow +switch-master (ioredis failoverDetector) at
      // once, without waiting for Sentinel to demote the old master (seconds later), where a
      // write would be lost.
      const port = async (store: RedisTokenStore) =>
        Number(/^tcp_port:(\d+)/m.exec(await (store.client as Redis).info('server'))?.[1]);
      await waitUntil(
        'A and B send commands to the new master',
        async () =>
          (await port(a).catch(() => 0)) === replica.port && (await port(b).catch(() => 0)) === replica.port,
      );
      let g2 = 0;
      await waitUntil('A writes through the new master', async () => {
        g2 = await a.putToken(ref, sampleRecord(), HOUR).catch(() => 0);
        return g2 > g1;
      });
      await waitUntil(
        'B reads the generation written through the new master',
        async () => (await b.getToken(ref).catch(() => undefined))?.generation === g2,
      );
      assert.ok(cacheOf(b).stats().flushes > flushes, 'B dropped its cache when its connections moved');

      // The links are on the new master: B caches again, and A's next write there reaches it.
      await waitUntil('B serves from its cache again', () => cacheOf(b).active);
      await cached(b, ref);
      const g3 = await a.putToken(ref, sampleRecord(), HOUR);
      await waitUntil('B reads the next generation', async () => (await b.getToken(ref))?.generation === g3);
    });
  });

  describe('across a Cluster manual failover', function () {
    this.timeout(120_000);
    let cluster: RedisCluster;
    let a: RedisTokenStore;
    let b: RedisTokenStore;

    before(async () => {
      cluster = await startRedisCluster(3, 1); // three masters, a replica each
      const config = storeConfig({ CREDBROKER_REDIS_CLUSTER: cluster.urls.join(',') });
      a = openStore(config);
      b = openStore(config);
      await waitUntil('both caches active', () => cacheOf(a).active && cacheOf(b).active);
    });
    after(async () => {
      await a?.close();
      await b?.close();
      await cluster?.stop();
    });

    /** The ports of the master serving `key`'s slot and of its replica (CLUSTER NODES). */
    async function masterAndReplica(key: string): Promise<{ master: number; replica: number }> {
      const any = new Redis(cluster.urls[0]!);
      try {
        const slot = Number(await any.call('CLUSTER', 'KEYSLOT', key));
        const nodes = ((await any.call('CLUSTER', 'NODES')) as string).trim().split('\n');
        const fields = nodes.map((line) => line.split(' '));
        const port = (f: string[]) => Number(/:(\d+)@/.exec(f[1]!)![1]);
        const owner = fields.find(
          (f) =>
            f[2]!.includes('master') &&
            f.slice(8).some((range) => {
              const [from, to = from] = range.split('-').map(Number);
              return from! <= slot && slot <= to!;
            }),
        );
        assert.ok(owner, `a master serves slot ${slot}`);
        const replica = fields.find((f) => f[3] === owner[0]);
        assert.ok(replica, `the master of slot ${slot} has a replica`);
        return { master: port(owner), replica: port(replica) };
      } finally {
        any.disconnect();
      }
    }

    it('a write through the new master drops the entry a replica had cached; its links follow the new master', async () => {
      const ref = freshRef();
      const g1 = await a.putToken(ref, sampleRecord(), HOUR);
      await cached(b, ref);
      const flushes = cacheOf(b).stats().flushes;
      const { master, replica } = await masterAndReplica(tokenKey(ref));
      const linkPorts = () =>
        cacheOf(b)
          .linkConnections()
          .map((c) => (c as Redis).options.port);
      assert.ok(linkPorts().includes(master) && !linkPorts().includes(replica));

      // A coordinated manual failover: the replica catches up with its master, then takes over.
      await clusterFailover(replica);
      // B sends no command while it serves from its cache: its periodic slot-map refresh (5 s)
      // finds the new master, and its links follow — the old one's dropped, the cache with it.
      await waitUntil(
        'B has a link to the new master and none to the old',
        () => linkPorts().includes(replica) && !linkPorts().includes(master),
        15_000,
      );
      assert.ok(cacheOf(b).stats().flushes > flushes, 'B dropped its cache when the masters changed');

      let g2 = 0;
      await waitUntil('A writes through the new master', async () => {
        g2 = await a.putToken(ref, sampleRecord(), HOUR).catch(() => 0);
        return g2 > g1;
      });
      await waitUntil(
        'B reads the generation written through the new master',
        async () => (await b.getToken(ref).catch(() => undefined))?.generation === g2,
      );
      // B caches again from the new master, whose link carries A's next write.
      await waitUntil('B serves from its cache again', () => cacheOf(b).active);
      await cached(b, ref);
      const g3 = await a.putToken(ref, sampleRecord(), HOUR);
      await waitUntil('B reads the next generation', async () => (await b.getToken(ref))?.generation === g3);
    });
  });

  cacheSuite('three-node cluster', async () => {
    const cluster: RedisCluster = await startRedisCluster();
    return {
      config: storeConfig({ CREDBROKER_REDIS_CLUSTER: cluster.urls.join(',') }),
      masters: cluster.ports.map((port) => new Redis({ host: '127.0.0.1', port })),
      stop: () => cluster.stop(),
    };
  });
});
