import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isBrokerError } from '../../src/core/errors.js';
import {
  ENVELOPE_VERSION,
  envelopeKeyId,
  envelopeOverhead,
  NONCE_BYTES,
  TAG_BYTES,
} from '../../src/store/envelope.js';
import { createKeyRing } from '../../src/store/key-ring.js';
import {
  encodeRecord,
  loginStateId,
  openLoginState,
  openRecord,
  sealLoginState,
  sealRecord,
} from '../../src/store/record-codec.js';
import type { TokenRecord } from '../../src/core/token-store.js';

const k1 = { id: 'k1', key: randomBytes(32) };
const k2 = { id: 'k2', key: randomBytes(32) };
const alice = { provider: 'corp', userId: 'alice' };
const record: TokenRecord = {
  accessToken: 'at-secret-123',
  refreshToken: 'rt-secret-456',
  tokenType: 'Bearer',
  expiresAt: 1_800_000_000_000,
  refreshExpiresAt: 1_900_000_000_000,
  scopes: ['openid', 'email'],
  idToken: 'idt-789',
  obtainedVia: 'login',
  updatedAt: 1_700_000_000_000,
  generation: 7,
  subject: 'sub-1',
};

function assertUndecryptable(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isBrokerError(err, 'REAUTH_REQUIRED'), String(err));
    assert.equal(err.metadata.cause, 'UNDECRYPTABLE');
    return true;
  });
}

describe('envelope', () => {
  const ring = createKeyRing([k1]);

  it('round-trips a record and reports the key that opened it', () => {
    const sealed = sealRecord(ring.active, alice, record);
    assert.deepEqual(openRecord(ring, alice, sealed), { record, keyId: 'k1' });
  });

  it('round-trips a minimal record without optional fields', () => {
    const minimal: TokenRecord = {
      ...record,
      refreshToken: undefined,
      refreshExpiresAt: undefined,
      idToken: undefined,
      subject: undefined,
      scopes: [],
      obtainedVia: 'refresh',
    };
    assert.deepEqual(openRecord(ring, alice, sealRecord(ring.active, alice, minimal)).record, minimal);
  });

  it('lays out version, key id, nonce, ciphertext and tag with at most 48 bytes of overhead', () => {
    const sealed = sealRecord(ring.active, alice, record);
    const plain = encodeRecord(record);
    assert.equal(sealed[0], ENVELOPE_VERSION);
    assert.equal(sealed[1], 2);
    assert.equal(envelopeKeyId(sealed), 'k1');
    assert.equal(sealed.length, plain.length + envelopeOverhead(2));
    assert.equal(envelopeOverhead(2), 2 + 2 + NONCE_BYTES + TAG_BYTES);
    // keygen ids (`k20261126abcd`, 13 bytes) stay within the 48-byte goal.
    assert.ok(envelopeOverhead(13) <= 48);
  });

  it('uses a fresh nonce for every seal', () => {
    const a = sealRecord(ring.active, alice, record);
    const b = sealRecord(ring.active, alice, record);
    assert.notDeepEqual(a.subarray(4, 4 + NONCE_BYTES), b.subarray(4, 4 + NONCE_BYTES));
  });

  it('never contains the tokens in plaintext', () => {
    const sealed = sealRecord(ring.active, alice, record).toString('latin1');
    for (const secret of ['at-secret-123', 'rt-secret-456', 'idt-789']) assert.ok(!sealed.includes(secret));
  });

  const regions: [string, (len: number) => number][] = [
    ['version', () => 0],
    ['key id length', () => 1],
    ['key id', () => 2],
    ['nonce', () => 4 + 5],
    ['ciphertext', () => 4 + NONCE_BYTES + 3],
    ['tag', (len) => len - 1],
  ];
  for (const [region, at] of regions) {
    it(`fails as UNDECRYPTABLE when a byte of the ${region} is flipped`, () => {
      const sealed = sealRecord(ring.active, alice, record);
      sealed[at(sealed.length)]! ^= 0x01;
      assertUndecryptable(() => openRecord(ring, alice, sealed));
    });
  }

  it('fails as UNDECRYPTABLE when truncated or empty', () => {
    const sealed = sealRecord(ring.active, alice, record);
    assertUndecryptable(() => openRecord(ring, alice, sealed.subarray(0, sealed.length - 1)));
    assertUndecryptable(() => openRecord(ring, alice, sealed.subarray(0, 10)));
    assertUndecryptable(() => openRecord(ring, alice, Buffer.alloc(0)));
  });

  it('fails as UNDECRYPTABLE when the record is moved to another user or provider', () => {
    const sealed = sealRecord(ring.active, alice, record);
    assertUndecryptable(() => openRecord(ring, { provider: 'corp', userId: 'mallory' }, sealed));
    assertUndecryptable(() => openRecord(ring, { provider: 'other', userId: 'alice' }, sealed));
  });

  it('does not confuse provider/user boundaries (length-prefixed associated data)', () => {
    const sealed = sealRecord(ring.active, { provider: 'a', userId: 'bc' }, record);
    assertUndecryptable(() => openRecord(ring, { provider: 'ab', userId: 'c' }, sealed));
  });

  it('fails as UNDECRYPTABLE under a ring that lacks the key or holds a different key of that id', () => {
    const sealed = sealRecord(ring.active, alice, record);
    assertUndecryptable(() => openRecord(createKeyRing([k2]), alice, sealed));
    assertUndecryptable(() => openRecord(createKeyRing([{ id: 'k1', key: randomBytes(32) }]), alice, sealed));
  });

  it('fails as UNDECRYPTABLE when the stored generation differs from the sealed one', () => {
    const sealed = sealRecord(ring.active, alice, record);
    assertUndecryptable(() => openRecord(ring, alice, sealed, 8));
    assert.equal(openRecord(ring, alice, sealed, 7).record.generation, 7);
  });

  it('still opens records sealed under an old key once a new key is active', () => {
    const old = sealRecord(ring.active, alice, record);
    const rotated = createKeyRing([k2, k1], 'k2');
    assert.deepEqual(openRecord(rotated, alice, old), { record, keyId: 'k1' });
    assert.equal(envelopeKeyId(sealRecord(rotated.active, alice, record)), 'k2');
  });

  it('never names key material or plaintext in its errors', () => {
    const sealed = sealRecord(ring.active, alice, record);
    sealed[sealed.length - 1]! ^= 1;
    try {
      openRecord(ring, alice, sealed);
      assert.fail('expected UNDECRYPTABLE');
    } catch (err) {
      const text = `${String(err)} ${String((err as Error).cause)}`;
      assert.ok(!text.includes(k1.key.toString('base64')));
      assert.ok(!text.includes('secret'));
    }
  });
});

describe('login state sealing', () => {
  const value = {
    provider: 'corp',
    redirectUri: 'https://app/cb',
    codeVerifier: 'verifier-secret',
    nonce: 'n-1',
    scopes: ['openid'],
    createdAt: 1,
  };

  it('opens only with the state it was sealed for', () => {
    const sealed = sealLoginState('state-a', value);
    assert.deepEqual(openLoginState('state-a', sealed), value);
    assert.equal(openLoginState('state-b', sealed), undefined);
    assert.ok(!sealed.toString('latin1').includes('verifier-secret'));
  });

  it('is keyed by the SHA-256 of the state, never the state itself', () => {
    assert.match(loginStateId('state-a'), /^[0-9a-f]{64}$/);
    assert.notEqual(loginStateId('state-a'), loginStateId('state-b'));
  });
});
