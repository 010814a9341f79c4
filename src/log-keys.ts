/**
 * The keys user ids are hashed with in log and audit lines (src/logger.ts userIdHash): the one
 * this process writes with, and every one `credbroker hash-user-id` prints a handle under.
 *
 * - `log_user_hash_key` when set: one key, independent of the store's keys — it survives their
 *   rotation, and whoever searches logs needs it, not the keys that open every stored token.
 *   Changing it changes every handle (`hash-user-id` knows only the current one).
 * - Otherwise one derived from each store key, the active key first (the process writes with
 *   that one): keyed by default, but a store-key rotation changes every handle, and once an old
 *   key is removed its handles can no longer be computed.
 * - Neither: unkeyed, a plain SHA-256, which does not hide a guessable id (warned at start-up).
 *
 * Every key is derived with HKDF-SHA-256 under its own label: never the store key itself, and
 * nothing about a store key can be learnt from it.
 */
import { hkdfSync } from 'node:crypto';
import type { Config } from './config/load.js';
import type { KeyRing } from './store/key-ring.js';

export interface UserHashKey {
  /** Where it comes from: `log_user_hash_key`, `store key <id>`, or `unkeyed`. */
  readonly name: string;
  /** undefined: unkeyed. */
  readonly key: Buffer | undefined;
}

const LABEL = 'credbroker:v1 log user-id hash key';

/** The HMAC key derived from secret material (a store key's bytes, or log_user_hash_key). */
export function deriveUserHashKey(material: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', material, Buffer.alloc(0), LABEL, 32));
}

/** The keys, the one this process writes with first. */
export function userHashKeys(
  config: Pick<Config, 'log_user_hash_key'>,
  ring: KeyRing | undefined,
): UserHashKey[] {
  if (config.log_user_hash_key !== undefined) {
    return [
      { name: 'log_user_hash_key', key: deriveUserHashKey(Buffer.from(config.log_user_hash_key, 'utf8')) },
    ];
  }
  if (ring !== undefined) {
    const ids = [ring.active.id, ...ring.ids.filter((id) => id !== ring.active.id)];
    return ids.map((id) => ({
      name: `store key ${id}${id === ring.active.id ? ' (active)' : ''}`,
      key: deriveUserHashKey(ring.get(id)!.key),
    }));
  }
  return [{ name: 'unkeyed', key: undefined }];
}

/** The start-up warning when user ids are hashed without a key. */
export const UNKEYED_USER_HASH_WARNING =
  'user ids in log lines are plain SHA-256 hashes, which do not hide a guessable id (an e-mail address): set log_user_hash_key (or store keys)';
