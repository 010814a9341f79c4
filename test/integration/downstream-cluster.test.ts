/**
 * Downstream token records on a real three-node Redis Cluster: their keys share the user's hash
 * tag (one slot with the subject record, so the multi-key Lua scripts stay legal), every store
 * operation the exchange uses works on them, and they are separate from the subject record.
 */
import assert from 'node:assert/strict';
import { Cluster } from 'ioredis';
import { loadConfig } from '../../src/config/load.js';
import type { SubjectRef } from '../../src/core/errors.js';
import type { TokenStore } from '../../src/core/token-store.js';
import { createLogger } from '../../src/logger.js';
import { createStore } from '../../src/store/index.js';
import { lockKey, tokenKey, tombKey } from '../../src/store/keys.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';
import { contractKeyRing, freshRef, sampleRecord } from '../unit/store-contract.js';
import { downstreamStoreContract } from '../unit/downstream-store-contract.js';

describe('Downstream token records on a three-node Redis Cluster', function () {
  this.timeout(60_000);
  let cluster: RedisCluster;
  let store: TokenStore;
  let raw: Cluster;

  before(async () => {
    cluster = await startRedisCluster();
    const config = loadConfig({
      env: { CREDBROKER_REDIS_CLUSTER: cluster.urls.join(','), CREDBROKER_STORE_COMMAND_TIMEOUT: '1s' },
    });
    store = createStore(config.store, contractKeyRing, createLogger({ level: 'silent' }));
    raw = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
    const until = Date.now() + 10_000;
    for (;;) {
      try {
        await store.ping();
        break;
      } catch (err) {
        if (Date.now() > until) throw err;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  });

  after(async () => {
    raw?.disconnect();
    await store?.close();
    await cluster?.stop();
  });

  it("keeps a downstream record, lock and tombstone in the user's slot, apart from the subject record", async () => {
    const subject = freshRef();
    const orders: SubjectRef = { ...subject, downstream: 'orders' };
    const slot = async (key: string) => Number(await raw.cluster('KEYSLOT', key));
    const slots = new Set(
      await Promise.all(
        [tokenKey(subject), tokenKey(orders), lockKey(orders), tombKey(orders)].map((key) => slot(key)),
      ),
    );
    assert.equal(slots.size, 1, 'one slot for the user');

    await store.putToken(subject, sampleRecord({ accessToken: 'subject-at' }), 60_000);
    const first = await store.putToken(
      orders,
      sampleRecord({ accessToken: 'orders-1', refreshToken: undefined, obtainedVia: 'exchange' }),
      60_000,
    );
    assert.equal((await store.getToken(orders))?.accessToken, 'orders-1');
    assert.equal((await store.getToken(subject))?.accessToken, 'subject-at');

    // The exchange's discipline: lock, fenced write over the generation read, release wakes waiters.
    const owner = await store.acquireLock(orders, 5000);
    assert.ok(owner);
    assert.equal(await store.acquireLock(orders, 5000), undefined, 'held');
    assert.ok(await store.acquireLock(subject, 5000), "the subject's lock is another lock");
    const woken = store.waitForUnlock(orders, 5000);
    const rotated = sampleRecord({
      accessToken: 'orders-2',
      refreshToken: undefined,
      obtainedVia: 'exchange',
    });
    assert.equal(await store.putTokenFenced(orders, owner, first, rotated, 60_000), true);
    assert.equal(
      await store.putTokenFenced(orders, owner, first, rotated, 60_000),
      false,
      'stale generation',
    );
    const started = Date.now();
    assert.equal(await store.releaseLock(orders, owner), true);
    await woken;
    assert.ok(Date.now() - started < 2000, 'woken by the release, not the timeout');
    assert.equal((await store.getToken(orders))?.accessToken, 'orders-2');
    assert.ok((await raw.pttl(tokenKey(orders))) > 0, 'with a TTL');

    // Revoke: deleted with a tombstone; the subject record is separate.
    assert.equal(await store.deleteToken(orders), true);
    assert.equal(await store.getToken(orders), undefined);
    assert.ok((await raw.exists(tombKey(orders))) === 1);
    assert.equal((await store.getToken(subject))?.accessToken, 'subject-at');
  });
  downstreamStoreContract('three-node Redis Cluster', () => store);
});
