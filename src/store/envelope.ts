/**
 * The AES-256-GCM envelope every stored secret travels in (docs/architecture.md §3):
 *
 *   version (1 byte) | keyIdLen (1) | keyId | nonce (12, random per seal) | ciphertext | tag (16)
 *
 * The associated data binds the envelope to where it is stored and to its key id, each part
 * length-prefixed (4-byte big-endian) so no two different tuples serialize alike:
 *
 *   AAD = lp("credbroker:v1") | lp(purpose) | lp(provider) | lp(userId) | lp(keyId)
 *
 * A record copied under another user's key, a flipped byte in any region, a truncation or a
 * wrong or missing key all fail with EnvelopeError; the store turns that into
 * REAUTH_REQUIRED / UNDECRYPTABLE. Nonces are random 96-bit (NIST SP 800-38D §8.2.2): with one
 * key the collision bound stays negligible far beyond any plausible number of token writes.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { KeyRing, RingKey } from './key-ring.js';

export const ENVELOPE_VERSION = 1;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
const DOMAIN = 'credbroker:v1';

/** Why an envelope could not be opened. Carries no key or plaintext material. */
export type EnvelopeFailure = 'TRUNCATED' | 'VERSION' | 'UNKNOWN_KEY' | 'AUTHENTICATION' | 'PLAINTEXT';

export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';
  constructor(
    readonly failure: EnvelopeFailure,
    message: string,
  ) {
    super(message);
  }
}

/** What the envelope is bound to. `purpose` separates token records from other sealed values. */
export interface EnvelopeContext {
  readonly purpose: string;
  readonly provider: string;
  readonly userId: string;
}

function lengthPrefixed(parts: readonly string[]): Buffer {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    const bytes = Buffer.from(part, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(bytes.length);
    chunks.push(len, bytes);
  }
  return Buffer.concat(chunks);
}

export function associatedData(context: EnvelopeContext, keyId: string): Buffer {
  return lengthPrefixed([DOMAIN, context.purpose, context.provider, context.userId, keyId]);
}

/** Bytes the envelope adds to its plaintext for a key id of `keyIdBytes` bytes. */
export function envelopeOverhead(keyIdBytes: number): number {
  return 2 + keyIdBytes + NONCE_BYTES + TAG_BYTES;
}

/** Seals `plaintext` under `key` with a fresh random nonce. */
export function seal(key: RingKey, context: EnvelopeContext, plaintext: Uint8Array): Buffer {
  const keyId = Buffer.from(key.id, 'utf8');
  if (keyId.length === 0 || keyId.length > 255) throw new RangeError('key id must be 1-255 bytes');
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(associatedData(context, key.id));
  const body = cipher.update(plaintext);
  const final = cipher.final();
  return Buffer.concat([
    Buffer.from([ENVELOPE_VERSION, keyId.length]),
    keyId,
    nonce,
    body,
    final,
    cipher.getAuthTag(),
  ]);
}

/** The key id an envelope names, without opening it; undefined when the header is malformed. */
export function envelopeKeyId(sealed: Uint8Array): string | undefined {
  if (sealed.length < 2 || sealed[0] !== ENVELOPE_VERSION) return undefined;
  const len = sealed[1]!;
  if (sealed.length < 2 + len + NONCE_BYTES + TAG_BYTES) return undefined;
  return Buffer.from(sealed.subarray(2, 2 + len)).toString('utf8');
}

/**
 * Opens an envelope with whichever ring key it names.
 * @returns the plaintext and the id of the key that opened it
 * @throws EnvelopeError (TRUNCATED, VERSION, UNKNOWN_KEY, AUTHENTICATION)
 */
export function open(
  ring: Pick<KeyRing, 'get'>,
  context: EnvelopeContext,
  sealed: Uint8Array,
): { plaintext: Buffer; keyId: string } {
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (bytes.length < 2) throw new EnvelopeError('TRUNCATED', 'envelope is truncated');
  if (bytes[0] !== ENVELOPE_VERSION) {
    throw new EnvelopeError('VERSION', `envelope version ${bytes[0]} is not supported`);
  }
  const idLen = bytes[1]!;
  const headerLen = 2 + idLen + NONCE_BYTES;
  if (idLen === 0 || bytes.length < headerLen + TAG_BYTES) {
    throw new EnvelopeError('TRUNCATED', 'envelope is truncated');
  }
  const keyId = bytes.subarray(2, 2 + idLen).toString('utf8');
  const key = ring.get(keyId);
  if (!key)
    throw new EnvelopeError('UNKNOWN_KEY', `envelope key id "${printable(keyId)}" is not in the key ring`);
  const nonce = bytes.subarray(2 + idLen, headerLen);
  const body = bytes.subarray(headerLen, bytes.length - TAG_BYTES);
  const tag = bytes.subarray(bytes.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(associatedData(context, key.id));
    decipher.setAuthTag(tag);
    const plaintext = Buffer.concat([decipher.update(body), decipher.final()]);
    return { plaintext, keyId: key.id };
  } catch {
    throw new EnvelopeError('AUTHENTICATION', `envelope failed authentication under key "${key.id}"`);
  }
}

/** A tampered key id may hold anything: keep the message printable and short. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
}
