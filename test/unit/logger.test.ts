import assert from 'node:assert/strict';
import { reauthRequired } from '../../src/core/errors.js';
import { hashUserId, setUserHashKey, userIdHash } from '../../src/logger.js';
import { deriveUserHashKey, userHashKeys } from '../../src/log-keys.js';
import { storeUnavailable } from '../../src/store/redis-store.js';
import { captureLogs } from '../helpers/log-capture.js';

const USER = 'alice@example.com';

describe('logger', () => {
  it('logs a BrokerError with the hash of its user id, never the id', () => {
    const logs = captureLogs();
    logs.logger.warn({ err: reauthRequired('NO_TOKEN', { provider: 'corp', userId: USER }) }, 'x');

    assert.ok(!logs.text().includes(USER));
    const err = logs.records()[0]!.err as { metadata: Record<string, string>; message: string };
    assert.deepEqual(err.metadata, { cause: 'NO_TOKEN', provider: 'corp', userIdHash: hashUserId(USER) });
    assert.match(err.message, /no token is stored/);
  });

  it('names a user by a keyed handle when the process has a key, by the plain hash without one', () => {
    const key = deriveUserHashKey(Buffer.alloc(32, 7));
    const plain = userIdHash(USER, undefined);
    const keyed = userIdHash(USER, key);
    assert.match(plain, /^[0-9a-f]{16}$/);
    assert.match(keyed, /^[0-9a-f]{16}$/);
    assert.notEqual(keyed, plain, 'the keyed handle is not the one anyone can compute');
    assert.equal(userIdHash(USER, key), keyed, 'stable');
    assert.notEqual(userIdHash('bob@example.com', key), keyed);
    assert.notEqual(userIdHash(USER, deriveUserHashKey(Buffer.alloc(32, 8))), keyed);
    try {
      setUserHashKey(undefined); // whatever an app built by an earlier test set
      assert.equal(hashUserId(USER), plain);
      setUserHashKey(key);
      assert.equal(hashUserId(USER), keyed, 'the memo was cleared with the new key');
      const logs = captureLogs();
      logs.logger.warn({ err: reauthRequired('NO_TOKEN', { provider: 'corp', userId: USER }) }, 'x');
      const err = logs.records()[0]!.err as { metadata: Record<string, string> };
      assert.equal(err.metadata.userIdHash, keyed);
    } finally {
      setUserHashKey(undefined);
    }
    assert.equal(hashUserId(USER), plain);
  });

  it('derives the user-id hash key under its own label, never the material itself', () => {
    const material = Buffer.alloc(32, 7);
    const derived = deriveUserHashKey(material);
    assert.equal(derived.length, 32);
    assert.ok(!derived.equals(material));
    assert.ok(derived.equals(deriveUserHashKey(Buffer.alloc(32, 7))), 'stable');
    assert.ok(!derived.equals(deriveUserHashKey(Buffer.alloc(32, 8))));
  });

  it('hashes with log_user_hash_key when set, else the active store key, else unkeyed', () => {
    const ring = {
      active: { id: 'k2', key: Buffer.alloc(32, 2) },
      ids: ['k1', 'k2'],
      get: (id: string) => ({ id, key: Buffer.alloc(32, id === 'k1' ? 1 : 2) }),
    };
    const own = userHashKeys({ log_user_hash_key: 'x'.repeat(32) }, ring);
    assert.deepEqual(
      own.map((k) => k.name),
      ['log_user_hash_key'],
    );
    assert.ok(own[0]!.key!.equals(deriveUserHashKey(Buffer.from('x'.repeat(32)))));
    const fromRing = userHashKeys({ log_user_hash_key: undefined }, ring);
    assert.deepEqual(
      fromRing.map((k) => k.name),
      ['store key k2 (active)', 'store key k1'],
    );
    assert.ok(fromRing[0]!.key!.equals(deriveUserHashKey(Buffer.alloc(32, 2))));
    assert.deepEqual(userHashKeys({ log_user_hash_key: undefined }, undefined), [
      { name: 'unkeyed', key: undefined },
    ]);
  });

  it('drops the command ioredis attaches to an error, keeping its message', () => {
    // ioredis sets `command: { name, args }` on reply errors: args hold key names with the user
    // id, the user id itself and sealed records.
    const reply = Object.assign(new Error("READONLY You can't write against a read only replica."), {
      command: { name: 'evalsha', args: ['sha', 2, `credbroker:v1:{corp/${USER}}:token`, USER] },
    });
    const logs = captureLogs();
    logs.logger.error({ err: reply }, 'direct');
    logs.logger.error({ err: storeUnavailable(reply) }, 'as cause');

    assert.ok(!logs.text().includes(USER));
    assert.ok(!logs.text().includes('evalsha'));
    const [direct, wrapped] = logs.records() as { err: { message: string } }[];
    assert.match(direct!.err.message, /READONLY/);
    assert.match(wrapped!.err.message, /unreachable: READONLY/);
  });

  it('censors secret-named properties of a logged error, keeping its error code', () => {
    const err = Object.assign(new Error('refresh failed'), {
      refresh_token: 'RT-on-error',
      code: 'ECONNRESET',
    });
    const logs = captureLogs();
    logs.logger.error({ err: storeUnavailable(err) }, 'wrapped');
    logs.logger.error({ err }, 'direct');

    assert.ok(!logs.text().includes('RT-on-error'));
    const [, direct] = logs.records() as { err: Record<string, unknown> }[];
    assert.equal(direct!.err.code, 'ECONNRESET');
    assert.equal(direct!.err.refresh_token, '[REDACTED]');
  });

  it('drops a response or body attached to an error', () => {
    const err = Object.assign(new Error('token endpoint failed'), {
      body: { access_token: 'AT-in-body' },
      response: { text: 'RT-in-response' },
    });
    const logs = captureLogs();
    logs.logger.error({ err }, 'x');

    assert.ok(!logs.text().includes('AT-in-body'));
    assert.ok(!logs.text().includes('RT-in-response'));
    assert.match(logs.text(), /token endpoint failed/);
  });

  it('censors secret-named keys at any depth of a logged object, and in child bindings', () => {
    const logs = captureLogs();
    const shared = { provider: 'corp' };
    logs.logger.info(
      {
        accessToken: 'AT-top',
        outer: { refresh_token: 'RT-nested', inner: { code: 'CODE-deep', keep: 'visible' } },
        list: [{ client_secret: 'CS-in-array' }],
        shared,
      },
      'line',
    );
    logs.logger.child({ token: 'TOKEN-binding' }).info({ state: 'STATE-child' }, 'child line');
    const text = logs.text();
    for (const secret of [
      'AT-top',
      'RT-nested',
      'CODE-deep',
      'CS-in-array',
      'TOKEN-binding',
      'STATE-child',
    ]) {
      assert.ok(!text.includes(secret), `log contains ${secret}`);
    }
    assert.match(text, /visible/);
    const [first] = logs.records();
    assert.equal((first!.outer as { inner: { code: string } }).inner.code, '[REDACTED]');
    assert.deepEqual(shared, { provider: 'corp' }, "the caller's object is not mutated");
  });
});
