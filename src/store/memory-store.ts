/**
 * The embedded store for one process (development, the demo, unit tests of the domain). Same
 * semantics as the Redis store — TTL on every entry, generations and tombstones, fenced writes,
 * owner-token locks with leases, single-use login state — and records are sealed with the same
 * envelope, so UNDECRYPTABLE behaves identically. Expiry is evaluated against `clock` and waiting
 * for a lock uses the clock's timers and an in-process event, so tests can run it on virtual time.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { systemClock, type Clock } from '../core/clock.js';
import {
  BrokerError,
  ErrorReason,
  reauthRequired,
  type ReauthCause,
  type SubjectRef,
} from '../core/errors.js';
import type { KeyRing } from './key-ring.js';
import { causeKey, lockKey, loginKey, tokenKey, TOMBSTONE_TTL_MS, tombKey } from './keys.js';
import { loginStateId, openLoginState, openRecord, sealLoginState, sealRecord } from './record-codec.js';
import type {
  DeletionCause,
  DownstreamWrite,
  LoginState,
  NewTokenRecord,
  TokenRecord,
  TokenStore,
} from '../core/token-store.js';

/** Expired entries are swept at most this often (reads also ignore them lazily). */
const SWEEP_INTERVAL_MS = 60_000;

export interface Entry<T> {
  value: T;
  expiresAt: number;
}

/**
 * The data behind memory stores. Several stores over one backend behave like several broker
 * replicas over one Redis (shared records, locks and release notifications), which is how
 * tests of the domain simulate R processes inside one.
 */
export interface MemoryBackend {
  /** `loginEpoch`: beside the envelope as Redis keeps it (hash field `e`), checked without opening. */
  readonly tokens: Map<string, Entry<{ generation: number; sealed: Buffer; loginEpoch?: number }>>;
  readonly tombs: Map<string, Entry<number>>;
  /** Why a record was deleted (deleteTokenIfGeneration's `because`), keyed like the record. */
  readonly causes: Map<string, Entry<ReauthCause>>;
  readonly locks: Map<string, Entry<string>>;
  readonly logins: Map<string, Entry<Buffer>>;
  readonly released: EventEmitter;
  lastSweep: number;
}

export function createMemoryBackend(): MemoryBackend {
  const released = new EventEmitter();
  released.setMaxListeners(0);
  return {
    tokens: new Map(),
    tombs: new Map(),
    causes: new Map(),
    locks: new Map(),
    logins: new Map(),
    released,
    lastSweep: 0,
  };
}

export interface MemoryStoreOptions {
  /** Undefined: storage disabled — token operations throw REAUTH_REQUIRED / STORE_DISABLED. */
  readonly keyRing: KeyRing | undefined;
  /** Default the system clock. TTLs and leases are judged by it; lock waits use its timers. */
  readonly clock?: Clock;
  /** Share data with other memory stores; default a private backend. */
  readonly backend?: MemoryBackend;
}

/** The embedded store. Throws (asynchronously) what TokenStore documents; never STORE_UNAVAILABLE until closed. */
export function createMemoryStore(options: MemoryStoreOptions): TokenStore {
  const { keyRing } = options;
  const clock = options.clock ?? systemClock;
  const now = (): number => clock.now();
  const backend = options.backend ?? createMemoryBackend();
  const { tokens, tombs, causes, locks, logins, released } = backend;
  const waiters = new Set<() => void>();
  let closed = false;

  const live = <T>(map: Map<string, Entry<T>>, key: string): T | undefined => {
    const entry = map.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= now()) {
      map.delete(key);
      return undefined;
    }
    return entry.value;
  };
  const sweep = (): void => {
    const t = now();
    if (t - backend.lastSweep < SWEEP_INTERVAL_MS) return;
    backend.lastSweep = t;
    for (const map of [tokens, tombs, causes, locks, logins] as Map<string, Entry<unknown>>[]) {
      for (const [key, entry] of map) if (entry.expiresAt <= t) map.delete(key);
    }
  };
  const check = (): void => {
    if (closed) throw new BrokerError(ErrorReason.STORE_UNAVAILABLE, 'the token store is closed');
  };
  const ring = (ref: SubjectRef): KeyRing => {
    check();
    if (keyRing === undefined) throw reauthRequired('STORE_DISABLED', ref);
    return keyRing;
  };
  const validTtl = (ttlMs: number): number => {
    if (!Number.isFinite(ttlMs) || ttlMs <= 0)
      throw new RangeError(`ttlMs must be a positive number, got ${ttlMs}`);
    return Math.ceil(ttlMs);
  };
  /** `loginEpoch`: the unsealed copy kept beside the envelope (the sealed one is the record's). */
  const write = (
    ref: SubjectRef,
    record: NewTokenRecord,
    generation: number,
    ttlMs: number,
    loginEpoch: number | undefined,
  ): void => {
    const sealed = sealRecord(ring(ref).active, ref, { ...record, generation });
    tokens.set(tokenKey(ref), {
      value: { generation, sealed, ...(loginEpoch === undefined ? {} : { loginEpoch }) },
      expiresAt: now() + ttlMs,
    });
    tombs.delete(tombKey(ref));
    sweep();
  };
  /** As the Redis store's DELETE: tombstone, and the cause set (or forgotten). */
  const remove = (ref: SubjectRef, generation: number, because?: DeletionCause): void => {
    tokens.delete(tokenKey(ref));
    tombs.set(tombKey(ref), { value: generation, expiresAt: now() + TOMBSTONE_TTL_MS });
    if (because === undefined) causes.delete(causeKey(ref));
    else causes.set(causeKey(ref), { value: because.cause, expiresAt: now() + validTtl(because.ttlMs) });
  };

  const readToken = (ref: SubjectRef): TokenRecord | undefined => {
    const r = ring(ref);
    const key = tokenKey(ref);
    const stored = live(tokens, key);
    if (stored === undefined) return undefined;
    const { record, keyId } = openRecord(r, ref, stored.sealed, stored.generation);
    const entry = tokens.get(key);
    if (keyId !== r.active.id && entry !== undefined) {
      // As the Redis store: re-sealed in place under the active key, generation and TTL kept.
      entry.value = { ...stored, sealed: sealRecord(r.active, ref, record) };
    }
    return record;
  };

  return {
    kind: 'memory',

    async getToken(ref: SubjectRef): Promise<TokenRecord | undefined> {
      return readToken(ref);
    },

    // The memory store is the backend itself: what it holds is current. A failure is left for
    // getToken to report.
    peekToken(ref: SubjectRef): TokenRecord | undefined {
      try {
        return readToken(ref);
      } catch {
        return undefined;
      }
    },

    async putToken(ref: SubjectRef, record: NewTokenRecord, ttlMs: number): Promise<number> {
      ring(ref);
      const ttl = validTtl(ttlMs);
      const last = Math.max(live(tokens, tokenKey(ref))?.generation ?? 0, live(tombs, tombKey(ref)) ?? 0);
      // A login starts a login epoch: the generation it is written with.
      write(ref, { ...record, loginEpoch: last + 1 }, last + 1, ttl, last + 1);
      // As the Redis store's PUT (and only it): a login forgets why the last record was deleted.
      causes.delete(causeKey(ref));
      return last + 1;
    },

    async putTokenFenced(ref, lockOwner, expectedGeneration, record, ttlMs): Promise<boolean> {
      ring(ref);
      const ttl = validTtl(ttlMs);
      if (live(locks, lockKey(ref)) !== lockOwner) return false;
      const stored = live(tokens, tokenKey(ref));
      if (stored?.generation !== expectedGeneration) return false;
      // The unsealed epoch is carried unchanged, as Redis's PUT_FENCED leaves field `e` alone.
      write(ref, record, expectedGeneration + 1, ttl, stored.loginEpoch);
      return true;
    },

    async putDownstreamToken(ref, lockOwner, expected, record, ttlMs): Promise<DownstreamWrite> {
      ring(ref);
      const ttl = validTtl(ttlMs);
      if (ref.downstream === undefined) throw new RangeError('putDownstreamToken needs a downstream ref');
      // One synchronous step, as the Redis script is one atomic step.
      if (live(locks, lockKey(ref)) !== lockOwner) return { written: false, reason: 'lock' };
      const stored = live(tokens, tokenKey(ref));
      if (
        expected === 'absent'
          ? stored !== undefined
          : expected === 'present'
            ? stored === undefined
            : stored?.generation !== expected
      ) {
        return { written: false, reason: 'generation' };
      }
      const subject = live(tokens, tokenKey({ provider: ref.provider, userId: ref.userId }));
      if (subject === undefined || (subject.loginEpoch ?? 0) !== (record.loginEpoch ?? 0)) {
        return { written: false, reason: 'subject' };
      }
      const generation = Math.max(stored?.generation ?? 0, live(tombs, tombKey(ref)) ?? 0) + 1;
      write(ref, record, generation, ttl, record.loginEpoch);
      return { written: true, generation };
    },

    async deleteToken(ref: SubjectRef): Promise<boolean> {
      check();
      const stored = live(tokens, tokenKey(ref));
      // Deleting nothing writes nothing: without a record no fenced write can succeed anyway.
      if (stored === undefined) return false;
      remove(ref, Math.max(stored.generation, live(tombs, tombKey(ref)) ?? 0));
      return true;
    },

    async deleteTokenIfGeneration(
      ref: SubjectRef,
      expectedGeneration: number,
      because?: DeletionCause,
    ): Promise<boolean> {
      check();
      if (because !== undefined) validTtl(because.ttlMs);
      if (live(tokens, tokenKey(ref))?.generation !== expectedGeneration) return false;
      remove(ref, expectedGeneration, because);
      return true;
    },

    async deletedBecause(ref: SubjectRef): Promise<ReauthCause | undefined> {
      check();
      return live(causes, causeKey(ref));
    },

    async putLoginState(state: string, value: LoginState, ttlMs: number): Promise<void> {
      check();
      logins.set(loginKey(loginStateId(state)), {
        value: sealLoginState(state, value),
        expiresAt: now() + validTtl(ttlMs),
      });
      sweep();
    },

    async consumeLoginState(state: string): Promise<LoginState | undefined> {
      check();
      const key = loginKey(loginStateId(state));
      const sealed = live(logins, key);
      if (sealed === undefined) return undefined;
      logins.delete(key);
      return openLoginState(state, sealed);
    },

    async acquireLock(ref: SubjectRef, leaseMs: number): Promise<string | undefined> {
      check();
      const key = lockKey(ref);
      if (live(locks, key) !== undefined) return undefined;
      const owner = randomUUID();
      locks.set(key, { value: owner, expiresAt: now() + validTtl(leaseMs) });
      return owner;
    },

    async renewLock(ref: SubjectRef, owner: string, leaseMs: number): Promise<boolean> {
      check();
      const key = lockKey(ref);
      if (live(locks, key) !== owner) return false;
      locks.set(key, { value: owner, expiresAt: now() + validTtl(leaseMs) });
      return true;
    },

    async releaseLock(ref: SubjectRef, owner: string): Promise<boolean> {
      check();
      const key = lockKey(ref);
      if (live(locks, key) !== owner) return false;
      locks.delete(key);
      released.emit(key);
      return true;
    },

    waitForUnlock(ref: SubjectRef, timeoutMs: number, signal?: AbortSignal): Promise<void> {
      // Never rejects (and never throws synchronously): a closed store has nothing to wait for.
      const key = lockKey(ref);
      const held = locks.get(key);
      if (closed || held === undefined || held.expiresAt <= now() || signal?.aborted)
        return Promise.resolve();
      // A lease that runs out wakes nobody: wait no longer than the lease itself.
      const wait = Math.max(0, Math.min(timeoutMs, held.expiresAt - now()));
      return new Promise<void>((resolve) => {
        const done = (): void => {
          timer.cancel();
          waiters.delete(done);
          released.off(key, done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = clock.setTimer(wait, done);
        released.on(key, done);
        waiters.add(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    },

    async ping(): Promise<void> {
      check();
    },

    async close(): Promise<void> {
      closed = true;
      for (const done of [...waiters]) done();
    },
  };
}
