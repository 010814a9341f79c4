/**
 * The production TokenStore over Redis (standalone, Sentinel or Cluster; ./redis-connection.ts).
 * Multi-key updates run as Lua scripts on one user's hash-tagged keys (./redis-scripts.ts).
 * Lock releases are announced on the user's unlock channel (sharded pub/sub on Cluster);
 * waiters share one subscriber connection and fall back to their timeout if it is down.
 *
 * Every Redis failure — refused, timed out, cluster down — surfaces as BrokerError
 * STORE_UNAVAILABLE within `commandTimeoutMs`; the connections keep reconnecting on their own.
 *
 * Opened records are cached in process (./record-cache.ts) while the invalidation link
 * (./invalidation.ts) is up: every change in Redis, by any replica, drops the entry. This
 * process's own writes drop theirs as soon as they return, and taking a lock or waking from a
 * wait for one drops the user's entry too: the domain re-reads after those to see a peer's
 * refresh, which must not depend on the invalidation arriving first.
 */
import { randomUUID } from 'node:crypto';
import { BrokerError, ErrorReason, ReauthCause, reauthRequired, type SubjectRef } from '../core/errors.js';
import type { Logger } from '../logger.js';
import { startInvalidation, type InvalidationLink } from './invalidation.js';
import type { KeyRing } from './key-ring.js';
import { causeKey, lockKey, loginKey, tokenKey, TOMBSTONE_TTL_MS, tombKey, unlockChannel } from './keys.js';
import { createRecordCache, type RecordCache, type RecordCacheStats } from './record-cache.js';
import { loginStateId, openLoginState, openRecord, sealLoginState, sealRecord } from './record-codec.js';
import type { RedisClient, RedisConnections } from './redis-connection.js';
import { scripts, type ScriptCommands } from './redis-scripts.js';
import type {
  DeletionCause,
  DownstreamWrite,
  ExpectedDownstream,
  LoginState,
  NewTokenRecord,
  ReadOptions,
  TokenRecord,
  TokenStore,
} from '../core/token-store.js';

/** Suggested client back-off when Redis is unreachable (google.rpc.RetryInfo). */
const STORE_RETRY_AFTER_MS = 1_000;
/**
 * Optimistic retries of an unconditional write racing others for the same user (each round one
 * writer wins): logins of one user at the same instant are rare, so this is generous.
 */
const PUT_ATTEMPTS = 16;
/** store.cache.max_age's default (src/config/schema.ts), for stores built without configuration. */
const DEFAULT_CACHE_MAX_AGE_MS = 30_000;

export interface RedisStoreOptions {
  readonly connections: RedisConnections;
  /** Undefined: storage disabled — token operations throw REAUTH_REQUIRED / STORE_DISABLED. */
  readonly keyRing: KeyRing | undefined;
  /** Every operation fails with STORE_UNAVAILABLE after this long. */
  readonly commandTimeoutMs: number;
  /** The record cache; undefined: off (every read goes to Redis). */
  readonly cache?: StoreCacheOptions | undefined;
  readonly logger?: Logger | undefined;
}

export interface StoreCacheOptions {
  /** Entries kept at most (LRU). */
  readonly maxEntries: number;
  /** An entry is served at most this long after it was read, ms (store.cache.max_age, 30 s by default). */
  readonly maxAgeMs?: number | undefined;
  /** Liveness PING interval on the invalidation link(s), ms. */
  readonly heartbeatMs: number;
}

export interface RedisTokenStore extends TokenStore {
  /** The command connection, for operator tools (rotate-keys). */
  readonly client: RedisClient;
  /** The record cache and its invalidation link; undefined when the cache is off. */
  readonly cache: StoreCache | undefined;
  peekToken(ref: SubjectRef): TokenRecord | undefined;
}

export interface StoreCache {
  /** Serving and filling: the invalidation link is up. */
  readonly active: boolean;
  stats(): RecordCacheStats;
  /** The invalidation link's connections (tests kill them to prove the cache is dropped). */
  linkConnections(): readonly RedisClient[];
}

export function storeUnavailable(cause: unknown): BrokerError {
  return new BrokerError(ErrorReason.STORE_UNAVAILABLE, 'the token store is unreachable', {
    retryAfterMs: STORE_RETRY_AFTER_MS,
    cause,
  });
}

/** Registers the Lua scripts on a client (idempotent) and returns it typed with them. */
export function withScripts(client: RedisClient): RedisClient & ScriptCommands {
  for (const [name, { numberOfKeys, lua }] of Object.entries(scripts)) {
    if (!(name in client)) client.defineCommand(name, { numberOfKeys, lua });
  }
  return client as RedisClient & ScriptCommands;
}

function isPositive(ms: number, what: string): number {
  if (!Number.isFinite(ms) || ms <= 0) throw new RangeError(`${what} must be a positive number, got ${ms}`);
  return Math.ceil(ms);
}

/**
 * Everything one store instance's operations share. The operations are module-level functions
 * taking it explicitly, so each reads as one unit and the state they touch is visible.
 */
interface StoreContext {
  readonly connections: RedisConnections;
  readonly redis: RedisClient & ScriptCommands;
  readonly cluster: boolean;
  readonly keyRing: KeyRing | undefined;
  readonly commandTimeoutMs: number;
  readonly logger: Logger | undefined;
  closed: boolean;
  /** Whether the command connection has been ready at least once. */
  connectedOnce: boolean;
  /** Resolves when the command connection is first ready. */
  readonly firstReady: Promise<void>;
  /** Lock release notifications: one subscriber connection (made on first use), a waiter set per channel. */
  subscriber: RedisClient | undefined;
  readonly waiters: Map<string, Set<() => void>>;
  readonly subscribed: Map<string, Promise<unknown>>;
  /** Opened records by token key; undefined when the cache is off. */
  readonly cache: RecordCache<TokenRecord> | undefined;
  invalidation: InvalidationLink | undefined;
}

function createContext(options: RedisStoreOptions): StoreContext {
  const { connections, keyRing, commandTimeoutMs, logger } = options;
  const client = connections.client;
  const ctx: StoreContext = {
    connections,
    redis: withScripts(client),
    cluster: connections.kind === 'redis-cluster',
    keyRing,
    commandTimeoutMs,
    logger,
    closed: false,
    connectedOnce: client.status === 'ready',
    firstReady: new Promise<void>((resolve) => {
      if (client.status === 'ready') return resolve();
      client.once('ready', () => {
        ctx.connectedOnce = true;
        resolve();
      });
    }),
    subscriber: undefined,
    waiters: new Map(),
    subscribed: new Map(),
    cache: options.cache
      ? createRecordCache<TokenRecord>({
          maxEntries: options.cache.maxEntries,
          maxAgeMs: options.cache.maxAgeMs ?? DEFAULT_CACHE_MAX_AGE_MS,
        })
      : undefined,
    invalidation: undefined,
  };
  return ctx;
}

/**
 * Runs Redis commands; any failure or a timeout becomes STORE_UNAVAILABLE. The per-command
 * deadline is the connection's own `commandTimeout` (connectRedis sets it to
 * `store.command_timeout`): one timer per command, armed by ioredis, instead of a second one here.
 */
async function run<T>(ctx: StoreContext, op: () => Promise<T>): Promise<T> {
  if (ctx.closed) throw storeUnavailable(new Error('store closed'));
  try {
    // Until the first connection is up (process start), wait for it within the same budget
    // rather than failing the first calls; once it has been up, an outage fails fast.
    if (!ctx.connectedOnce) await firstConnection(ctx);
    return await op();
  } catch (err) {
    throw storeUnavailable(err);
  }
}

/** Resolves when the command connection is first ready; rejects after `commandTimeoutMs`. */
async function firstConnection(ctx: StoreContext): Promise<void> {
  const { commandTimeoutMs } = ctx;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${commandTimeoutMs} ms`)), commandTimeoutMs);
  });
  try {
    await Promise.race([ctx.firstReady, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function ring(ctx: StoreContext, ref: SubjectRef): KeyRing {
  if (ctx.keyRing === undefined) throw reauthRequired('STORE_DISABLED', ref);
  return ctx.keyRing;
}

// --- lock release notifications -------------------------------------------------------------

function getSubscriber(ctx: StoreContext): RedisClient {
  if (!ctx.subscriber) {
    const sub = ctx.connections.createSubscriber();
    sub.on('error', (err: Error) => ctx.logger?.debug({ err }, 'redis subscriber error'));
    sub.on(ctx.cluster ? 'smessage' : 'message', (channel: string | Buffer): void => {
      for (const wake of [...(ctx.waiters.get(channel.toString()) ?? [])]) wake();
    });
    ctx.subscriber = sub;
  }
  return ctx.subscriber;
}

function subscribe(ctx: StoreContext, channel: string): Promise<unknown> {
  let p = ctx.subscribed.get(channel);
  if (!p) {
    const sub = getSubscriber(ctx);
    const attempt: Promise<unknown> = (ctx.cluster ? sub.ssubscribe(channel) : sub.subscribe(channel)).catch(
      (err: unknown) => {
        if (ctx.subscribed.get(channel) === attempt) ctx.subscribed.delete(channel);
        throw err;
      },
    );
    ctx.subscribed.set(channel, attempt);
    p = attempt;
  }
  return p;
}

function unsubscribe(ctx: StoreContext, channel: string): void {
  if (!ctx.subscribed.delete(channel) || !ctx.subscriber) return;
  const sub = ctx.subscriber;
  (ctx.cluster ? sub.sunsubscribe(channel) : sub.unsubscribe(channel)).catch(() => undefined);
}

// --- token records --------------------------------------------------------------------------

async function getToken(
  ctx: StoreContext,
  ref: SubjectRef,
  options: ReadOptions | undefined,
): Promise<TokenRecord | undefined> {
  const r = ring(ctx, ref);
  const key = tokenKey(ref);
  const cache = ctx.cache;
  if (cache?.active) {
    // A fresh read does not trust the entry: it is dropped (and the read counted as a miss),
    // and what Redis answers replaces it.
    if (options?.fresh === true) cache.invalidate(key);
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    return readThrough(ctx, cache, r, ref, key);
  }
  const [g, v] = await run(ctx, () => ctx.redis.hmgetBuffer(key, 'g', 'v'));
  if (!v) return undefined;
  return open(ctx, r, ref, v, g ? Number(g.toString()) : undefined);
}

/** TokenStore.peekToken: a record cache entry, while the cache is active (else getToken asks Redis). */
function peekToken(ctx: StoreContext, ref: SubjectRef): TokenRecord | undefined {
  const { cache } = ctx;
  if (cache === undefined || !cache.active || ctx.closed || ctx.keyRing === undefined) return undefined;
  return cache.peek(tokenKey(ref));
}

/** A cache miss: reads record and TTL in one script call and fills the cache unless overtaken. */
async function readThrough(
  ctx: StoreContext,
  cache: RecordCache<TokenRecord>,
  r: KeyRing,
  ref: SubjectRef,
  key: string,
): Promise<TokenRecord | undefined> {
  const ticket = cache.begin(key);
  let record: TokenRecord | undefined;
  let deadline = 0;
  try {
    const read = await run(ctx, () => ctx.redis.cbReadBuffer(key));
    if (read === null) return undefined;
    const [g, v, pttl] = read;
    const readAt = Date.now();
    // Every hit hands out this same object: frozen, so no caller can change another's record.
    record = open(ctx, r, ref, v, Number(g.toString()));
    Object.freeze(record.scopes);
    Object.freeze(record);
    // No TTL (-1) never happens for a record this store wrote; serve it until invalidated (and
    // store.cache.max_age at most: the cache caps every deadline).
    deadline = pttl >= 0 ? readAt + pttl : Number.POSITIVE_INFINITY;
    return record;
  } finally {
    if (record === undefined) cache.abandon(ticket);
    else cache.fill(ticket, record, deadline);
  }
}

/** Opens a sealed record; one read under an old key is re-sealed under the active one. */
function open(
  ctx: StoreContext,
  r: KeyRing,
  ref: SubjectRef,
  sealed: Buffer,
  generation: number | undefined,
): TokenRecord {
  const { record, keyId } = openRecord(r, ref, sealed, generation);
  if (keyId !== r.active.id) {
    // docs/architecture.md §3: a record read under an old key is re-sealed under the active one, in place
    // (same generation and TTL; a write in between wins). In the background and best-effort:
    // the read has succeeded and does not wait for it.
    const resealed = sealRecord(r.active, ref, record);
    void run(ctx, () => ctx.redis.cbReseal(tokenKey(ref), record.generation, resealed)).catch(
      (err: unknown) => ctx.logger?.debug({ err }, 're-sealing a record under the active key failed'),
    );
  }
  return record;
}

/**
 * Runs a write of `ref`'s record — or a lock step after which the domain re-reads it — and
 * drops this process's cache entry once it has returned (or failed: the outcome is then
 * unknown). Reads in flight meanwhile do not fill the cache.
 *
 * A downstream record's step drops the user's subject entry too: after writing a downstream
 * token the domain re-reads the subject record to catch a revoke that raced the exchange
 * (src/broker/downstream.ts), and that read must see Redis, not an entry whose invalidation is
 * still on its way.
 */
async function thenForget<T>(ctx: StoreContext, ref: SubjectRef, op: Promise<T>): Promise<T> {
  try {
    return await op;
  } finally {
    const cache = ctx.cache;
    if (cache !== undefined) {
      cache.invalidate(tokenKey(ref));
      if (ref.downstream !== undefined)
        cache.invalidate(tokenKey({ provider: ref.provider, userId: ref.userId }));
    }
  }
}

async function putToken(
  ctx: StoreContext,
  ref: SubjectRef,
  record: NewTokenRecord,
  ttlMs: number,
): Promise<number> {
  const r = ring(ctx, ref);
  const ttl = isPositive(ttlMs, 'ttlMs');
  let last = await run(ctx, () => ctx.redis.cbLastGeneration(tokenKey(ref), tombKey(ref)));
  for (let attempt = 0; attempt < PUT_ATTEMPTS; attempt++) {
    // A login starts a login epoch: the generation it is written with (PUT sets `e` alike).
    const sealed = sealRecord(r.active, ref, { ...record, generation: last + 1, loginEpoch: last + 1 });
    const [ok, generation] = await run(ctx, () =>
      ctx.redis.cbPut(
        tokenKey(ref),
        tombKey(ref),
        causeKey(ref),
        last,
        sealed,
        ttl,
        ref.provider,
        ref.userId,
      ),
    );
    if (ok === 1) return generation;
    last = generation;
  }
  throw storeUnavailable(new Error(`putToken lost ${PUT_ATTEMPTS} races for one user`));
}

async function putTokenFenced(
  ctx: StoreContext,
  ref: SubjectRef,
  lockOwner: string,
  expectedGeneration: number,
  record: NewTokenRecord,
  ttlMs: number,
): Promise<boolean> {
  const r = ring(ctx, ref);
  const ttl = isPositive(ttlMs, 'ttlMs');
  const sealed = sealRecord(r.active, ref, { ...record, generation: expectedGeneration + 1 });
  const ok = await run(ctx, () =>
    ctx.redis.cbPutFenced(tokenKey(ref), lockKey(ref), lockOwner, expectedGeneration, sealed, ttl),
  );
  return ok === 1;
}

/** The downstream write, checks and write in one script (TokenStore.putDownstreamToken). */
async function putDownstreamToken(
  ctx: StoreContext,
  ref: SubjectRef,
  lockOwner: string,
  expected: ExpectedDownstream,
  record: NewTokenRecord,
  ttlMs: number,
): Promise<DownstreamWrite> {
  const r = ring(ctx, ref);
  const ttl = isPositive(ttlMs, 'ttlMs');
  if (ref.downstream === undefined) throw new RangeError('putDownstreamToken needs a downstream ref');
  // The generation is sealed into the envelope, so it is known before the script runs: the one
  // after the expected record's, else after the last one (a script that finds it moved refuses).
  const generation =
    typeof expected === 'number'
      ? expected + 1
      : (await run(ctx, () => ctx.redis.cbLastGeneration(tokenKey(ref), tombKey(ref)))) + 1;
  const sealed = sealRecord(r.active, ref, { ...record, generation });
  const subject = tokenKey({ provider: ref.provider, userId: ref.userId });
  const outcome = await run(ctx, () =>
    ctx.redis.cbPutDownstream(
      tokenKey(ref),
      tombKey(ref),
      lockKey(ref),
      subject,
      lockOwner,
      String(expected),
      generation,
      sealed,
      ttl,
      record.loginEpoch ?? 0,
      ref.provider,
      ref.userId,
    ),
  );
  return outcome === 'ok' ? { written: true, generation } : { written: false, reason: outcome };
}

/** Delete with tombstone; `expectedGeneration` '' deletes unconditionally. */
async function deleteToken(
  ctx: StoreContext,
  ref: SubjectRef,
  expectedGeneration: number | '',
  because?: DeletionCause,
): Promise<boolean> {
  const causeTtl = because === undefined ? 0 : isPositive(because.ttlMs, 'because.ttlMs');
  const deleted = await run(ctx, () =>
    ctx.redis.cbDelete(
      tokenKey(ref),
      tombKey(ref),
      causeKey(ref),
      TOMBSTONE_TTL_MS,
      expectedGeneration,
      because?.cause ?? '',
      causeTtl,
    ),
  );
  return deleted === 1;
}

const CAUSES: ReadonlySet<string> = new Set(Object.values(ReauthCause));

/** The cause a delete left (deleteToken's `because`), if it is still there. */
async function deletedBecause(ctx: StoreContext, ref: SubjectRef): Promise<ReauthCause | undefined> {
  const cause = await run(ctx, () => ctx.redis.get(causeKey(ref)));
  return cause !== null && CAUSES.has(cause) ? (cause as ReauthCause) : undefined;
}

// --- login state ----------------------------------------------------------------------------

async function putLoginState(
  ctx: StoreContext,
  state: string,
  value: LoginState,
  ttlMs: number,
): Promise<void> {
  const ttl = isPositive(ttlMs, 'ttlMs');
  const sealed = sealLoginState(state, value);
  await run(ctx, () => ctx.redis.set(loginKey(loginStateId(state)), sealed, 'PX', ttl));
}

async function consumeLoginState(ctx: StoreContext, state: string): Promise<LoginState | undefined> {
  const sealed = await run(ctx, () => ctx.redis.getdelBuffer(loginKey(loginStateId(state))));
  return sealed ? openLoginState(state, sealed) : undefined;
}

// --- refresh locks --------------------------------------------------------------------------

async function acquireLock(ctx: StoreContext, ref: SubjectRef, leaseMs: number): Promise<string | undefined> {
  const lease = isPositive(leaseMs, 'leaseMs');
  const owner = randomUUID();
  const ok = await run(ctx, () => ctx.redis.set(lockKey(ref), owner, 'PX', lease, 'NX'));
  return ok === 'OK' ? owner : undefined;
}

async function renewLock(
  ctx: StoreContext,
  ref: SubjectRef,
  owner: string,
  leaseMs: number,
): Promise<boolean> {
  const lease = isPositive(leaseMs, 'leaseMs');
  return (await run(ctx, () => ctx.redis.cbRenew(lockKey(ref), owner, lease))) === 1;
}

async function releaseLock(ctx: StoreContext, ref: SubjectRef, owner: string): Promise<boolean> {
  const released = (await run(ctx, () => ctx.redis.cbRelease(lockKey(ref), owner))) === 1;
  if (released) {
    const channel = unlockChannel(ref);
    // Best effort: a lost notification only makes waiters fall back to their timeout.
    await run(ctx, () =>
      ctx.cluster ? ctx.redis.spublish(channel, '1') : ctx.redis.publish(channel, '1'),
    ).catch((err: unknown) => ctx.logger?.debug({ err }, 'lock release notification failed'));
  }
  return released;
}

function waitForUnlock(
  ctx: StoreContext,
  ref: SubjectRef,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  if (ctx.closed || signal?.aborted) return Promise.resolve();
  const channel = unlockChannel(ref);
  return new Promise<void>((resolve) => {
    let set = ctx.waiters.get(channel);
    if (!set) ctx.waiters.set(channel, (set = new Set()));
    const listeners = set;
    let timer = setTimeout(() => done(), Math.max(0, timeoutMs));
    const started = Date.now();
    function done(): void {
      clearTimeout(timer);
      listeners.delete(done);
      if (listeners.size === 0 && ctx.waiters.get(channel) === listeners) {
        ctx.waiters.delete(channel);
        unsubscribe(ctx, channel);
      }
      signal?.removeEventListener('abort', done);
      resolve();
    }
    listeners.add(done);
    signal?.addEventListener('abort', done, { once: true });
    // Subscribe first, then look at the lock: a release between our failed acquire and the
    // subscription is seen as "no lock" instead of a missed message.
    subscribe(ctx, channel)
      .then(() => run(ctx, () => ctx.redis.pttl(lockKey(ref))))
      .then((pttl) => {
        if (!listeners.has(done)) return;
        if (pttl === -2) return done();
        // A lease that runs out publishes nothing: wake when it would have expired.
        const remaining = timeoutMs - (Date.now() - started);
        if (pttl >= 0 && pttl < remaining) {
          clearTimeout(timer);
          timer = setTimeout(() => done(), pttl);
        }
      })
      .catch((err: unknown) => ctx.logger?.debug({ err }, 'waiting for unlock without notification'));
  });
}

// --- lifecycle ------------------------------------------------------------------------------

async function close(ctx: StoreContext): Promise<void> {
  if (ctx.closed) return;
  ctx.closed = true;
  await ctx.invalidation?.close();
  for (const set of [...ctx.waiters.values()]) for (const wake of [...set]) wake();
  const clients = [ctx.connections.client, ...(ctx.subscriber ? [ctx.subscriber] : [])];
  await Promise.all(
    clients.map(async (c) => {
      try {
        await Promise.race([c.quit(), new Promise((r) => setTimeout(r, ctx.commandTimeoutMs))]);
      } catch {
        // Not connected: nothing to say goodbye to.
      }
      c.disconnect();
    }),
  );
}

export function createRedisStore(options: RedisStoreOptions): RedisTokenStore {
  const ctx = createContext(options);
  // ioredis reports connection trouble as 'error' events; operations report it as
  // STORE_UNAVAILABLE, so the events are only worth a debug line (and must have a listener).
  ctx.connections.client.on('error', (err: Error) => ctx.logger?.debug({ err }, 'redis connection error'));
  // Connect the subscriber now, so the first waiter does not pay for the connection.
  getSubscriber(ctx);
  const cache = ctx.cache;
  if (cache !== undefined && options.cache !== undefined) {
    ctx.invalidation = startInvalidation({
      connections: ctx.connections,
      cache,
      heartbeatMs: options.cache.heartbeatMs,
      logger: ctx.logger,
    });
  }
  const invalidation = ctx.invalidation;

  return {
    kind: ctx.connections.kind,
    client: ctx.connections.client,
    cache:
      cache && invalidation
        ? {
            get active() {
              return cache.active;
            },
            stats: () => cache.stats(),
            linkConnections: () => invalidation.connections(),
          }
        : undefined,
    getToken: (ref, options) => getToken(ctx, ref, options),
    peekToken: (ref) => peekToken(ctx, ref),
    putToken: (ref, record, ttlMs) => thenForget(ctx, ref, putToken(ctx, ref, record, ttlMs)),
    putTokenFenced: (ref, lockOwner, expectedGeneration, record, ttlMs) =>
      thenForget(ctx, ref, putTokenFenced(ctx, ref, lockOwner, expectedGeneration, record, ttlMs)),
    putDownstreamToken: (ref, lockOwner, expected, record, ttlMs) =>
      thenForget(ctx, ref, putDownstreamToken(ctx, ref, lockOwner, expected, record, ttlMs)),
    deleteToken: (ref) => thenForget(ctx, ref, deleteToken(ctx, ref, '')),
    deleteTokenIfGeneration: (ref, expectedGeneration, because) =>
      thenForget(ctx, ref, deleteToken(ctx, ref, expectedGeneration, because)),
    deletedBecause: (ref) => deletedBecause(ctx, ref),
    putLoginState: (state, value, ttlMs) => putLoginState(ctx, state, value, ttlMs),
    consumeLoginState: (state) => consumeLoginState(ctx, state),
    // The domain re-reads the record after taking the lock and after waiting for it, to see a
    // peer's refresh: a cached entry must not hide it while the invalidation is on its way.
    acquireLock: (ref, leaseMs) => thenForget(ctx, ref, acquireLock(ctx, ref, leaseMs)),
    renewLock: (ref, owner, leaseMs) => renewLock(ctx, ref, owner, leaseMs),
    releaseLock: (ref, owner) => releaseLock(ctx, ref, owner),
    waitForUnlock: (ref, timeoutMs, signal) =>
      thenForget(ctx, ref, waitForUnlock(ctx, ref, timeoutMs, signal)),
    ping: async () => {
      await run(ctx, () => ctx.redis.ping());
    },
    close: () => close(ctx),
  };
}
