/**
 * The Lua scripts of the Redis store. Each touches only keys of one user (one hash tag, so one
 * Cluster slot), is registered once with ioredis `defineCommand` and then called by SHA
 * (EVALSHA, falling back to EVAL after a script-cache flush). Every write sets a TTL.
 *
 * A record is a hash {g: generation, v: envelope, p: provider, u: user id}; fencing compares
 * `g` without decrypting anything. The tombstone is a string holding the last generation.
 */

/** KEYS: token, tomb. Returns max(record g, tombstone) — the last generation ever written. */
export const LAST_GENERATION = `
local g = tonumber(redis.call('HGET', KEYS[1], 'g') or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
if t > g then return t end
return g
`;

/**
 * Unconditional write (login). KEYS: token, tomb. ARGV: expected last generation, envelope,
 * ttl ms, provider, user id. Writes generation last + 1 and clears the tombstone, unless another
 * write came first: then returns {0, last} and the caller re-seals with the new generation.
 */
export const PUT = `
local g = tonumber(redis.call('HGET', KEYS[1], 'g') or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
local last = g
if t > last then last = t end
if last ~= tonumber(ARGV[1]) then return {0, last} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'g', last + 1, 'v', ARGV[2], 'p', ARGV[4], 'u', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2])
return {1, last + 1}
`;

/**
 * Fenced write (refresh). KEYS: token, lock. ARGV: lock owner, expected generation, envelope,
 * ttl ms. Succeeds only while the owner holds the lock and the record is still at the expected
 * generation (a delete leaves no record, so a tombstoned user can never be resurrected).
 */
export const PUT_FENCED = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local g = redis.call('HGET', KEYS[1], 'g')
if not g or tonumber(g) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'g', tonumber(ARGV[2]) + 1, 'v', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`;

/**
 * Delete with tombstone. KEYS: token, tomb. ARGV: tombstone ttl ms, expected generation or ''
 * for unconditional. Returns 1 when a record was deleted. Deleting nothing writes nothing: no
 * fenced write can succeed without a record, so only a real delete needs a tombstone (and
 * revoking unknown users cannot fill Redis with tombstones).
 */
export const DELETE = `
local g = redis.call('HGET', KEYS[1], 'g')
if ARGV[2] ~= '' and (not g or tonumber(g) ~= tonumber(ARGV[2])) then return 0 end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if not g then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(g) > last then last = tonumber(g) end
redis.call('SET', KEYS[2], last, 'PX', ARGV[1])
return 1
`;

/**
 * Read for the record cache. KEYS: token. Returns {g, v, pttl}, or nil when there is no record:
 * the TTL bounds how long the cache may serve the entry, in one round trip and one timer.
 */
export const READ = `
local r = redis.call('HMGET', KEYS[1], 'g', 'v')
if not r[1] or not r[2] then return false end
return {r[1], r[2], redis.call('PTTL', KEYS[1])}
`;

/** Compare-and-delete. KEYS: lock. ARGV: owner. */
export const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** Renew by owner. KEYS: lock. ARGV: owner, lease ms. */
export const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

/**
 * Re-seal in place (rotate-keys). KEYS: token. ARGV: expected generation, envelope. Keeps the
 * generation and the TTL, so a concurrent refresh's fenced write is neither blocked nor lost;
 * a record that changed meanwhile is left alone (the new write used the active key anyway).
 */
export const RESEAL = `
local g = redis.call('HGET', KEYS[1], 'g')
if not g or tonumber(g) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2])
return 1
`;

export const scripts = {
  cbLastGeneration: { numberOfKeys: 2, lua: LAST_GENERATION },
  cbPut: { numberOfKeys: 2, lua: PUT },
  cbPutFenced: { numberOfKeys: 2, lua: PUT_FENCED },
  cbDelete: { numberOfKeys: 2, lua: DELETE },
  cbRelease: { numberOfKeys: 1, lua: RELEASE },
  cbRenew: { numberOfKeys: 1, lua: RENEW },
  cbReseal: { numberOfKeys: 1, lua: RESEAL },
  cbRead: { numberOfKeys: 1, lua: READ },
} as const;

type Arg = string | number | Buffer;
/** The script commands as ioredis adds them to a client. */
export interface ScriptCommands {
  cbLastGeneration(token: string, tomb: string): Promise<number>;
  cbPut(token: string, tomb: string, ...args: Arg[]): Promise<[number, number]>;
  cbPutFenced(token: string, lock: string, ...args: Arg[]): Promise<number>;
  cbDelete(token: string, tomb: string, ...args: Arg[]): Promise<number>;
  cbRelease(lock: string, owner: string): Promise<number>;
  cbRenew(lock: string, owner: string, leaseMs: number): Promise<number>;
  cbReseal(token: string, expectedGeneration: number, sealed: Buffer): Promise<number>;
  /** READ with bulk strings as Buffers. */
  cbReadBuffer(token: string): Promise<[Buffer, Buffer, number] | null>;
}
