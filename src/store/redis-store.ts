/**
 * The production TokenStore over Redis (standalone, Sentinel or Cluster; ./redis-connection.ts).
 * Multi-key updates run as Lua scripts on one user's hash-tagged keys (./redis-scripts.ts).
 * Lock releases are announced on the user's unlock channel (sharded pub/sub on Cluster);
 * waiters share one subscriber connection and fall back to their timeout if it is down.
 *
 * Every Redis failure — refused, timed out, cluster down — surfaces as BrokerError
 * STORE_UNAVAILABLE within `commandTimeoutMs`; the connections keep reconnecting on their own.
 */
import { randomUUID } from 'node:crypto';
import { BrokerError, ErrorReason, reauthRequired, type SubjectRef } from '../core/errors.js';
import type { Logger } from '../logger.js';
import type { KeyRing } from './key-ring.js';
import { lockKey, loginKey, tokenKey, TOMBSTONE_TTL_MS, tombKey, unlockChannel } from './keys.js';
import { loginStateId, openLoginState, openRecord, sealLoginState, sealRecord } from './record-codec.js';
import type { RedisClient, RedisConnections } from './redis-connection.js';
import { scripts, type ScriptCommands } from './redis-scripts.js';
import type { LoginState, NewTokenRecord, TokenRecord, TokenStore } from '../core/token-store.js';

/** Suggested client back-off when Redis is unreachable (google.rpc.RetryInfo). */
const STORE_RETRY_AFTER_MS = 1_000;
/**
 * Optimistic retries of an unconditional write racing others for the same user (each round one
 * writer wins): logins of one user at the same instant are rare, so this is generous.
 */
const PUT_ATTEMPTS = 16;

export interface RedisStoreOptions {
  readonly connections: RedisConnections;
  /** Undefined: storage disabled — token operations throw REAUTH_REQUIRED / STORE_DISABLED. */
  readonly keyRing: KeyRing | undefined;
  /** Every operation fails with STORE_UNAVAILABLE after this long. */
  readonly commandTimeoutMs: number;
  readonly logger?: Logger | undefined;
}

export interface RedisTokenStore extends TokenStore {
  /** The command connection, for operator tools (rotate-keys). */
  readonly client: RedisClient;
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

export function createRedisStore(options: RedisStoreOptions): RedisTokenStore {
  const { connections, keyRing, commandTimeoutMs, logger } = options;
  const redis = withScripts(connections.client);
  const cluster = connections.kind === 'redis-cluster';
  let closed = false;
  // ioredis reports connection trouble as 'error' events; operations report it as
  // STORE_UNAVAILABLE, so the events are only worth a debug line (and must have a listener).
  connections.client.on('error', (err: Error) => logger?.debug({ err }, 'redis connection error'));

  let connectedOnce = connections.client.status === 'ready';
  const firstReady = new Promise<void>((resolve) => {
    if (connectedOnce) return resolve();
    connections.client.once('ready', () => {
      connectedOnce = true;
      resolve();
    });
  });
  /** Runs Redis commands; any failure or a timeout becomes STORE_UNAVAILABLE. */
  const run = async <T>(op: () => Promise<T>): Promise<T> => {
    if (closed) throw storeUnavailable(new Error('store closed'));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${commandTimeoutMs} ms`)),
        commandTimeoutMs,
      );
    });
    try {
      // Until the first connection is up (process start), wait for it within the same budget
      // rather than failing the first calls; once it has been up, an outage fails fast.
      if (!connectedOnce) await Promise.race([firstReady, timeout]);
      return await Promise.race([op(), timeout]);
    } catch (err) {
      throw storeUnavailable(err);
    } finally {
      clearTimeout(timer);
    }
  };
  const ring = (ref: SubjectRef): KeyRing => {
    if (keyRing === undefined) throw reauthRequired('STORE_DISABLED', ref);
    return keyRing;
  };

  // --- lock release notifications: one subscriber, a waiter set per channel ---
  let subscriber: RedisClient | undefined;
  const waiters = new Map<string, Set<() => void>>();
  const subscribed = new Map<string, Promise<unknown>>();
  const onMessage = (channel: string | Buffer): void => {
    for (const wake of [...(waiters.get(channel.toString()) ?? [])]) wake();
  };
  const getSubscriber = (): RedisClient => {
    if (!subscriber) {
      subscriber = connections.createSubscriber();
      subscriber.on('error', (err: Error) => logger?.debug({ err }, 'redis subscriber error'));
      subscriber.on(cluster ? 'smessage' : 'message', onMessage);
    }
    return subscriber;
  };
  const subscribe = (channel: string): Promise<unknown> => {
    let p = subscribed.get(channel);
    if (!p) {
      const sub = getSubscriber();
      const attempt: Promise<unknown> = (cluster ? sub.ssubscribe(channel) : sub.subscribe(channel)).catch(
        (err: unknown) => {
          if (subscribed.get(channel) === attempt) subscribed.delete(channel);
          throw err;
        },
      );
      subscribed.set(channel, attempt);
      p = attempt;
    }
    return p;
  };
  const unsubscribe = (channel: string): void => {
    if (!subscribed.delete(channel) || !subscriber) return;
    const sub = subscriber;
    (cluster ? sub.sunsubscribe(channel) : sub.unsubscribe(channel)).catch(() => undefined);
  };

  // Connect the subscriber now, so the first waiter does not pay for the connection.
  getSubscriber();

  const store: RedisTokenStore = {
    kind: connections.kind,
    client: connections.client,

    async getToken(ref: SubjectRef): Promise<TokenRecord | undefined> {
      const r = ring(ref);
      const [g, v] = await run(() => redis.hmgetBuffer(tokenKey(ref), 'g', 'v'));
      if (!v) return undefined;
      const { record, keyId } = openRecord(r, ref, v, g ? Number(g.toString()) : undefined);
      if (keyId !== r.active.id) {
        // DESIGN §3: a record read under an old key is re-sealed under the active one, in place
        // (same generation and TTL; a write in between wins). In the background and best-effort:
        // the read has succeeded and does not wait for it.
        const sealed = sealRecord(r.active, ref, record);
        void run(() => redis.cbReseal(tokenKey(ref), record.generation, sealed)).catch((err: unknown) =>
          logger?.debug({ err }, 're-sealing a record under the active key failed'),
        );
      }
      return record;
    },

    async putToken(ref: SubjectRef, record: NewTokenRecord, ttlMs: number): Promise<number> {
      const r = ring(ref);
      const ttl = isPositive(ttlMs, 'ttlMs');
      let last = await run(() => redis.cbLastGeneration(tokenKey(ref), tombKey(ref)));
      for (let attempt = 0; attempt < PUT_ATTEMPTS; attempt++) {
        const sealed = sealRecord(r.active, ref, { ...record, generation: last + 1 });
        const [ok, generation] = await run(() =>
          redis.cbPut(tokenKey(ref), tombKey(ref), last, sealed, ttl, ref.provider, ref.userId),
        );
        if (ok === 1) return generation;
        last = generation;
      }
      throw storeUnavailable(new Error(`putToken lost ${PUT_ATTEMPTS} races for one user`));
    },

    async putTokenFenced(ref, lockOwner, expectedGeneration, record, ttlMs): Promise<boolean> {
      const r = ring(ref);
      const ttl = isPositive(ttlMs, 'ttlMs');
      const sealed = sealRecord(r.active, ref, { ...record, generation: expectedGeneration + 1 });
      const ok = await run(() =>
        redis.cbPutFenced(tokenKey(ref), lockKey(ref), lockOwner, expectedGeneration, sealed, ttl),
      );
      return ok === 1;
    },

    async deleteToken(ref: SubjectRef): Promise<boolean> {
      return (await run(() => redis.cbDelete(tokenKey(ref), tombKey(ref), TOMBSTONE_TTL_MS, ''))) === 1;
    },

    async deleteTokenIfGeneration(ref: SubjectRef, expectedGeneration: number): Promise<boolean> {
      const deleted = await run(() =>
        redis.cbDelete(tokenKey(ref), tombKey(ref), TOMBSTONE_TTL_MS, expectedGeneration),
      );
      return deleted === 1;
    },

    async putLoginState(state: string, value: LoginState, ttlMs: number): Promise<void> {
      const ttl = isPositive(ttlMs, 'ttlMs');
      const sealed = sealLoginState(state, value);
      await run(() => redis.set(loginKey(loginStateId(state)), sealed, 'PX', ttl));
    },

    async consumeLoginState(state: string): Promise<LoginState | undefined> {
      const sealed = await run(() => redis.getdelBuffer(loginKey(loginStateId(state))));
      return sealed ? openLoginState(state, sealed) : undefined;
    },

    async acquireLock(ref: SubjectRef, leaseMs: number): Promise<string | undefined> {
      const lease = isPositive(leaseMs, 'leaseMs');
      const owner = randomUUID();
      const ok = await run(() => redis.set(lockKey(ref), owner, 'PX', lease, 'NX'));
      return ok === 'OK' ? owner : undefined;
    },

    async renewLock(ref: SubjectRef, owner: string, leaseMs: number): Promise<boolean> {
      const lease = isPositive(leaseMs, 'leaseMs');
      return (await run(() => redis.cbRenew(lockKey(ref), owner, lease))) === 1;
    },

    async releaseLock(ref: SubjectRef, owner: string): Promise<boolean> {
      const released = (await run(() => redis.cbRelease(lockKey(ref), owner))) === 1;
      if (released) {
        const channel = unlockChannel(ref);
        // Best effort: a lost notification only makes waiters fall back to their timeout.
        await run(() => (cluster ? redis.spublish(channel, '1') : redis.publish(channel, '1'))).catch(
          (err: unknown) => logger?.debug({ err }, 'lock release notification failed'),
        );
      }
      return released;
    },

    waitForUnlock(ref: SubjectRef, timeoutMs: number, signal?: AbortSignal): Promise<void> {
      if (closed || signal?.aborted) return Promise.resolve();
      const channel = unlockChannel(ref);
      return new Promise<void>((resolve) => {
        let set = waiters.get(channel);
        if (!set) waiters.set(channel, (set = new Set()));
        const listeners = set;
        let timer = setTimeout(() => done(), Math.max(0, timeoutMs));
        const started = Date.now();
        function done(): void {
          clearTimeout(timer);
          listeners.delete(done);
          if (listeners.size === 0 && waiters.get(channel) === listeners) {
            waiters.delete(channel);
            unsubscribe(channel);
          }
          signal?.removeEventListener('abort', done);
          resolve();
        }
        listeners.add(done);
        signal?.addEventListener('abort', done, { once: true });
        // Subscribe first, then look at the lock: a release between our failed acquire and the
        // subscription is seen as "no lock" instead of a missed message.
        subscribe(channel)
          .then(() => run(() => redis.pttl(lockKey(ref))))
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
          .catch((err: unknown) => logger?.debug({ err }, 'waiting for unlock without notification'));
      });
    },

    async ping(): Promise<void> {
      await run(() => redis.ping());
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      for (const set of [...waiters.values()]) for (const wake of [...set]) wake();
      const clients = [connections.client, ...(subscriber ? [subscriber] : [])];
      await Promise.all(
        clients.map(async (c) => {
          try {
            await Promise.race([c.quit(), new Promise((r) => setTimeout(r, commandTimeoutMs))]);
          } catch {
            // Not connected: nothing to say goodbye to.
          }
          c.disconnect();
        }),
      );
    },
  };
  return store;
}
