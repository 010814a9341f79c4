/**
 * The invalidation link that keeps the record cache (./record-cache.ts) correct across replicas:
 * Redis server-assisted client-side caching in broadcasting mode (https://redis.io/docs/latest/
 * develop/reference/client-side-caching/). ioredis speaks RESP2, so invalidations arrive as
 * pub/sub messages on `__redis__:invalidate`, on a connection that enabled tracking with
 * REDIRECT to itself before subscribing:
 *
 *   CLIENT ID                                   → id
 *   CLIENT TRACKING ON REDIRECT id BCAST PREFIX credbroker:v1:{
 *   SUBSCRIBE __redis__:invalidate
 *
 * The prefix covers the hash-tagged per-user keys (./keys.ts) and not login state
 * (`credbroker:v1:login:…`), so logins broadcast nothing. A prefix cannot exclude a suffix: a
 * user's lock and tombstone keys share the record's prefix, so every lock taken, renewed,
 * released or expired is announced too. That is a few messages per refresh (one per lock step,
 * tens of bytes each), no more frequent than the record writes that must be announced anyway;
 * the cache ignores names it does not hold.
 *
 * From then on every change of a key under the prefix — a write, refresh, revoke, tombstone,
 * expiry or eviction, by any client including this process (no NOLOOP) — sends its name; a
 * FLUSHALL/FLUSHDB sends null. Tracking lives and dies with that connection, so:
 * - one link per node that owns keys: the master (standalone, Sentinel's current master), or
 *   every master on Cluster (re-read when the topology changes);
 * - the cache is active only while every link is up, and is dropped whenever a link goes down,
 *   comes up, or the set of masters changes: an entry filled while a link was down may have
 *   missed its invalidation;
 * - each link is PINGed every `heartbeatMs`: a reply proves the link delivered every
 *   invalidation queued before it; none within the command timeout (a silent partition) counts
 *   as the link lost, so a replica cut off from Redis stops serving from its cache within
 *   `heartbeatMs` + the command timeout;
 * - the link must watch the server the commands write to. The cache is off while the command
 *   connection is not ready, and dropped whenever it closes or becomes ready again (a reconnect
 *   may have moved it, e.g. to a new master after a Sentinel failover). On standalone and
 *   Sentinel the link also notes its server's `run_id` (INFO server) when it arms, and every
 *   heartbeat compares it with the command connection's: on a mismatch — a partial partition
 *   after a failover can leave the link on an isolated old master that still answers PING while
 *   commands go to the new one — the cache is dropped and the link reconnects (through Sentinel,
 *   to the current master). On Cluster the links follow the masters of the command client's
 *   slot map (a failover changes it; the map is re-read on MOVED and every few seconds), each
 *   link to one node address.
 */
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import { KEY_PREFIX } from './keys.js';
import type { RecordCache } from './record-cache.js';
import type { NodeAddress, RedisConnections } from './redis-connection.js';

export const INVALIDATION_CHANNEL = '__redis__:invalidate';
/** What the links track: every key that starts with a user's hash tag (./keys.ts). */
export const TRACKED_PREFIX = `${KEY_PREFIX}{`;
/**
 * After failing to enable tracking (Redis < 6, an ACL without CLIENT TRACKING, a timeout), the
 * link reconnects and tries again this much later; the cache stays off meanwhile.
 */
const REARM_DELAY_MS = 5_000;
/** The one link's key on standalone and Sentinel. */
const MASTER = 'master';

export interface InvalidationOptions {
  readonly connections: RedisConnections;
  readonly cache: Pick<RecordCache<unknown>, 'invalidate' | 'clear' | 'setActive'>;
  /** Interval of the liveness PING on each link, ms. */
  readonly heartbeatMs: number;
  readonly logger?: Logger | undefined;
}

export interface InvalidationLink {
  /**
   * Whether the cache may serve: every link up (tracking on and subscribed) and the command
   * connection ready — on standalone and Sentinel, on the link's server.
   */
  readonly up: boolean;
  /** The tracking connections, for tests (CLIENT KILL) and diagnostics. */
  connections(): readonly Redis[];
  close(): Promise<void>;
}

interface Link {
  readonly key: string;
  readonly redis: Redis;
  up: boolean;
  /** Increments on every (re)connection: a late arming of an old connection is ignored. */
  round: number;
  /** Failed armings in a row: only the first is logged as a warning. */
  failures: number;
  /** `run_id` of the server the link armed on (standalone and Sentinel). */
  runId: string | undefined;
}

interface LinkContext {
  readonly options: InvalidationOptions;
  readonly links: Map<string, Link>;
  closed: boolean;
  heartbeat: NodeJS.Timeout | undefined;
  readonly cluster: boolean;
  /**
   * The command connection is ready and — standalone, Sentinel — on the server the link armed
   * on (same `run_id`) as of the last check. The cache serves only meanwhile.
   */
  commandOk: boolean;
  /** Increments whenever the command connection closes or becomes ready: older checks are void. */
  commandRound: number;
  /** Removes the listeners this link put on the command client (at close). */
  readonly detach: (() => void)[];
}

/** Opens the link(s) and keeps them up until `close()`; the cache is inactive until they are. */
export function startInvalidation(options: InvalidationOptions): InvalidationLink {
  const client = options.connections.client;
  const isCluster = options.connections.kind === 'redis-cluster';
  const ctx: LinkContext = {
    options,
    links: new Map(),
    closed: false,
    heartbeat: undefined,
    cluster: isCluster,
    // On Cluster, ready is enough; elsewhere the first check (after the link arms) decides.
    commandOk: isCluster && client.status === 'ready',
    commandRound: 0,
    detach: [],
  };
  const on = (event: string, listener: () => void): void => {
    client.on(event, listener);
    ctx.detach.push(() => client.off(event, listener));
  };
  // A command connection that closes or reconnects may come back on another server: the cache
  // is off from its 'close' and dropped again when it is back (setActive clears on each change).
  on('close', () => {
    ctx.commandRound++;
    if (!ctx.commandOk) return;
    ctx.commandOk = false;
    options.logger?.info({ why: 'command connection closed' }, 'Redis record cache dropped');
    update(ctx);
  });
  on('ready', () => {
    ctx.commandRound++;
    ctx.commandOk = false;
    update(ctx);
    if (ctx.cluster) {
      ctx.commandOk = true;
      syncMasters(ctx, client as Cluster);
      update(ctx);
    } else {
      void verify(ctx);
    }
  });
  if (isCluster) {
    const cluster = client as Cluster;
    const sync = (): void => syncMasters(ctx, cluster);
    on('+node', sync);
    on('-node', sync);
    on('refresh', sync);
    sync();
  } else {
    addLink(ctx, MASTER, undefined);
  }
  ctx.heartbeat = setInterval(() => heartbeat(ctx), options.heartbeatMs);
  ctx.heartbeat.unref();
  return {
    get up() {
      return allUp(ctx);
    },
    connections: () => [...ctx.links.values()].map((l) => l.redis),
    close: () => close(ctx),
  };
}

function allUp(ctx: LinkContext): boolean {
  if (ctx.closed || ctx.links.size === 0 || !ctx.commandOk) return false;
  for (const link of ctx.links.values()) if (!link.up) return false;
  return true;
}

/** Every change of link state clears the cache (RecordCache.setActive) and re-decides activity. */
function update(ctx: LinkContext): void {
  ctx.options.cache.setActive(allUp(ctx));
}

/** The `run_id` line of INFO server. */
function runIdOf(info: string): string | undefined {
  return /^run_id:([0-9a-f]+)/m.exec(info)?.[1];
}

/**
 * Standalone / Sentinel: whether the command connection is on the link's server (same
 * `run_id`). On a match the cache may serve; on no answer it is off until the next check; on a
 * mismatch it is off and the link reconnects — after `heartbeatMs`, so two connections that
 * disagree during a failover do not make it spin.
 */
async function verify(ctx: LinkContext): Promise<void> {
  const link = ctx.links.get(MASTER);
  if (ctx.closed || ctx.cluster || link === undefined || !link.up || link.runId === undefined) return;
  const { round } = link;
  const { commandRound } = ctx;
  const stale = (): boolean => ctx.closed || round !== link.round || commandRound !== ctx.commandRound;
  let runId: string | undefined;
  try {
    runId = runIdOf(await (ctx.options.connections.client as Redis).info('server'));
  } catch (err) {
    if (stale() || !ctx.commandOk) return;
    ctx.commandOk = false;
    ctx.options.logger?.info({ err, why: 'command connection check failed' }, 'Redis record cache dropped');
    update(ctx);
    return;
  }
  if (stale()) return;
  if (runId === link.runId) {
    if (ctx.commandOk) return;
    ctx.commandOk = true;
    update(ctx);
    return;
  }
  ctx.commandOk = false;
  ctx.options.logger?.warn(
    { node: link.key },
    'Redis invalidation link is on another server than the command connection (failover?): record cache dropped, link reconnecting',
  );
  down(ctx, link, 'on another server than the command connection');
  const downRound = link.round;
  setTimeout(() => {
    if (downRound === link.round && !ctx.closed) link.redis.disconnect(true);
  }, ctx.options.heartbeatMs).unref();
}

function syncMasters(ctx: LinkContext, cluster: Cluster): void {
  if (ctx.closed) return;
  const masters = new Map<string, NodeAddress>();
  for (const node of cluster.nodes('master')) {
    const { host, port } = node.options;
    if (host !== undefined && port !== undefined) masters.set(`${host}:${port}`, { host, port });
  }
  if (masters.size === 0) return;
  let changed = false;
  for (const [key, link] of ctx.links) {
    if (masters.has(key)) continue;
    ctx.links.delete(key);
    link.redis.disconnect();
    changed = true;
  }
  for (const [key, address] of masters) {
    if (ctx.links.has(key)) continue;
    addLink(ctx, key, address);
    changed = true;
  }
  // A topology change may move slots to a master whose link is not up yet: drop everything.
  if (changed) {
    ctx.options.cache.clear();
    update(ctx);
  }
}

function addLink(ctx: LinkContext, key: string, address: NodeAddress | undefined): void {
  const { connections, cache, logger } = ctx.options;
  const redis = connections.createTrackingConnection(address);
  const link: Link = { key, redis, up: false, round: 0, failures: 0, runId: undefined };
  ctx.links.set(key, link);
  redis.on('error', (err: Error) => logger?.debug({ err, node: key }, 'redis invalidation link error'));
  redis.on('ready', () => void arm(ctx, link));
  redis.on('close', () => down(ctx, link, 'closed'));
  redis.on('messageBuffer', (channel: Buffer, message: unknown) => {
    if (channel.toString() !== INVALIDATION_CHANNEL) return;
    if (message === null || message === undefined) {
      // FLUSHALL / FLUSHDB: every key is gone.
      cache.clear();
      return;
    }
    if (Array.isArray(message)) for (const name of message) cache.invalidate(String(name));
    else cache.invalidate(String(message));
  });
}

/** Enables tracking redirected to the connection itself, then subscribes; the link is then up. */
async function arm(ctx: LinkContext, link: Link): Promise<void> {
  const round = ++link.round;
  link.runId = undefined;
  try {
    const id = await link.redis.client('ID');
    // Before SUBSCRIBE: a subscribed RESP2 connection answers nothing but (un)subscribe and PING.
    if (!ctx.cluster) {
      link.runId = runIdOf(await link.redis.info('server'));
      if (link.runId === undefined) throw new Error('INFO server has no run_id');
    }
    await link.redis.call(
      'CLIENT',
      'TRACKING',
      'ON',
      'REDIRECT',
      String(id),
      'BCAST',
      'PREFIX',
      TRACKED_PREFIX,
    );
    await link.redis.subscribe(INVALIDATION_CHANNEL);
    if (round !== link.round || ctx.closed || ctx.links.get(link.key) !== link) return;
    link.up = true;
    link.failures = 0;
    update(ctx);
    // Standalone / Sentinel: serves once the command connection is found on the same server.
    void verify(ctx);
  } catch (err) {
    if (round !== link.round || ctx.closed) return;
    const logger = ctx.options.logger;
    const message = 'cannot enable Redis invalidations: the record cache is off until it can';
    if (++link.failures === 1) logger?.warn({ err, node: link.key }, message);
    else logger?.debug({ err, node: link.key }, message);
    // Reconnect and try again later; the cache stays off meanwhile.
    setTimeout(() => {
      if (round === link.round && !ctx.closed) link.redis.disconnect(true);
    }, REARM_DELAY_MS).unref();
  }
}

function down(ctx: LinkContext, link: Link, why: string): void {
  link.round++;
  if (!link.up) return;
  link.up = false;
  // The link comes back on whichever server it reaches: the command connection is checked again.
  if (!ctx.cluster) ctx.commandOk = false;
  ctx.options.logger?.info({ node: link.key, why }, 'Redis invalidation link down: record cache dropped');
  update(ctx);
}

function heartbeat(ctx: LinkContext): void {
  for (const link of ctx.links.values()) {
    if (!link.up) continue;
    const round = link.round;
    link.redis.ping().catch(() => {
      if (round !== link.round || ctx.closed) return;
      down(ctx, link, 'no answer to PING');
      link.redis.disconnect(true);
    });
  }
  void verify(ctx);
}

async function close(ctx: LinkContext): Promise<void> {
  if (ctx.closed) return;
  ctx.closed = true;
  clearInterval(ctx.heartbeat);
  for (const detach of ctx.detach) detach();
  ctx.options.cache.setActive(false);
  for (const link of ctx.links.values()) {
    link.round++;
    link.redis.disconnect();
  }
  ctx.links.clear();
}
