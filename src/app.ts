/**
 * Composition root: builds the domain (store, identity providers, broker) from the validated
 * configuration. Everything with a lifecycle is returned in `resources`, closed at shutdown.
 */
import type { BrokerApi } from './broker/api.js';
import type { BrokerMetrics } from './broker/metrics.js';
import { notImplementedApi } from './broker/not-implemented.js';
import type { Config } from './config/load.js';
import type { Logger } from './logger.js';
import type { Authorizer, CallObserver } from './server/call.js';

export interface App {
  readonly api: BrokerApi;
  readonly observers: readonly CallObserver[];
  readonly authorize?: Authorizer;
  /** Reports store reachability to readiness; undefined when nothing external is needed. */
  readonly probe?: () => Promise<boolean>;
  readonly resources: readonly { close(): Promise<void> | void }[];
}

/** What the entry point hands the composition root besides configuration and logger. */
export interface AppOptions {
  /** Domain metrics hooks (src/server/metrics.ts); default: discard. */
  readonly metrics?: BrokerMetrics;
}

export async function createApp(_config: Config, _logger: Logger, _options: AppOptions = {}): Promise<App> {
  return { api: notImplementedApi, observers: [], resources: [] };
}
