/**
 * The Lua scripts of the Redis store. Each touches only keys of one user (one hash tag, so one
 * Cluster slot), is registered once with ioredis `defineCommand` and then called by SHA
 * (EVALSHA, falling back to EVAL after a script-cache flush). Every write sets a TTL.
 *
 * A record is a hash {g: generation, v: envelope, p: provider, u: user id, e: login epoch};
 * fencing compares `g` (and the downstream write `e`) without decrypting anything. The
 * tombstone is a string holding the last generation. `e` is a subject record's login epoch (the
 * generation its login was written with; PUT sets it, PUT_FENCED leaves it) or a downstream
 * record's (the subject's epoch it was exchanged under); absent on records older than epochs.
 */

/** KEYS: token, tomb. Returns max(record g, tombstone) — the last generation ever written. */
export const LAST_GENERATION = `
local g = tonumber(redis.call('HGET', KEYS[1], 'g') or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
if t > g then return t end
return g
`;

/**
 * Unconditional write (login). KEYS: token, tomb, cause. ARGV: expected last generation,
 * envelope, ttl ms, provider, user id. Writes generation last + 1 — also the login epoch `e` —
 * and clears the tombstone and the deletion cause, unless another write came first: then returns
 * {0, last} and the caller re-seals with the new generation.
 */
export const PUT = `
local g = tonumber(redis.call('HGET', KEYS[1], 'g') or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
local last = g
if t > last then last = t end
if last ~= tonumber(ARGV[1]) then return {0, last} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'g', last + 1, 'v', ARGV[2], 'p', ARGV[4], 'u', ARGV[5], 'e', last + 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2], KEYS[3])
return {1, last + 1}
`;

/**
 * The write of a downstream token (GetDownstreamToken), atomic with every check it needs.
 * KEYS: dtoken, dtomb, dlock, the subject's token (one hash tag: one Cluster slot). ARGV: lock
 * owner, expected record ('absent', 'present' or its generation), generation to write (last + 1,
 * computed by the caller, which sealed it into the envelope), envelope, ttl ms, the subject's
 * login epoch the token was exchanged under, provider, user id. Returns 'ok', or why nothing was
 * written: 'lock' (not the owner's), 'generation' (not the record expected, or the last
 * generation moved), 'subject' (no subject record, or one of another login epoch).
 */
export const PUT_DOWNSTREAM = `
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 'lock' end
local g = redis.call('HGET', KEYS[1], 'g')
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if g and tonumber(g) > last then last = tonumber(g) end
if ARGV[2] == 'absent' then
  if g then return 'generation' end
elseif ARGV[2] == 'present' then
  if not g then return 'generation' end
elseif not g or tonumber(g) ~= tonumber(ARGV[2]) then
  return 'generation'
end
if last + 1 ~= tonumber(ARGV[3]) then return 'generation' end
if not redis.call('HGET', KEYS[4], 'g') then return 'subject' end
if tonumber(redis.call('HGET', KEYS[4], 'e') or '0') ~= tonumber(ARGV[6]) then return 'subject' end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'g', ARGV[3], 'v', ARGV[4], 'p', ARGV[7], 'u', ARGV[8], 'e', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('DEL', KEYS[2])
return 'ok'
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
 * Delete with tombstone. KEYS: token, tomb, cause. ARGV: tombstone ttl ms, expected generation or
 * '' for unconditional, the deletion's cause or '', the cause's ttl ms. Returns 1 when a record
 * was deleted; the cause is then set for its ttl, or cleared when none is given (a revoke). Deleting
 * nothing writes nothing: no fenced write can succeed without a record, so only a real delete
 * needs a tombstone (and revoking unknown users cannot fill Redis with tombstones).
 */
export const DELETE = `
local g = redis.call('HGET', KEYS[1], 'g')
if ARGV[2] ~= '' and (not g or tonumber(g) ~= tonumber(ARGV[2])) then return 0 end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if not g then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(g) > last then last = tonumber(g) end
redis.call('SET', KEYS[2], last, 'PX', ARGV[1])
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
else
  redis.call('DEL', KEYS[3])
end
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
  cbPut: { numberOfKeys: 3, lua: PUT },
  cbPutFenced: { numberOfKeys: 2, lua: PUT_FENCED },
  cbPutDownstream: { numberOfKeys: 4, lua: PUT_DOWNSTREAM },
  cbDelete: { numberOfKeys: 3, lua: DELETE },
  cbRelease: { numberOfKeys: 1, lua: RELEASE },
  cbRenew: { numberOfKeys: 1, lua: RENEW },
  cbReseal: { numberOfKeys: 1, lua: RESEAL },
  cbRead: { numberOfKeys: 1, lua: READ },
} as const;

type Arg = string | number | Buffer;
/** The script commands as ioredis adds them to a client. */
export interface ScriptCommands {
  cbLastGeneration(token: string, tomb: string): Promise<number>;
  cbPut(token: string, tomb: string, cause: string, ...args: Arg[]): Promise<[number, number]>;
  cbPutFenced(token: string, lock: string, ...args: Arg[]): Promise<number>;
  cbPutDownstream(
    token: string,
    tomb: string,
    lock: string,
    subjectToken: string,
    ...args: Arg[]
  ): Promise<'ok' | 'lock' | 'generation' | 'subject'>;
  cbDelete(token: string, tomb: string, cause: string, ...args: Arg[]): Promise<number>;
  cbRelease(lock: string, owner: string): Promise<number>;
  cbRenew(lock: string, owner: string, leaseMs: number): Promise<number>;
  cbReseal(token: string, expectedGeneration: number, sealed: Buffer): Promise<number>;
  /** READ with bulk strings as Buffers. */
  cbReadBuffer(token: string): Promise<[Buffer, Buffer, number] | null>;
}
