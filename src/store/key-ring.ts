/**
 * The key ring: AES-256 keys with ids, one active for sealing, all usable for opening. Read once at
 * start-up from `store.keys` (CREDBROKER_KEYS, `id:base64,…`) and/or `store.keys_file` (a file of
 * `id:base64` lines, or a directory with one file per key — a Kubernetes secret mount — where the
 * file name is the id and the content the base64 key).
 *
 * A malformed key is a start-up error that names the problem (entry, id, file) but never prints
 * key material. No key at all → undefined: storage is disabled (the caller warns loudly).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../config/error.js';

/** AES-256: 32-byte keys. */
export const KEY_BYTES = 32;
/** Key ids travel in every envelope (one length byte) and in logs: short, printable, no separators. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

export interface RingKey {
  readonly id: string;
  /** 32 raw key bytes. Never logged. */
  readonly key: Buffer;
}

export interface KeyRing {
  /** The key new envelopes are sealed with. */
  readonly active: RingKey;
  /** Every key id, in the order given. */
  readonly ids: readonly string[];
  /** The key with this id, or undefined. */
  get(id: string): RingKey | undefined;
}

/**
 * A malformed key ring: a configuration error (the CLI exits 2 with it). The message names the
 * problem, never the key bytes.
 */
export class KeyRingError extends ConfigError {
  /** The one problem, without the "invalid configuration" preamble. */
  readonly problem: string;
  constructor(problem: string) {
    super([problem]);
    this.problem = problem;
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

function decodeKey(where: string, id: string, text: string): Buffer {
  const trimmed = text.trim();
  let key: Buffer;
  if (BASE64.test(trimmed)) key = Buffer.from(trimmed, 'base64');
  else if (BASE64URL.test(trimmed)) key = Buffer.from(trimmed, 'base64url');
  else throw new KeyRingError(`${where}: key "${id}" is not valid base64`);
  if (key.length !== KEY_BYTES) {
    throw new KeyRingError(`${where}: key "${id}" is ${key.length} bytes, expected ${KEY_BYTES} (AES-256)`);
  }
  return key;
}

function checkId(where: string, id: string): void {
  if (!KEY_ID_PATTERN.test(id)) {
    // The id is not secret, but a mangled entry may be a key pasted in the wrong place: show only
    // its length, never its text, unless it is short enough to be an id.
    const shown = id.length <= 64 ? `"${id}"` : `of ${id.length} characters`;
    throw new KeyRingError(
      `${where}: key id ${shown} is invalid: expected 1-64 characters of A-Z a-z 0-9 _ . -`,
    );
  }
}

/** Parses `id:base64` entries (separated by commas or newlines; `#` comment lines skipped). */
export function parseKeyList(where: string, text: string): RingKey[] {
  const entries = text
    .split(/[,\n]/)
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '' && !entry.startsWith('#'));
  return entries.map((entry, i) => {
    const colon = entry.indexOf(':');
    if (colon < 0) throw new KeyRingError(`${where}: entry ${i + 1} is not of the form id:base64`);
    const id = entry.slice(0, colon).trim();
    checkId(`${where} entry ${i + 1}`, id);
    return { id, key: decodeKey(where, id, entry.slice(colon + 1)) };
  });
}

/** Reads a keys file (id:base64 lines) or a directory of key files (name = id, content = base64). */
export function readKeysFile(path: string): RingKey[] {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (err) {
    throw new KeyRingError(
      `store.keys_file: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  if (!isDir) return parseKeyList(`store.keys_file ${path}`, readFileSync(path, 'utf8'));
  const keys: RingKey[] = [];
  // Kubernetes secret mounts hold `..data` and `..<timestamp>` entries: hidden names are skipped.
  for (const name of readdirSync(path).sort()) {
    if (name.startsWith('.')) continue;
    const file = join(path, name);
    if (!statSync(file).isFile()) continue;
    checkId(`store.keys_file ${path}`, name);
    keys.push({ id: name, key: decodeKey(`store.keys_file ${file}`, name, readFileSync(file, 'utf8')) });
  }
  return keys;
}

/**
 * A key ring from explicit keys.
 * @param activeId the sealing key; default the only key
 * @throws KeyRingError on duplicate ids, a missing active id, or several keys and no active id
 */
export function createKeyRing(keys: readonly RingKey[], activeId?: string): KeyRing {
  if (keys.length === 0) throw new KeyRingError('the key ring is empty');
  const byId = new Map<string, RingKey>();
  for (const k of keys) {
    checkId('key ring', k.id);
    if (k.key.length !== KEY_BYTES) {
      throw new KeyRingError(`key "${k.id}" is ${k.key.length} bytes, expected ${KEY_BYTES} (AES-256)`);
    }
    if (byId.has(k.id)) throw new KeyRingError(`duplicate key id "${k.id}"`);
    byId.set(k.id, { id: k.id, key: Buffer.from(k.key) });
  }
  let active: RingKey | undefined;
  if (activeId !== undefined) {
    active = byId.get(activeId);
    if (!active) {
      throw new KeyRingError(
        `store.active_key "${activeId}" is not in the key ring (ids: ${[...byId.keys()].join(', ')})`,
      );
    }
  } else if (byId.size === 1) {
    active = [...byId.values()][0]!;
  } else {
    throw new KeyRingError(
      `store.active_key is required when the key ring holds ${byId.size} keys (ids: ${[...byId.keys()].join(', ')})`,
    );
  }
  const ids = Object.freeze([...byId.keys()]);
  return Object.freeze({ active, ids, get: (id: string) => byId.get(id) });
}

export interface KeyRingSettings {
  readonly keys?: string | undefined;
  readonly keys_file?: string | undefined;
  readonly active_key?: string | undefined;
}

/**
 * The key ring from `store.keys`, `store.keys_file` and `store.active_key`; both sources may be
 * given and are merged (a duplicate id across them is an error).
 * @returns undefined when no key is configured at all: storage disabled
 * @throws KeyRingError naming the problem (never the key material)
 */
export function loadKeyRing(settings: KeyRingSettings): KeyRing | undefined {
  const keys: RingKey[] = [];
  if (settings.keys !== undefined && settings.keys.trim() !== '') {
    keys.push(...parseKeyList('store.keys', settings.keys));
  }
  if (settings.keys_file !== undefined) {
    const fromFile = readKeysFile(settings.keys_file);
    // An explicitly configured source that yields nothing is a mistake, not "storage off".
    if (fromFile.length === 0) throw new KeyRingError(`store.keys_file ${settings.keys_file} holds no key`);
    keys.push(...fromFile);
  }
  if (keys.length === 0) {
    if (settings.active_key !== undefined) {
      throw new KeyRingError(`store.active_key "${settings.active_key}" is set but no key is configured`);
    }
    return undefined;
  }
  return createKeyRing(keys, settings.active_key);
}
