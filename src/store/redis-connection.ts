/**
 * Redis connections from `store` configuration: standalone URL, Sentinel or Cluster. Every
 * connection fails fast instead of queueing while Redis is away (no offline queue, one retry per
 * request, a command timeout) and reconnects on its own forever with a capped back-off, so the
 * broker recovers without a restart when Redis returns.
 */
import { readFileSync } from 'node:fs';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { ConfigError } from '../config/error.js';
import type { StoreConfig } from '../config/load.js';

/** Period of the Cluster command client's slot-map refresh (CLUSTER SLOTS), ms. */
const CLUSTER_SLOTS_REFRESH_MS = 5_000;

/** Reconnect back-off: 50 ms growing to at most 1 s, never giving up. */
export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 5), 1_000);
}

export type RedisClient = Redis | Cluster;

export interface RedisConnections {
  readonly kind: 'redis' | 'redis-sentinel' | 'redis-cluster';
  /** Commands and scripts. */
  readonly client: RedisClient;
  /**
   * A new connection for pub/sub (subscriber mode blocks ordinary commands). It queues its
   * (un)subscribe commands until connected: waiters are bounded by their own timeouts.
   */
  createSubscriber(): RedisClient;
  /**
   * A plain connection that carries cache invalidations (./invalidation.ts): to `node` on
   * Cluster (one per master), else to the (current) master. No offline queue and no automatic
   * resubscription: the cache arms tracking and subscribes itself on every `ready`.
   */
  createTrackingConnection(node?: NodeAddress): Redis;
}

export interface NodeAddress {
  readonly host: string;
  readonly port: number;
}

/** Tracking connections: their commands run only once connected ('ready'), in subscriber mode after. */
const TRACKING: RedisOptions = {
  enableOfflineQueue: false,
  autoResubscribe: false,
  lazyConnect: false,
  // Named in CLIENT LIST, for operators (and the tests that kill it).
  connectionName: 'credbroker-invalidation',
};

/** A password file's content, trimmed. @throws ConfigError naming `field` when it cannot be read */
export function readPassword(field: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new ConfigError([
      `${field}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    ]);
  }
}

function hostPort(text: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  return { host: text.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(text.slice(at + 1)) };
}

/**
 * The user and password written in Cluster seed URLs (`redis://user:pass@host:6379`), for every
 * node: ioredis would use them for the seeds only, while the nodes it learns from CLUSTER SLOTS
 * connect with `redisOptions`. `store.redis_password_file` takes precedence.
 */
export function clusterUrlCredentials(urls: readonly string[]): Pick<RedisOptions, 'username' | 'password'> {
  for (const text of urls) {
    const url = new URL(text);
    if (url.username === '' && url.password === '') continue;
    return {
      ...(url.username !== '' ? { username: decodeURIComponent(url.username) } : {}),
      ...(url.password !== '' ? { password: decodeURIComponent(url.password) } : {}),
    };
  }
  return {};
}

/**
 * Opens the configured Redis; undefined when none is configured (the memory store is used).
 * Connections start in the background: commands fail with a connection error until ready.
 */
export function connectRedis(config: StoreConfig): RedisConnections | undefined {
  const password = readPassword('store.redis_password_file', config.redis_password_file);
  const common: RedisOptions = {
    commandTimeout: config.command_timeout,
    connectTimeout: Math.max(config.command_timeout, 1_000),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: reconnectDelay,
    ...(password !== undefined ? { password } : {}),
  };
  if (config.redis_url !== undefined) {
    const url = config.redis_url;
    return {
      kind: 'redis',
      // Auto-pipelining: commands issued in the same tick leave in one write (ioredis).
      client: new Redis(url, { ...common, enableAutoPipelining: true }),
      createSubscriber: () => new Redis(url, { ...common, enableOfflineQueue: true }),
      createTrackingConnection: () => new Redis(url, { ...common, ...TRACKING }),
    };
  }
  if (config.redis_sentinel !== undefined) {
    const s = config.redis_sentinel;
    const sentinelPassword = readPassword('store.redis_sentinel.password_file', s.password_file);
    const make = (extra: RedisOptions): Redis =>
      new Redis({
        ...common,
        ...extra,
        sentinels: s.sentinels.map(hostPort),
        name: s.name,
        sentinelRetryStrategy: reconnectDelay,
        // Subscribes to Sentinel's +switch-master and reconnects on a failover, instead of
        // staying on an old master that is still reachable (ioredis ≥ 5.4).
        failoverDetector: true,
        ...(sentinelPassword !== undefined ? { sentinelPassword } : {}),
      });
    return {
      kind: 'redis-sentinel',
      client: make({ enableAutoPipelining: true }),
      createSubscriber: () => make({ enableOfflineQueue: true }),
      createTrackingConnection: () => make(TRACKING),
    };
  }
  if (config.redis_cluster !== undefined) {
    const seeds = config.redis_cluster.map((u) => {
      const url = new URL(u);
      return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port || 6379) };
    });
    const tls = config.redis_cluster.some((u) => u.startsWith('rediss:'));
    const { enableOfflineQueue: _q, retryStrategy: _r, ...nodeOptions } = common;
    const options: ClusterOptions = {
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      clusterRetryStrategy: reconnectDelay,
      maxRedirections: 4,
      retryDelayOnClusterDown: 100,
      retryDelayOnFailover: 100,
      redisOptions: {
        ...clusterUrlCredentials(config.redis_cluster),
        ...nodeOptions,
        ...(tls ? { tls: {} } : {}),
      },
    };
    return {
      kind: 'redis-cluster',
      // Re-reads the slot map periodically, not only on a MOVED reply: a replica that serves
      // from its record cache sends few commands, and its invalidation links follow the masters
      // of this map (./invalidation.ts), so a failover must not wait for its next cache miss.
      client: new Cluster(seeds, { ...options, slotsRefreshInterval: CLUSTER_SLOTS_REFRESH_MS }),
      // Sharded pub/sub (Redis 7 SSUBSCRIBE): one subscriber per master, messages stay in the
      // shard of the user's slot instead of being broadcast over the cluster bus.
      createSubscriber: () =>
        new Cluster(seeds, {
          ...options,
          enableAutoPipelining: false,
          enableOfflineQueue: true,
          shardedSubscribers: true,
        }),
      createTrackingConnection: (node) => {
        if (node === undefined) throw new TypeError('a Cluster tracking connection needs a node');
        return new Redis({
          ...options.redisOptions,
          ...TRACKING,
          host: node.host,
          port: node.port,
          retryStrategy: reconnectDelay,
        });
      },
    };
  }
  return undefined;
}
