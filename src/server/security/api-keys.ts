/**
 * API keys: presented as `authorization: Bearer <key>` metadata (RFC 6750 §2.1), configured only
 * as hex SHA-256 hashes. A presented key is hashed and compared with `crypto.timingSafeEqual`
 * against every configured hash — no early exit — so neither the match nor its position in the
 * list shows in the response time. The key itself is never logged, stored or echoed.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';

/** RFC 6750 §2.1 b64token, bounded: a key longer than this is not one of ours. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]{1,512}=*) *$/i;

export type Presented =
  | { readonly kind: 'none' }
  | { readonly kind: 'malformed' }
  | { readonly kind: 'bearer'; readonly key: string };

/** Reads the `authorization` metadata: absent, malformed (wrong scheme, several values), or a key. */
export function presentedApiKey(metadata: Metadata): Presented {
  const values = metadata.get('authorization');
  if (values.length === 0) return { kind: 'none' };
  const value = values[0];
  if (values.length > 1 || typeof value !== 'string') return { kind: 'malformed' };
  const match = BEARER.exec(value);
  return match ? { kind: 'bearer', key: match[1]! } : { kind: 'malformed' };
}

/** The hex SHA-256 of an API key, as written in `callers[].api_key_sha256`. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export interface KeyedEntry<T> {
  readonly sha256: Buffer;
  readonly value: T;
}

/** Pre-decodes the configured hashes once (32 bytes each). */
export function keyTable<T>(entries: readonly { sha256: string; value: T }[]): KeyedEntry<T>[] {
  return entries.map((e) => ({ sha256: Buffer.from(e.sha256, 'hex'), value: e.value }));
}

/**
 * Finds the entry whose hash matches `key`. Every entry is compared, in constant time each, and
 * the loop never exits early.
 */
export function matchApiKey<T>(table: readonly KeyedEntry<T>[], key: string): T | undefined {
  const digest = createHash('sha256').update(key, 'utf8').digest();
  let found: T | undefined;
  for (const entry of table) {
    const equal = timingSafeEqual(digest, entry.sha256);
    if (equal && found === undefined) found = entry.value;
  }
  return found;
}
