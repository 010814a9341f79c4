/**
 * Envelope benchmark (`npx tsx bench/envelope.ts [--seconds 3]`): seal + open per second of a
 * realistic token record (JWT-sized access and ID tokens, an opaque refresh token) on one core,
 * and the envelope's overhead in bytes over the protobuf plaintext (goal ≤ 48). Not a test: it
 * prints numbers for docs/PERFORMANCE.md.
 */
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { envelopeOverhead } from '../src/store/envelope.js';
import { createKeyRing } from '../src/store/key-ring.js';
import { encodeRecord, openRecord, sealRecord } from '../src/store/record-codec.js';
import type { TokenRecord } from '../src/core/token-store.js';

export interface EnvelopeBenchResult {
  readonly sealOpenPerSecond: number;
  readonly sealPerSecond: number;
  readonly openPerSecond: number;
  readonly plaintextBytes: number;
  readonly sealedBytes: number;
  readonly overheadBytes: number;
  readonly keyId: string;
}

const b64url = (n: number): string => randomBytes(n).toString('base64url');
/** A JWT of typical size: header.payload.signature with an RS256 signature. */
const jwt = (payloadBytes: number): string => `${b64url(27)}.${b64url(payloadBytes)}.${b64url(256)}`;

function rate(seconds: number, op: () => void): number {
  for (let i = 0; i < 2_000; i++) op(); // warm-up: JIT and OpenSSL contexts
  const until = performance.now() + seconds * 1_000;
  let n = 0;
  const started = performance.now();
  while (performance.now() < until) {
    for (let i = 0; i < 500; i++) op();
    n += 500;
  }
  return n / ((performance.now() - started) / 1_000);
}

export function runEnvelopeBench(seconds = 3): EnvelopeBenchResult {
  // A keygen-style id (`k` + date + 4 hex): the id length is part of the overhead.
  const ring = createKeyRing([{ id: 'k20261126ab12', key: randomBytes(32) }]);
  const ref = { provider: 'corp', userId: 'alice@example.com' };
  const now = Date.now();
  const record: TokenRecord = {
    accessToken: jwt(600),
    refreshToken: b64url(48),
    tokenType: 'Bearer',
    expiresAt: now + 3_600_000,
    refreshExpiresAt: now + 30 * 86_400_000,
    scopes: ['openid', 'profile', 'email', 'offline_access'],
    idToken: jwt(500),
    obtainedVia: 'refresh',
    updatedAt: now,
    generation: 42,
    subject: '248289761001',
  };
  const plaintextBytes = encodeRecord(record).length;
  const sealed = sealRecord(ring.active, ref, record);
  const sealPerSecond = rate(seconds, () => sealRecord(ring.active, ref, record));
  const openPerSecond = rate(seconds, () => openRecord(ring, ref, sealed));
  const sealOpenPerSecond = rate(seconds, () => openRecord(ring, ref, sealRecord(ring.active, ref, record)));
  const overheadBytes = sealed.length - plaintextBytes;
  if (overheadBytes !== envelopeOverhead(Buffer.byteLength(ring.active.id)))
    throw new Error('overhead mismatch');
  return {
    sealOpenPerSecond,
    sealPerSecond,
    openPerSecond,
    plaintextBytes,
    sealedBytes: sealed.length,
    overheadBytes,
    keyId: ring.active.id,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' } } });
  const r = runEnvelopeBench(Number(values.seconds));
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  console.log(`envelope benchmark — node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'}, one core`);
  console.log(`  record: ${r.plaintextBytes} B protobuf plaintext → ${r.sealedBytes} B sealed`);
  console.log(`  seal            ${fmt(r.sealPerSecond)} /s`);
  console.log(`  open            ${fmt(r.openPerSecond)} /s`);
  console.log(`  seal + open     ${fmt(r.sealOpenPerSecond)} /s`);
  console.log(
    `  overhead        ${r.overheadBytes} B (key id "${r.keyId}", ${r.keyId.length} B; goal ≤ 48) ${r.overheadBytes <= 48 ? 'OK' : 'OVER'}`,
  );
}
