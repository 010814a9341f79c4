/**
 * The contract of TokenStore.putDownstreamToken and of the login epoch it checks, run against the
 * memory store (test/unit/downstream-store.test.ts) and a real three-node Redis Cluster
 * (test/integration/downstream-cluster.test.ts: the script's four keys share one slot).
 */
import assert from 'node:assert/strict';
import type { SubjectRef } from '../../src/core/errors.js';
import type { NewTokenRecord, TokenStore } from '../../src/core/token-store.js';
import { freshRef, sampleRecord } from './store-contract.js';

const HOUR = 3_600_000;

function exchanged(loginEpoch: number, overrides: Partial<NewTokenRecord> = {}): NewTokenRecord {
  return sampleRecord({
    refreshToken: undefined,
    obtainedVia: 'exchange',
    subject: undefined,
    loginEpoch,
    ...overrides,
  });
}

export function downstreamStoreContract(name: string, store: () => TokenStore): void {
  describe(`putDownstreamToken and login epochs (${name})`, () => {
    let subject: SubjectRef;
    let orders: SubjectRef;
    beforeEach(() => {
      subject = freshRef();
      orders = { ...subject, downstream: 'orders' };
    });

    it('gives a login its generation as login epoch, and a refresh keeps it', async () => {
      const s = store();
      const g = await s.putToken(subject, sampleRecord({ loginEpoch: 999 }), HOUR);
      assert.equal((await s.getToken(subject))?.loginEpoch, g, 'putToken ignores the epoch given');
      const owner = (await s.acquireLock(subject, 5_000))!;
      assert.ok(await s.putTokenFenced(subject, owner, g, sampleRecord({ loginEpoch: g }), HOUR));
      await s.releaseLock(subject, owner);
      // The downstream write checks the unsealed copy: still the login's epoch after the refresh.
      const dOwner = (await s.acquireLock(orders, 5_000))!;
      assert.deepEqual(await s.putDownstreamToken(orders, dOwner, 'absent', exchanged(g), HOUR), {
        written: true,
        generation: 1,
      });
      const stored = await s.getToken(orders);
      assert.equal(stored?.loginEpoch, g);
      assert.equal(stored?.generation, 1);
      assert.equal(stored?.obtainedVia, 'exchange');
      await s.releaseLock(orders, dOwner);
      // A revoke and a new login: a new epoch.
      await s.deleteToken(subject);
      const again = await s.putToken(subject, sampleRecord(), HOUR);
      assert.equal((await s.getToken(subject))?.loginEpoch, again);
      assert.notEqual(again, g);
    });

    it('writes only while the writer holds the lock', async () => {
      const s = store();
      const g = await s.putToken(subject, sampleRecord(), HOUR);
      assert.deepEqual(await s.putDownstreamToken(orders, 'not-the-owner', 'absent', exchanged(g), HOUR), {
        written: false,
        reason: 'lock',
      });
      const owner = (await s.acquireLock(orders, 5_000))!;
      await s.releaseLock(orders, owner);
      assert.deepEqual(await s.putDownstreamToken(orders, owner, 'absent', exchanged(g), HOUR), {
        written: false,
        reason: 'lock',
      });
      assert.equal(await s.getToken(orders), undefined);
    });

    it('writes only over the record expected: absent, present or one generation', async () => {
      const s = store();
      const g = await s.putToken(subject, sampleRecord(), HOUR);
      const owner = (await s.acquireLock(orders, 5_000))!;
      const refused = { written: false, reason: 'generation' };
      assert.deepEqual(await s.putDownstreamToken(orders, owner, 'present', exchanged(g), HOUR), refused);
      assert.deepEqual(await s.putDownstreamToken(orders, owner, 1, exchanged(g), HOUR), refused);
      const first = await s.putDownstreamToken(orders, owner, 'absent', exchanged(g), HOUR);
      assert.deepEqual(first, { written: true, generation: 1 });
      assert.deepEqual(await s.putDownstreamToken(orders, owner, 'absent', exchanged(g), HOUR), refused);
      assert.deepEqual(await s.putDownstreamToken(orders, owner, 7, exchanged(g), HOUR), refused);
      assert.deepEqual(
        await s.putDownstreamToken(orders, owner, 1, exchanged(g, { accessToken: 'second' }), HOUR),
        { written: true, generation: 2 },
      );
      assert.deepEqual(
        await s.putDownstreamToken(orders, owner, 'present', exchanged(g, { accessToken: 'third' }), HOUR),
        { written: true, generation: 3 },
      );
      assert.equal((await s.getToken(orders))?.accessToken, 'third');
      // After a delete the generation goes on from the tombstone.
      assert.ok(await s.deleteToken(orders));
      assert.deepEqual(await s.putDownstreamToken(orders, owner, 'absent', exchanged(g), HOUR), {
        written: true,
        generation: 4,
      });
      await s.releaseLock(orders, owner);
    });

    it('writes only while the subject record exists with the login epoch given', async () => {
      const s = store();
      const owner = (await s.acquireLock(orders, 5_000))!;
      const refused = { written: false, reason: 'subject' };
      assert.deepEqual(await s.putDownstreamToken(orders, owner, 'absent', exchanged(0), HOUR), refused);
      const g = await s.putToken(subject, sampleRecord(), HOUR);
      assert.deepEqual(await s.putDownstreamToken(orders, owner, 'absent', exchanged(g + 1), HOUR), refused);
      // Revoked: no subject record.
      await s.deleteToken(subject);
      assert.deepEqual(await s.putDownstreamToken(orders, owner, 'absent', exchanged(g), HOUR), refused);
      // Logged in again: the old epoch is refused, the new one accepted.
      const relogin = await s.putToken(subject, sampleRecord(), HOUR);
      assert.deepEqual(await s.putDownstreamToken(orders, owner, 'absent', exchanged(g), HOUR), refused);
      assert.equal(await s.getToken(orders), undefined);
      const ok = await s.putDownstreamToken(orders, owner, 'absent', exchanged(relogin), HOUR);
      assert.equal(ok.written, true);
      await s.releaseLock(orders, owner);
    });
  });
}
