import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { CallContext } from '../../src/broker/api.js';
import { createFakeClock, type FakeClock } from '../helpers/fake-clock.js';
import { BrokerError, reauthRequired, type SubjectRef } from '../../src/core/errors.js';
import { createTokenService, type TokenService } from '../../src/broker/get-token.js';
import type { IdpClient, TokenSet } from '../../src/core/idp-client.js';
import { createLogger } from '../../src/logger.js';
import { createKeyRing } from '../../src/store/key-ring.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import type { NewTokenRecord, TokenStore } from '../../src/core/token-store.js';
import { callContext, DAY, idpBasics, MIN } from '../helpers/domain-fixtures.js';

const alice: SubjectRef = { provider: 'corp', userId: 'alice' };

const ctx = (): CallContext => callContext();

function record(clock: FakeClock, overrides: Partial<NewTokenRecord> = {}): NewTokenRecord {
  return {
    accessToken: 'at-0',
    refreshToken: 'rt-0',
    tokenType: 'Bearer',
    expiresAt: clock.now() + 60 * MIN,
    refreshExpiresAt: undefined,
    scopes: [],
    idToken: undefined,
    obtainedVia: 'login',
    updatedAt: clock.now(),
    subject: undefined,
    ...overrides,
  };
}

describe('RevokeSubjectToken', () => {
  let clock: FakeClock;
  let store: TokenStore;
  let revoked: [string, string][];
  let revokeOutcome: 'REVOKED' | 'NOT_SUPPORTED' | 'FAILED';
  let refresh: (refreshToken: string) => Promise<TokenSet>;
  let service: TokenService;

  beforeEach(async () => {
    clock = createFakeClock();
    store = createMemoryStore({ keyRing: createKeyRing([{ id: 'k1', key: randomBytes(32) }]), clock });
    revoked = [];
    revokeOutcome = 'REVOKED';
    refresh = () => Promise.reject(new Error('not used'));
    const idp: IdpClient = {
      ...idpBasics,
      skewMs: MIN,
      refresh: (refreshToken) => refresh(refreshToken),
      revoke: async (token, hint) => {
        revoked.push([token, hint]);
        return revokeOutcome;
      },
    };
    service = createTokenService({
      store,
      idps: { ids: ['corp'], get: () => idp },
      storageEnabled: true,
      lockLeaseMs: 1000,
      clock,
      logger: createLogger({ level: 'silent' }),
    });
  });

  const revoke = (revokeAtIdp: boolean) => service.revokeSubjectToken({ ...alice, revokeAtIdp }, ctx());

  it('deletes the record without calling the IdP when not asked to', async () => {
    await store.putToken(alice, record(clock), DAY);
    assert.deepEqual(await revoke(false), { deleted: true, idpRevocation: 'NOT_REQUESTED' });
    assert.equal(await store.getToken(alice), undefined);
    assert.deepEqual(revoked, []);
  });

  it('is idempotent: revoking again reports nothing deleted', async () => {
    await store.putToken(alice, record(clock), DAY);
    await revoke(true);
    assert.deepEqual(await revoke(true), { deleted: false, idpRevocation: 'NOT_SUPPORTED' });
    assert.deepEqual(await revoke(false), { deleted: false, idpRevocation: 'NOT_REQUESTED' });
    assert.equal(revoked.length, 1);
  });

  it('revokes the refresh token at the IdP (RFC 7009) after deleting the record', async () => {
    await store.putToken(alice, record(clock), DAY);
    assert.deepEqual(await revoke(true), { deleted: true, idpRevocation: 'REVOKED' });
    assert.deepEqual(revoked, [['rt-0', 'refresh_token']]);
    assert.equal(await store.getToken(alice), undefined);
  });

  it('revokes the access token when there is no refresh token', async () => {
    await store.putToken(alice, record(clock, { refreshToken: undefined }), 60 * MIN);
    await revoke(true);
    assert.deepEqual(revoked, [['at-0', 'access_token']]);
  });

  it('reports what the IdP said, and deletes the record even when the IdP call failed', async () => {
    await store.putToken(alice, record(clock), DAY);
    revokeOutcome = 'FAILED';
    assert.deepEqual(await revoke(true), { deleted: true, idpRevocation: 'FAILED' });
    assert.equal(await store.getToken(alice), undefined);
    await store.putToken(alice, record(clock), DAY);
    revokeOutcome = 'NOT_SUPPORTED';
    assert.deepEqual(await revoke(true), { deleted: true, idpRevocation: 'NOT_SUPPORTED' });
  });

  it('keeps the record deleted when a refresh in flight finishes after the revoke', async () => {
    await store.putToken(alice, record(clock, { expiresAt: clock.now() - 1 }), DAY);
    let landed!: () => void;
    let started!: () => void;
    const inFlight = new Promise<void>((resolve) => (started = resolve));
    refresh = async () => {
      started();
      await new Promise<void>((resolve) => (landed = resolve));
      return {
        accessToken: 'at-late',
        refreshToken: 'rt-late',
        tokenType: 'Bearer',
        expiresAt: clock.now() + 60 * MIN,
        refreshExpiresAt: undefined,
        scopes: undefined,
        idToken: undefined,
      };
    };
    const pending = Promise.resolve(service.getValidSubjectToken({ ...alice, minValidForMs: MIN }, ctx()));
    await inFlight;
    assert.deepEqual(await revoke(true), { deleted: true, idpRevocation: 'REVOKED' });
    landed();
    await assert.rejects(pending, (err: unknown) => {
      assert.ok(err instanceof BrokerError);
      assert.equal(err.reason, 'REAUTH_REQUIRED');
      return true;
    });
    assert.equal(await store.getToken(alice), undefined);
    // The grant the late refresh produced is revoked too.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(revoked, [
      ['rt-0', 'refresh_token'],
      ['rt-late', 'refresh_token'],
    ]);
  });

  it('deletes an undecryptable record, with nothing to revoke at the IdP', async () => {
    await store.putToken(alice, record(clock), DAY);
    // Every read fails to open, as with a lost key.
    store.getToken = (ref) => Promise.reject(reauthRequired('UNDECRYPTABLE', ref));
    assert.deepEqual(await revoke(true), { deleted: true, idpRevocation: 'NOT_SUPPORTED' });
    assert.deepEqual(revoked, []);
  });

  it('deletes nothing when storage is disabled', async () => {
    service = createTokenService({
      store,
      idps: { ids: ['corp'], get: () => ({}) as IdpClient },
      storageEnabled: false,
      lockLeaseMs: 1000,
      clock,
      logger: createLogger({ level: 'silent' }),
    });
    assert.deepEqual(await revoke(false), { deleted: false, idpRevocation: 'NOT_REQUESTED' });
    assert.deepEqual(await revoke(true), { deleted: false, idpRevocation: 'NOT_SUPPORTED' });
  });
});
