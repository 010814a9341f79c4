/**
 * validateDeployment: everything `credbroker serve` checks before it listens, in one place, so
 * `credbroker check-config` refuses exactly what `serve` would refuse, with the same messages.
 *
 * It reads local files only (TLS certificate and key, the key ring, private_key_jwt keys, Redis
 * password files) and contacts nothing: Redis is first dialled by the store `serve` builds
 * afterwards, and IdP metadata discovery happens on a provider's first use (src/idp/registry.ts),
 * so a deployment validates while Redis or an IdP is down.
 */
import type { ServerCredentials } from '@grpc/grpc-js';
import { ConfigError } from './config/error.js';
import type { Config } from './config/load.js';
import type { IdpRegistry } from './core/idp-client.js';
import { createIdpRegistry, IdpConfigError } from './idp/registry.js';
import { UNKEYED_USER_HASH_WARNING, userHashKeys } from './log-keys.js';
import { createLogger, type Logger } from './logger.js';
import { checkExposure } from './server/security/exposure.js';
import { createTlsCredentials } from './server/security/tls.js';
import { KeyRingError, loadKeyRing, type KeyRing } from './store/key-ring.js';
import { readPassword } from './store/redis-connection.js';

/** What the checks built; `serve` hands it on instead of building it a second time. */
export interface Deployment {
  /** Credentials of the API port from `tls`; undefined: plaintext. */
  readonly credentials: ServerCredentials | undefined;
  /** Undefined when no key is configured: token storage is disabled. */
  readonly keyRing: KeyRing | undefined;
  /** Providers with presets resolved, secrets and private keys loaded; not yet discovered. */
  readonly idps: IdpRegistry;
  /** Why the API is less than secure (src/server/security/exposure.ts): `RUNNING INSECURE`. */
  readonly insecure: readonly string[];
  /** Other things an operator should know: the deployment runs, but maybe not as intended. */
  readonly warnings: readonly string[];
}

/** The warning when storage is asked for but cannot be encrypted (docs/architecture.md §3: disabled, loudly). */
export const STORAGE_DISABLED_WARNING =
  'store.subject_tokens is on but no encryption key is configured: token storage is DISABLED';

const silent = createLogger({ level: 'silent' });

function problemOf(err: unknown): readonly string[] {
  if (err instanceof KeyRingError) return [err.problem];
  if (err instanceof ConfigError) return err.problems;
  return [(err as Error).message];
}

/**
 * Checks an already-loaded configuration the way `serve` needs it: the exposure of the API port
 * (listen / tls / callers / insecure), the TLS files, the key ring, the Redis password files and
 * every provider (preset, endpoint URLs, client authentication, private key).
 * @param logger handed to what the deployment keeps (certificate reloads, IdP clients); default
 *   silent
 * @throws ConfigError listing one line per problem, each naming its field (KeyRingError and
 *   IdpConfigError are reported through it). The IdP registry stops at its first bad provider.
 */
export async function validateDeployment(config: Config, logger: Logger = silent): Promise<Deployment> {
  const problems: string[] = [];
  const attempt = <T>(check: () => T): T | undefined => {
    try {
      return check();
    } catch (err) {
      problems.push(...problemOf(err));
      return undefined;
    }
  };
  const exposure = checkExposure(config);
  problems.push(...exposure.problems);
  const credentials = config.tls ? attempt(() => createTlsCredentials(config.tls!, logger)) : undefined;
  const keyRing = attempt(() => loadKeyRing(config.store));
  attempt(() => readPassword('store.redis_password_file', config.store.redis_password_file));
  attempt(() =>
    readPassword('store.redis_sentinel.password_file', config.store.redis_sentinel?.password_file),
  );
  let idps: IdpRegistry | undefined;
  try {
    idps = await createIdpRegistry(config, { logger });
  } catch (err) {
    if (!(err instanceof IdpConfigError)) throw err;
    problems.push(err.message);
  }
  if (problems.length > 0 || idps === undefined) throw new ConfigError(problems);
  const warnings = config.store.subject_tokens && keyRing === undefined ? [STORAGE_DISABLED_WARNING] : [];
  if (userHashKeys(config, keyRing)[0]!.key === undefined) warnings.push(UNKEYED_USER_HASH_WARNING);
  return { credentials, keyRing, idps, insecure: exposure.warnings, warnings };
}
