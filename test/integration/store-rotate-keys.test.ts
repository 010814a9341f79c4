import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { formatPosition, rotateKeys, type RotationPosition } from '../../src/cli/rotate-keys.js';
import { loadConfig } from '../../src/config/load.js';
import { envelopeKeyId } from '../../src/store/envelope.js';
import { createKeyRing, type KeyRing } from '../../src/store/key-ring.js';
import { tokenKey, TOKEN_KEY_PATTERN } from '../../src/store/keys.js';
import { connectRedis, type RedisClient } from '../../src/store/redis-connection.js';
import { createRedisStore, withScripts } from '../../src/store/redis-store.js';
import type { SubjectRef } from '../../src/core/errors.js';
import type { TokenStore } from '../../src/core/token-store.js';
import { runCli } from '../helpers/cli.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { sampleRecord } from '../unit/store-contract.js';

const k1 = { id: 'k1', key: randomBytes(32) };
const k2 = { id: 'k2', key: randomBytes(32) };
const oldRing = createKeyRing([k1]);
const newRing = createKeyRing([k2, k1], 'k2');
const HOUR = 3_600_000;

async function open(env: Record<string, string>, ring: KeyRing): Promise<TokenStore> {
  const config = loadConfig({ env }).store;
  const store = createRedisStore({
    connections: connectRedis(config)!,
    keyRing: ring,
    commandTimeoutMs: 2_000,
  });
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

async function writeRecords(store: TokenStore, provider: string, count: number): Promise<SubjectRef[]> {
  const refs = Array.from({ length: count }, (_, i) => ({ provider, userId: `user-${i}` }));
  for (let i = 0; i < refs.length; i += 100) {
    await Promise.all(refs.slice(i, i + 100).map((ref) => store.putToken(ref, sampleRecord(), HOUR)));
  }
  return refs;
}

function masters(client: RedisClient): Redis[] {
  return client instanceof Cluster ? client.nodes('master') : [client];
}

/** Key id of every token record, per master. */
async function keyIds(client: RedisClient): Promise<{ ids: Map<string, number>; perNode: number[] }> {
  const ids = new Map<string, number>();
  const perNode: number[] = [];
  for (const node of masters(client)) {
    let count = 0;
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', TOKEN_KEY_PATTERN, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const id = envelopeKeyId((await node.hgetBuffer(key, 'v'))!) ?? '?';
        ids.set(id, (ids.get(id) ?? 0) + 1);
        count += 1;
      }
    } while (cursor !== '0');
    perNode.push(count);
  }
  return { ids, perNode };
}

describe('rotate-keys', function () {
  this.timeout(120_000);

  describe('on a standalone redis-server', () => {
    let server: RedisServer;
    let env: Record<string, string>;
    let oldStore: TokenStore;
    let newStore: TokenStore;
    let client: Redis;
    before(async () => {
      server = await startRedis();
      env = { CREDBROKER_REDIS_URL: server.url };
      oldStore = await open(env, oldRing);
      newStore = await open(env, newRing);
      client = new Redis(server.url);
    });
    after(async () => {
      await oldStore?.close();
      await newStore?.close();
      client?.disconnect();
      await server?.stop();
    });
    beforeEach(async () => {
      await client.flushall();
    });

    it('re-seals 1,000 records under the active key, keeping generation and TTL, and counts the undecryptable', async () => {
      const refs = await writeRecords(oldStore, 'corp', 1_000);
      await oldStore.putToken(refs[0]!, sampleRecord(), HOUR); // generation 2
      const lost = await open(env, createKeyRing([{ id: 'k0', key: randomBytes(32) }]));
      await lost.putToken({ provider: 'corp', userId: 'lost-key' }, sampleRecord(), HOUR);
      await lost.close();

      const progress: RotationPosition[] = [];
      const summary = await rotateKeys({
        client,
        keyRing: newRing,
        batch: 100,
        onProgress: (_, p) => progress.push(p),
      });
      assert.deepEqual(summary, {
        resealed: 1_000,
        alreadyCurrent: 0,
        undecryptable: 1,
        changedMeanwhile: 0,
      });
      assert.ok(progress.length > 1, 'progress after every batch');
      assert.deepEqual(
        (await keyIds(client)).ids,
        new Map([
          ['k2', 1_000],
          ['k0', 1],
        ]),
      );

      const onlyNew = await open(env, createKeyRing([k2]));
      try {
        const first = await onlyNew.getToken(refs[0]!);
        assert.equal(first?.generation, 2);
        for (const ref of refs.slice(1, 50)) assert.equal((await onlyNew.getToken(ref))?.generation, 1);
      } finally {
        await onlyNew.close();
      }
      const ttl = await client.pttl(tokenKey(refs[5]!));
      assert.ok(ttl > HOUR - 60_000 && ttl <= HOUR, `TTL kept: ${ttl}`);

      const again = await rotateKeys({ client, keyRing: newRing });
      assert.deepEqual(again, { resealed: 0, alreadyCurrent: 1_000, undecryptable: 1, changedMeanwhile: 0 });
    });

    it('resumes from a printed position after an interruption', async () => {
      await writeRecords(oldStore, 'corp', 300);
      let stoppedAt: RotationPosition | undefined;
      const interrupted = await rotateKeys({
        client,
        keyRing: newRing,
        batch: 50,
        onProgress: (_, next) => {
          stoppedAt = next;
          throw new Error('interrupted');
        },
      }).catch((err: Error) => err);
      assert.ok(interrupted instanceof Error);
      assert.ok(
        stoppedAt && stoppedAt.cursor !== '0',
        `stopped at ${stoppedAt && formatPosition(stoppedAt)}`,
      );
      const before = (await keyIds(client)).ids.get('k2') ?? 0;
      assert.ok(before > 0 && before < 300);
      const rest = await rotateKeys({ client, keyRing: newRing, resume: stoppedAt });
      assert.equal(rest.resealed, 300 - before);
      assert.deepEqual((await keyIds(client)).ids, new Map([['k2', 300]]));
    });

    it('never overwrites a record a refresh rewrote after it was read', async () => {
      const [ref] = await writeRecords(oldStore, 'corp', 1);
      const owner = await newStore.acquireLock(ref!, 5_000);
      assert.ok(owner);
      const refreshed = sampleRecord({ obtainedVia: 'refresh' });
      assert.equal(await newStore.putTokenFenced(ref!, owner, 1, refreshed, HOUR), true);
      const stale = await client.hgetBuffer(tokenKey(ref!), 'v');
      assert.equal(await withScripts(client).cbReseal(tokenKey(ref!), 1, stale!), 0);
      assert.equal((await newStore.getToken(ref!))?.accessToken, refreshed.accessToken);
      await newStore.releaseLock(ref!, owner);
    });

    it('runs as `credbroker rotate-keys` with progress and a summary, never printing key material', async () => {
      await writeRecords(oldStore, 'corp', 20);
      const keys = `k2:${k2.key.toString('base64')},k1:${k1.key.toString('base64')}`;
      // Generous limits: two tsx start-ups on a loaded machine.
      const result = await runCli(
        ['rotate-keys'],
        { ...env, CREDBROKER_KEYS: keys, CREDBROKER_ACTIVE_KEY: 'k2' },
        60_000,
      );
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
      assert.match(result.stdout, /--resume \d+:\d+/);
      assert.match(result.stdout, /done in \d+ ms: re-sealed 20, already current 0, undecryptable 0/);
      const output = result.stdout + result.stderr;
      for (const k of [k1, k2]) assert.ok(!output.includes(k.key.toString('base64')), 'key material printed');
      const noKeys = await runCli(['rotate-keys'], env, 60_000);
      assert.equal(noKeys.code, 2);
      assert.match(noKeys.stderr, /needs a key ring/);
    });
  });

  describe('on a three-node Redis Cluster', () => {
    let cluster: RedisCluster;
    let store: TokenStore;
    let client: Cluster;
    before(async () => {
      cluster = await startRedisCluster();
      store = await open({ CREDBROKER_REDIS_CLUSTER: cluster.urls.join(',') }, oldRing);
      client = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
      await new Promise((resolve) => client.once('ready', resolve));
    });
    after(async () => {
      await store?.close();
      client?.disconnect();
      await cluster?.stop();
    });

    it('re-seals 1,000 records spread over every master', async () => {
      await writeRecords(store, 'corp', 1_000);
      const before = await keyIds(client);
      assert.equal(before.perNode.length, 3);
      assert.ok(
        before.perNode.every((n) => n > 0),
        `records per master: ${before.perNode.join(', ')}`,
      );
      const summary = await rotateKeys({ client, keyRing: newRing });
      assert.deepEqual(summary, {
        resealed: 1_000,
        alreadyCurrent: 0,
        undecryptable: 0,
        changedMeanwhile: 0,
      });
      assert.deepEqual((await keyIds(client)).ids, new Map([['k2', 1_000]]));
    });
  });
});
