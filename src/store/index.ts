/**
 * The store factory the composition root calls: Redis when `store.redis_url`,
 * `store.redis_cluster` or `store.redis_sentinel` is configured, else the embedded memory store.
 */
import type { StoreConfig } from '../config/load.js';
import type { Logger } from '../logger.js';
import type { KeyRing } from './key-ring.js';
import { createMemoryStore } from './memory-store.js';
import { connectRedis } from './redis-connection.js';
import type { RecordCacheStats } from './record-cache.js';
import { createRedisStore } from './redis-store.js';
import type { TokenStore } from '../core/token-store.js';

export { KeyRingError, loadKeyRing, type KeyRing } from './key-ring.js';
export { createMemoryBackend, createMemoryStore } from './memory-store.js';

/**
 * @param keyRing undefined when no key is configured: token storage disabled (login state still
 *   works); the caller has already warned
 * @param metrics where a record cache registers its counters (src/server/metrics.ts)
 * @throws ConfigError when a configured Redis password file cannot be read
 */
export function createStore(
  config: StoreConfig,
  keyRing: KeyRing | undefined,
  logger: Logger,
  metrics?: StoreMetrics,
): TokenStore {
  const connections = connectRedis(config);
  if (connections === undefined) {
    logger.info(
      { store: 'memory' },
      'no Redis configured: using the embedded memory store (one process only)',
    );
    return createMemoryStore({ keyRing });
  }
  logger.info({ store: connections.kind }, 'using Redis for tokens, locks and login state');
  const { cache } = config;
  const store = createRedisStore({
    connections,
    keyRing,
    commandTimeoutMs: config.command_timeout,
    ...(cache.enabled
      ? { cache: { maxEntries: cache.max_entries, heartbeatMs: cache.heartbeat, maxAgeMs: cache.max_age } }
      : {}),
    logger,
  });
  const recordCache = store.cache;
  if (recordCache) metrics?.storeCache?.(() => ({ ...recordCache.stats(), active: recordCache.active }));
  return store;
}

/** The hook a record cache reports through (BrokerMetrics.storeCache). */
export interface StoreMetrics {
  storeCache?(read: () => RecordCacheStats & { readonly active: boolean }): void;
}
