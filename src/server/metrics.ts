/**
 * Prometheus metrics (docs/architecture.md §6), on their own Registry (never prom-client's global one, so two
 * brokers in one test process do not collide) and served as text on a separate plain HTTP port
 * (`metrics_listen`). Call-level series come from the call wrapper's CallObserver; domain series
 * come from the BrokerMetrics hooks the broker calls. Every label value comes from a closed set
 * (RPC names, gRPC codes, error reasons and causes, configured provider ids): no user id, token or
 * request field ever becomes a label. docs/operations.md lists every series.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { status } from '@grpc/grpc-js';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BrokerMetrics, StoreCacheCounts } from '../broker/metrics.js';
import type { Logger } from '../logger.js';
import type { CallObserver } from './call.js';

/** Metric names, exported for docs and tests. */
export const METRIC_NAMES = {
  calls: 'credbroker_calls_total',
  callDuration: 'credbroker_call_duration_seconds',
  refreshes: 'credbroker_refreshes_total',
  reauth: 'credbroker_reauth_required_total',
  lockWait: 'credbroker_lock_wait_seconds',
  coalescedWaiters: 'credbroker_coalesced_waiters_total',
  storeErrors: 'credbroker_store_errors_total',
  storeUp: 'credbroker_store_up',
  storeCacheHits: 'credbroker_store_cache_hits_total',
  storeCacheMisses: 'credbroker_store_cache_misses_total',
  storeCacheInvalidations: 'credbroker_store_cache_invalidations_total',
  storeCacheFlushes: 'credbroker_store_cache_flushes_total',
  storeCacheEntries: 'credbroker_store_cache_entries',
  storeCacheActive: 'credbroker_store_cache_active',
  tokenRemaining: 'credbroker_token_remaining_lifetime_seconds',
  exchanges: 'credbroker_token_exchanges_total',
  downstreamServed: 'credbroker_downstream_tokens_served_total',
  buildInfo: 'credbroker_build_info',
} as const;

/** Unary calls are mostly a Redis round trip (~1 ms); refreshes take an IdP round trip (≤ 10 s). */
const CALL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Lock waits last one IdP refresh at most (the lease is renewed while it runs). */
const LOCK_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds of lifetime left on served tokens: the low buckets show how close to the skew we serve. */
const REMAINING_BUCKETS = [0, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400];

export interface MetricsHttpServer {
  /** The bound port (useful with `:0`). */
  readonly port: number;
  close(): Promise<void>;
}

export interface Metrics {
  /** Subscribe to the call wrapper (BrokerServer `observers`). */
  readonly observer: CallObserver;
  /** Hand to the broker. */
  readonly brokerMetrics: BrokerMetrics;
  /** Readiness reports each probe result here (credbroker_store_up). */
  setStoreUp(up: boolean): void;
  readonly registry: Registry;
  /**
   * Serves `GET /metrics` on `listen` (host:port; port 0 picks a free one).
   * @throws when the address cannot be bound
   */
  startHttp(listen: string, logger?: Logger): Promise<MetricsHttpServer>;
}

function packageVersion(): string {
  try {
    // ../../package.json from both src/server/ (tsx) and dist/server/ (compiled).
    const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
    return String((JSON.parse(text) as { version?: unknown }).version ?? 'unknown');
  } catch {
    return 'unknown';
  }
}

/** prom-client's internal record of one histogram series (lib/histogram.js, v15). */
interface HistogramSeriesRecord {
  labels: Record<string, string | number>;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

/**
 * One series of a histogram observed on the hot path: observations are counted in plain numbers
 * and added to prom-client's series when it is collected (scrape time). prom-client's own
 * `observe` builds a labels object, validates the labels and builds their hash string on every
 * call, even through a label child (≈ 1–2 µs and garbage per observation, docs/PERFORMANCE.md).
 * The exposition is unchanged: same buckets (`le` is an inclusive upper bound, as prom-client),
 * sum and count. Should prom-client's internal record of a series not have the shape this adds
 * to (another major version), observations go through prom-client as before.
 */
class HotHistogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  private readonly direct: boolean;

  constructor(
    private readonly histogram: Histogram<string>,
    private readonly labels: Record<string, string>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
    this.direct = this.record() === undefined;
  }

  observe(value: number): void {
    if (this.direct) {
      this.histogram.observe(this.labels, value);
      return;
    }
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    const { bounds } = this;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  /** Adds what was observed since the last collection to prom-client's series. */
  flush(): void {
    if (this.count === 0) return;
    const record = this.record();
    if (record === undefined) return; // not reached: checked at construction
    const { bounds, counts } = this;
    for (let i = 0; i < bounds.length; i++) {
      record.bucketValues[bounds[i]!]! += counts[i]!;
      counts[i] = 0;
    }
    counts[bounds.length] = 0; // above every bound: only in +Inf, which is the count
    record.sum += this.sum;
    record.count += this.count;
    this.sum = 0;
    this.count = 0;
  }

  /** prom-client's record of this series (made, zeroed, if it has none yet: a reset). */
  private record(): HistogramSeriesRecord | undefined {
    const find = () => {
      const map = (this.histogram as unknown as { hashMap?: Record<string, HistogramSeriesRecord> }).hashMap;
      if (map === undefined || typeof map !== 'object') return undefined;
      const names = Object.keys(this.labels);
      return Object.values(map).find(
        (r) =>
          Object.keys(r.labels).length === names.length &&
          names.every((n) => String(r.labels[n]) === this.labels[n]),
      );
    };
    let record = find();
    if (record === undefined) {
      this.histogram.zero(this.labels);
      record = find();
    }
    const valid =
      record !== undefined &&
      typeof record.sum === 'number' &&
      typeof record.count === 'number' &&
      typeof record.bucketValues === 'object' &&
      this.bounds.every((b) => typeof record.bucketValues[b] === 'number');
    return valid ? record : undefined;
  }
}

/** Creates the registry, every series, and the hooks that feed them. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  // The hot path's series are counted in plain numbers and added at scrape time (collect).
  const hotHistograms: HotHistogram[] = [];
  const flushHistograms = () => {
    for (const h of hotHistograms) h.flush();
  };
  const calls = new Counter({
    name: METRIC_NAMES.calls,
    help: 'Completed RPCs by method, gRPC status code and ErrorInfo reason ("" when OK).',
    labelNames: ['rpc', 'code', 'reason'] as const,
    registers: [registry],
    collect() {
      for (const [rpc, s] of series) {
        if (s.okPending > 0) {
          this.inc({ rpc, code: status[status.OK], reason: '' }, s.okPending);
          s.okPending = 0;
        }
      }
    },
  });
  const callDuration = new Histogram({
    name: METRIC_NAMES.callDuration,
    help: 'RPC latency in seconds, from receipt to response, by method.',
    labelNames: ['rpc'] as const,
    buckets: CALL_BUCKETS,
    registers: [registry],
    collect: flushHistograms,
  });
  const reauth = new Counter({
    name: METRIC_NAMES.reauth,
    help: 'Calls answered with REAUTH_REQUIRED, by method and cause.',
    labelNames: ['rpc', 'cause'] as const,
    registers: [registry],
  });
  const refreshes = new Counter({
    name: METRIC_NAMES.refreshes,
    help: 'Refresh attempts at the IdP by provider and outcome (refreshed, rejected, unavailable, fenced, error).',
    labelNames: ['provider', 'outcome'] as const,
    registers: [registry],
  });
  const lockWait = new Histogram({
    name: METRIC_NAMES.lockWait,
    help: 'Time spent waiting for a per-user refresh lock, in seconds.',
    buckets: LOCK_BUCKETS,
    registers: [registry],
  });
  const coalesced = new Counter({
    name: METRIC_NAMES.coalescedWaiters,
    help: 'Calls that joined a refresh already in flight in this process.',
    registers: [registry],
  });
  const storeErrors = new Counter({
    name: METRIC_NAMES.storeErrors,
    help: 'Failed store operations by operation.',
    labelNames: ['op'] as const,
    registers: [registry],
  });
  const storeUp = new Gauge({
    name: METRIC_NAMES.storeUp,
    help: '1 when the last readiness probe reached the store, else 0.',
    registers: [registry],
  });
  storeUp.set(1);
  // The store's record cache keeps plain counters; these series copy them at scrape time.
  let readCache: (() => StoreCacheCounts) | undefined;
  const cacheCounter = (name: string, help: string, pick: (c: StoreCacheCounts) => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        const counts = readCache?.();
        if (counts) this.inc(pick(counts));
      },
    });
  cacheCounter(
    METRIC_NAMES.storeCacheHits,
    'Token record reads served from the record cache.',
    (c) => c.hits,
  );
  cacheCounter(METRIC_NAMES.storeCacheMisses, 'Token record reads that went to Redis.', (c) => c.misses);
  cacheCounter(
    METRIC_NAMES.storeCacheInvalidations,
    'Cached records dropped because they changed in Redis (any replica).',
    (c) => c.invalidations,
  );
  cacheCounter(
    METRIC_NAMES.storeCacheFlushes,
    'Whole record cache drops (invalidation link lost or re-established, topology change, FLUSHALL).',
    (c) => c.flushes,
  );
  new Gauge({
    name: METRIC_NAMES.storeCacheEntries,
    help: 'Token records in the record cache.',
    registers: [registry],
    collect() {
      this.set(readCache?.().entries ?? 0);
    },
  });
  new Gauge({
    name: METRIC_NAMES.storeCacheActive,
    help: '1 while the record cache serves (its invalidation link is up), else 0 (off or link down).',
    registers: [registry],
    collect() {
      this.set(readCache?.().active ? 1 : 0);
    },
  });
  const tokenRemaining = new Histogram({
    name: METRIC_NAMES.tokenRemaining,
    help: 'Lifetime left on access tokens when served, in seconds.',
    buckets: REMAINING_BUCKETS,
    registers: [registry],
    collect: flushHistograms,
  });
  const served = new HotHistogram(tokenRemaining, {}, REMAINING_BUCKETS);
  hotHistograms.push(served);
  const exchanges = new Counter({
    name: METRIC_NAMES.exchanges,
    help: 'Token exchanges for downstream APIs at the IdP by provider, downstream and outcome (exchanged, rejected, unavailable, fenced, error).',
    labelNames: ['provider', 'downstream', 'outcome'] as const,
    registers: [registry],
  });
  const downstreamServed = new Counter({
    name: METRIC_NAMES.downstreamServed,
    help: 'Downstream tokens handed out by provider, downstream and source (cached, exchanged).',
    labelNames: ['provider', 'downstream', 'source'] as const,
    registers: [registry],
  });
  const buildInfo = new Gauge({
    name: METRIC_NAMES.buildInfo,
    help: 'Always 1; labels carry the credbroker and Node.js versions.',
    labelNames: ['version', 'node_version'] as const,
    registers: [registry],
  });
  buildInfo.set({ version: packageVersion(), node_version: process.version }, 1);

  // Label children are made once per label combination and kept: `inc({ … })` / `observe({ … })`
  // with a labels object would rebuild and validate the labels on every call. Every key below
  // comes from a closed set (RPC names, gRPC codes, ErrorInfo reasons), so the maps stay small.
  interface RpcSeries {
    readonly duration: HotHistogram;
    /** calls_total children by `${code} ${reason}`. */
    readonly calls: Map<string, { inc(): void }>;
    /** OK calls not yet added to calls_total (at scrape time). */
    okPending: number;
  }
  const series = new Map<string, RpcSeries>();
  const seriesOf = (rpc: string): RpcSeries => {
    let s = series.get(rpc);
    if (s === undefined) {
      const duration = new HotHistogram(callDuration, { rpc }, CALL_BUCKETS);
      hotHistograms.push(duration);
      s = { duration, calls: new Map(), okPending: 0 };
      series.set(rpc, s);
    }
    return s;
  };
  const observer: CallObserver = (outcome) => {
    const { rpc, code } = outcome;
    const s = seriesOf(rpc);
    const reason = outcome.reason ?? '';
    if (code === status.OK && reason === '') s.okPending++;
    else {
      const key = `${code} ${reason}`;
      let counter = s.calls.get(key);
      if (counter === undefined) {
        counter = calls.labels({ rpc, code: status[code] ?? String(code), reason });
        s.calls.set(key, counter);
      }
      counter.inc();
    }
    s.duration.observe(outcome.durationMs / 1000);
    if (reason === 'REAUTH_REQUIRED') {
      reauth.inc({ rpc, cause: outcome.metadata.cause ?? 'UNSPECIFIED' });
    }
  };

  const brokerMetrics: BrokerMetrics = {
    refresh: (provider, outcome) => refreshes.inc({ provider, outcome }),
    lockWait: (ms) => lockWait.observe(Math.max(0, ms) / 1000),
    coalescedWaiter: () => coalesced.inc(),
    storeError: (op) => storeErrors.inc({ op }),
    tokenServed: (remainingMs) => served.observe(Math.max(0, remainingMs) / 1000),
    storeCache: (read) => {
      readCache = read;
    },
    exchange: (provider, downstream, outcome) => exchanges.inc({ provider, downstream, outcome }),
    downstreamServed: (provider, downstream, source) =>
      downstreamServed.inc({ provider, downstream, source }),
  };

  return {
    observer,
    brokerMetrics,
    setStoreUp: (up) => storeUp.set(up ? 1 : 0),
    registry,
    startHttp: (listen, logger) => serveMetrics(registry, listen, logger),
  };
}

function splitListen(listen: string): { host: string; port: number } {
  const at = listen.lastIndexOf(':');
  return { host: listen.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(listen.slice(at + 1)) };
}

async function serveMetrics(registry: Registry, listen: string, logger?: Logger): Promise<MetricsHttpServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => {
        logger?.error({ err }, 'collecting metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed\n');
      },
    );
  });
  const { host, port } = splitListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        // A scraper's keep-alive connection would otherwise hold close() open.
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
