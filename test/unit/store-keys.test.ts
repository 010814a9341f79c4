import assert from 'node:assert/strict';
import {
  causeKey,
  escapeUserId,
  lockKey,
  loginKey,
  subjectTag,
  tokenKey,
  tombKey,
  unlockChannel,
} from '../../src/store/keys.js';
import { TRICKY_USER_IDS } from './store-contract.js';

/** Redis Cluster's hash tag: the text between the first `{` and the next `}` (CLUSTER KEYSLOT rules). */
function hashTag(key: string): string | undefined {
  const open = key.indexOf('{');
  const close = key.indexOf('}', open + 1);
  return open >= 0 && close > open + 1 ? key.slice(open + 1, close) : undefined;
}

describe('store keys', () => {
  it('follow credbroker:v1:{provider/user}:kind with one hash tag for all of a user’s keys', () => {
    const ref = { provider: 'corp', userId: 'alice@example.com' };
    assert.equal(tokenKey(ref), 'credbroker:v1:{corp/alice@example.com}:token');
    assert.equal(lockKey(ref), 'credbroker:v1:{corp/alice@example.com}:lock');
    assert.equal(tombKey(ref), 'credbroker:v1:{corp/alice@example.com}:tomb');
    assert.equal(unlockChannel(ref), 'credbroker:v1:{corp/alice@example.com}:unlock');
    assert.equal(causeKey(ref), 'credbroker:v1:{corp/alice@example.com}:cause');
    assert.equal(
      causeKey({ ...ref, downstream: 'api' }),
      'credbroker:v1:{corp/alice@example.com}:dcause:api',
    );
    assert.equal(loginKey('ab12'), 'credbroker:v1:login:ab12');
  });

  it('map colons, braces, slashes, emoji and 256-byte ids to distinct keys whose hash tag is the whole subject', () => {
    const keys = new Set<string>();
    for (const userId of TRICKY_USER_IDS) {
      const ref = { provider: 'corp', userId };
      const key = tokenKey(ref);
      keys.add(key);
      assert.equal(hashTag(key), subjectTag(ref).slice(1, -1), key);
      assert.equal(hashTag(lockKey(ref)), hashTag(key));
      assert.equal(hashTag(causeKey(ref)), hashTag(key));
      assert.ok(key.length < 220, `bounded length: ${key.length}`);
    }
    assert.equal(keys.size, TRICKY_USER_IDS.length);
  });

  it('escapes reversibly and hashes long ids, so no escaped id can equal a hashed one', () => {
    assert.equal(escapeUserId('a:b/c{d}%'), 'a%3Ab%2Fc%7Bd%7D%25');
    assert.equal(decodeURIComponent(escapeUserId('😀 ünï')), '😀 ünï');
    assert.match(escapeUserId('x'.repeat(256)), /^#[0-9a-f]{64}$/);
    assert.equal(escapeUserId('#'), '%23');
    // The no-escaping fast path and the walk agree at the length limit.
    assert.equal(escapeUserId('a'.repeat(128)), 'a'.repeat(128));
    assert.match(escapeUserId('a'.repeat(129)), /^#[0-9a-f]{64}$/);
    assert.equal(escapeUserId('user-00007@example.com'), 'user-00007@example.com');
  });
});
