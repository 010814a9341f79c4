/**
 * A process-local, bounded LRU of opened (decrypted) token records, kept correct by invalidation
 * (./invalidation.ts): every change of a key in Redis, by any replica, arrives here as
 * `invalidate(key)`, and a lost or re-established invalidation link as `clear()`.
 *
 * The race it closes: a read that started before an invalidation may return the value from
 * before the change, after the invalidation was applied. Each read that may fill the cache takes
 * a ticket first (`begin`); `invalidate(key)` marks the key's open tickets stale and `clear()`
 * marks all of them, so `fill` inserts only what no invalidation can have overtaken. Tickets
 * exist only for reads in flight: memory stays bounded by the entry limit plus concurrency.
 *
 * Entries also carry a deadline: the key's TTL in Redis when read, capped at `maxAgeMs` after the
 * fill. A record Redis expired is not served even if the expiry's invalidation is late (Redis
 * expires keys lazily or by sampling), and an entry whose invalidation was lost in a way no
 * check below noticed is served for `maxAgeMs` at most, not for the record's whole lifetime.
 * The cache only returns records: whether one is still valid for the caller's margin is the
 * domain's decision, against its clock, as for a record read from Redis.
 *
 * Holds plaintext records in process memory only — the process holds the keys that open them
 * anyway — and never login state or locks.
 */

/** Counters and the entry count, for metrics (read at scrape time, so counting costs nothing). */
export interface RecordCacheStats {
  readonly hits: number;
  readonly misses: number;
  /** Entries dropped because their key changed in Redis. */
  readonly invalidations: number;
  /** Whole-cache drops: invalidation link lost, re-established, topology change, FLUSHALL. */
  readonly flushes: number;
  readonly entries: number;
  /** Keys with reads in flight that may fill the cache (bookkeeping, bounded by concurrency). */
  readonly readingKeys: number;
}

/** A read in flight that may fill the cache with what it read. */
export interface ReadTicket {
  readonly key: string;
  /** Set when an invalidation of `key` (or a flush) arrived while the read was in flight. */
  stale: boolean;
}

export interface RecordCache<V> {
  /** The entry, or undefined (absent or past its deadline). A hit becomes most recently used. */
  get(key: string): V | undefined;
  /**
   * get() for a caller that reads on with get() after a miss (TokenStore.peekToken): a hit counts
   * as get's does, a miss is not counted (the get that follows counts it) and changes nothing.
   */
  peek(key: string): V | undefined;
  /** Call before reading `key` from Redis; hand the ticket to `fill` or `abandon` afterwards. */
  begin(key: string): ReadTicket;
  /**
   * Inserts what the ticket's read returned, unless an invalidation overtook it or the cache is
   * inactive. @param deadline epoch ms after which the entry is not served (its Redis TTL); the
   *   cache serves it until `maxAgeMs` from now at most
   */
  fill(ticket: ReadTicket, value: V, deadline: number): void;
  /** Ends a read that fills nothing (absent record, error). */
  abandon(ticket: ReadTicket): void;
  /** `key` changed in Redis: drop its entry and mark its reads in flight stale. */
  invalidate(key: string): void;
  /** Drops every entry and marks every read in flight stale. */
  clear(): void;
  /**
   * Inactive (no invalidation link): nothing is served or filled. Every change of state clears
   * the cache: an entry filled before a link went down could miss the invalidation.
   */
  setActive(active: boolean): void;
  readonly active: boolean;
  stats(): RecordCacheStats;
}

interface Entry<V> {
  readonly value: V;
  readonly deadline: number;
  /** The use counter when the entry was last put at the most recent end. */
  used: number;
}

export interface RecordCacheOptions {
  /** Entries kept at most; the least recently used one is evicted beyond. */
  readonly maxEntries: number;
  /** An entry is served this long after its fill at most, ms (store.cache.max_age). */
  readonly maxAgeMs: number;
  /** Epoch ms; the system clock by default. */
  readonly now?: () => number;
}

export function createRecordCache<V>(options: RecordCacheOptions): RecordCache<V> {
  const { maxEntries, maxAgeMs, now = Date.now } = options;
  if (!Number.isInteger(maxEntries) || maxEntries < 1) {
    throw new RangeError(`maxEntries must be a positive integer, got ${maxEntries}`);
  }
  if (!(maxAgeMs > 0)) throw new RangeError(`maxAgeMs must be positive, got ${maxAgeMs}`);
  // A Map iterates in insertion order: re-inserting on a hit keeps the oldest use first. A hit
  // re-inserts only an entry that has at least `moveAfter` entries inserted after it, not the
  // recently used ones (a Map delete + set on every hit was ≈ 1.5 µs of the hot path, and its
  // deleted slots make the Map rehash): still, a hit entry is evicted only after at least
  // maxEntries - 1 - moveAfter later insertions, and tiny caches stay exact LRU.
  const entries = new Map<string, Entry<V>>();
  const moveAfter = Math.floor(maxEntries / 4);
  let used = 0;
  const reading = new Map<string, Set<ReadTicket>>();
  let active = false;
  let hits = 0;
  let misses = 0;
  let invalidations = 0;
  let flushes = 0;

  const end = (ticket: ReadTicket): void => {
    const set = reading.get(ticket.key);
    if (set?.delete(ticket) && set.size === 0) reading.delete(ticket.key);
  };

  const clear = (): void => {
    flushes++;
    entries.clear();
    for (const set of reading.values()) for (const ticket of set) ticket.stale = true;
    reading.clear();
  };

  /** Serves a live entry: a hit, and most recently used unless it is among the recent ones. */
  const hit = (key: string, entry: Entry<V>): V => {
    if (used - entry.used > moveAfter) {
      entries.delete(key);
      entries.set(key, entry);
      entry.used = ++used;
    }
    hits++;
    return entry.value;
  };

  return {
    get(key) {
      const entry = entries.get(key);
      if (entry === undefined) {
        misses++;
        return undefined;
      }
      if (now() >= entry.deadline) {
        entries.delete(key);
        misses++;
        return undefined;
      }
      return hit(key, entry);
    },
    peek(key) {
      const entry = entries.get(key);
      return entry === undefined || now() >= entry.deadline ? undefined : hit(key, entry);
    },
    begin(key) {
      const ticket: ReadTicket = { key, stale: !active };
      if (active) {
        let set = reading.get(key);
        if (set === undefined) reading.set(key, (set = new Set()));
        set.add(ticket);
      }
      return ticket;
    },
    fill(ticket, value, deadline) {
      end(ticket);
      const at = now();
      if (ticket.stale || !active || at >= deadline) return;
      entries.delete(ticket.key);
      entries.set(ticket.key, { value, deadline: Math.min(deadline, at + maxAgeMs), used: ++used });
      if (entries.size > maxEntries) {
        const oldest = entries.keys().next();
        if (!oldest.done) entries.delete(oldest.value);
      }
    },
    abandon: end,
    invalidate(key) {
      if (entries.delete(key)) invalidations++;
      const set = reading.get(key);
      if (set === undefined) return;
      for (const ticket of set) ticket.stale = true;
      reading.delete(key);
    },
    clear,
    setActive(next) {
      if (next === active) return;
      active = next;
      clear();
    },
    get active() {
      return active;
    },
    stats: () => ({ hits, misses, invalidations, flushes, entries: entries.size, readingKeys: reading.size }),
  };
}
