import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/config/load.js';
import { createKeyRing, KeyRingError, loadKeyRing } from '../../src/store/key-ring.js';

const b64 = () => randomBytes(32).toString('base64');

function assertRingError(fn: () => unknown, pattern: RegExp, secret?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof KeyRingError, String(err));
    assert.ok(err instanceof ConfigError, 'a start-up configuration error (exit 2)');
    assert.match(err.message, pattern);
    if (secret !== undefined) assert.ok(!err.message.includes(secret), 'message leaks key material');
    return true;
  });
}

describe('key ring', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'credbroker-keys-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is undefined (storage disabled) when no key is configured', () => {
    assert.equal(loadKeyRing({}), undefined);
    assert.equal(loadKeyRing({ keys: '  ' }), undefined);
  });

  it('parses CREDBROKER_KEYS and makes the only key active', () => {
    const key = b64();
    const ring = loadKeyRing({ keys: `k1:${key}` })!;
    assert.equal(ring.active.id, 'k1');
    assert.deepEqual(ring.active.key, Buffer.from(key, 'base64'));
  });

  it('uses active_key among several keys and opens with all of them', () => {
    const ring = loadKeyRing({ keys: `k2:${b64()}, k1:${b64()}`, active_key: 'k2' })!;
    assert.equal(ring.active.id, 'k2');
    assert.deepEqual(ring.ids, ['k2', 'k1']);
    assert.ok(ring.get('k1'));
    assert.equal(ring.get('k3'), undefined);
  });

  it('reads a file of id:base64 lines', () => {
    const file = join(dir, 'keys');
    writeFileSync(file, `# rotated 2026-11\nk1:${b64()}\nk2:${b64()}\n`);
    assert.deepEqual(loadKeyRing({ keys_file: file, active_key: 'k1' })!.ids, ['k1', 'k2']);
  });

  it('reads a directory of key files (Kubernetes secret mount), skipping hidden entries', () => {
    mkdirSync(join(dir, '..2026_11_26'));
    writeFileSync(join(dir, '..2026_11_26', 'k1'), `${b64()}\n`);
    symlinkSync('..2026_11_26', join(dir, '..data'));
    symlinkSync(join('..data', 'k1'), join(dir, 'k1'));
    writeFileSync(join(dir, 'k2'), b64());
    const ring = loadKeyRing({ keys_file: dir, active_key: 'k2' })!;
    assert.deepEqual(ring.ids, ['k1', 'k2']);
  });

  it('rejects bad base64 without printing it', () => {
    const bad = 'not*base64!!' + 'x'.repeat(30);
    assertRingError(() => loadKeyRing({ keys: `k1:${bad}` }), /key "k1" is not valid base64/, bad);
  });

  it('rejects a key that is not 32 bytes', () => {
    const short = randomBytes(16).toString('base64');
    assertRingError(() => loadKeyRing({ keys: `k1:${short}` }), /key "k1" is 16 bytes, expected 32/, short);
  });

  it('rejects duplicate ids, also across keys and keys_file', () => {
    assertRingError(
      () => loadKeyRing({ keys: `k1:${b64()},k1:${b64()}`, active_key: 'k1' }),
      /duplicate key id "k1"/,
    );
    const file = join(dir, 'keys');
    writeFileSync(file, `k1:${b64()}\n`);
    assertRingError(
      () => loadKeyRing({ keys: `k1:${b64()}`, keys_file: file, active_key: 'k1' }),
      /duplicate key id/,
    );
  });

  it('rejects an active id that is not in the ring, and several keys without one', () => {
    assertRingError(
      () => loadKeyRing({ keys: `k1:${b64()}`, active_key: 'k9' }),
      /active_key "k9" is not in the key ring/,
    );
    assertRingError(() => loadKeyRing({ keys: `k1:${b64()},k2:${b64()}` }), /active_key is required/);
    assertRingError(() => loadKeyRing({ active_key: 'k1' }), /no key is configured/);
  });

  it('rejects bad id characters and entries without an id, never echoing the entry', () => {
    assertRingError(() => loadKeyRing({ keys: `k 1:${b64()}` }), /key id "k 1" is invalid/);
    const key = b64();
    assertRingError(() => loadKeyRing({ keys: key }), /entry 1 is not of the form id:base64/, key);
    assertRingError(() => createKeyRing([{ id: 'a/b', key: randomBytes(32) }]), /invalid/);
  });

  it('rejects an unreadable or empty keys_file', () => {
    assertRingError(() => loadKeyRing({ keys_file: join(dir, 'missing') }), /cannot read .* \(ENOENT\)/);
    assertRingError(() => loadKeyRing({ keys_file: dir }), /holds no key/);
  });
});
