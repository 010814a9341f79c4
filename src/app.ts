/**
 * Composition root: builds the domain (store, identity providers, broker) from the validated
 * configuration. Everything with a lifecycle is returned in `resources`, closed at shutdown.
 */
import type { BrokerApi } from './broker/api.js';
import { createDownstreamService } from './broker/downstream.js';
import { createTokenService } from './broker/get-token.js';
import { createLoginFlow } from './broker/login.js';
import type { BrokerMetrics } from './broker/metrics.js';
import type { Config } from './config/load.js';
import { createIdpRegistry } from './idp/registry.js';
import { setUserHashKey, type Logger } from './logger.js';
import { createStore, loadKeyRing, type KeyRing } from './store/index.js';
import { UNKEYED_USER_HASH_WARNING, userHashKeys } from './log-keys.js';
import type { IdpRegistry } from './core/idp-client.js';
import type { AuditLog } from './broker/audit.js';
import { createAuditLog } from './server/security/audit.js';

export interface App {
  readonly api: BrokerApi;
  /** The one audit log: the domain records refreshes in it, the server's observer every call. */
  readonly audit: AuditLog;
  /**
   * One round trip to the store for readiness: rejects (with the reason readiness logs) when it
   * is unreachable; undefined when nothing external is needed.
   */
  readonly probe?: () => Promise<void>;
  readonly resources: readonly { close(): Promise<void> | void }[];
}

/** What the entry point hands the composition root besides configuration and logger. */
export interface AppOptions {
  /** Domain metrics hooks (src/server/metrics.ts); default: discard. */
  readonly metrics?: BrokerMetrics;
  /**
   * The key ring and IdP registry validateDeployment (src/deployment.ts) already built; default:
   * built here.
   */
  readonly validated?: { readonly keyRing: KeyRing | undefined; readonly idps: IdpRegistry };
}

export async function createApp(config: Config, logger: Logger, options: AppOptions = {}): Promise<App> {
  const keyRing = options.validated ? options.validated.keyRing : loadKeyRing(config.store);
  // docs/architecture.md §3: no key at all means storage disabled, loudly.
  const storageEnabled = config.store.subject_tokens && keyRing !== undefined;
  // User ids in log lines: under log_user_hash_key, else the active store key's derived key.
  const userHashKey = userHashKeys(config, keyRing)[0]!.key;
  setUserHashKey(userHashKey);
  if (userHashKey === undefined) logger.warn(UNKEYED_USER_HASH_WARNING);
  if (config.store.subject_tokens && keyRing === undefined) {
    logger.warn('store.subject_tokens is on but no encryption key is configured: token storage is DISABLED');
  }
  // Providers before the store: a bad provider must not leave a Redis connection open.
  const idps = options.validated?.idps ?? (await createIdpRegistry(config, { logger }));
  const store = createStore(config.store, keyRing, logger, options.metrics);
  const login = createLoginFlow({
    store,
    idps,
    storageEnabled,
    loginStateTtlMs: config.store.login_state_ttl,
    maxRecordTtlMs: config.store.max_record_ttl,
    logger,
    ...(options.metrics ? { metrics: options.metrics } : {}),
  });
  const audit = createAuditLog(logger);
  const tokens = createTokenService({
    store,
    idps,
    storageEnabled,
    lockLeaseMs: config.refresh.lock_lease,
    maxRecordTtlMs: config.store.max_record_ttl,
    logger,
    audit,
    ...(options.metrics ? { metrics: options.metrics } : {}),
  });
  // GetDownstreamToken: exchanges the subject token the token service hands out (never read raw).
  const downstream = createDownstreamService({
    store,
    idps,
    storageEnabled,
    lockLeaseMs: config.refresh.lock_lease,
    subjectTokens: tokens,
    logger,
    audit,
    ...(options.metrics ? { metrics: options.metrics } : {}),
  });
  const api: BrokerApi = {
    startLogin: login.startLogin,
    completeLogin: login.completeLogin,
    getValidSubjectToken: tokens.getValidSubjectToken,
    revokeSubjectToken: tokens.revokeSubjectToken,
    getDownstreamToken: downstream.getDownstreamToken,
  };
  return {
    api,
    audit,
    ...(store.kind === 'memory' ? {} : { probe: () => store.ping() }),
    // Refreshes in flight finish (and release their locks) before the store closes.
    resources: [
      {
        close: () =>
          downstream
            .idle()
            .then(() => tokens.idle())
            .then(() => store.close()),
      },
    ],
  };
}
