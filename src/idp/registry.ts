/**
 * The configured identity providers by id. Built once at startup: presets resolved, secrets and
 * private keys loaded, insecure endpoints refused. Metadata discovery happens later, on first
 * use, so the broker starts (and serves GetValidSubjectToken from the store) while an IdP is down.
 */
import { readFileSync } from 'node:fs';
import type { Clock } from '../core/clock.js';
import { invalidRequest } from '../core/errors.js';
import type { Config, ProviderConfig } from '../config/load.js';
import type { Logger } from '../logger.js';
import { createClientAuth } from './client-auth.js';
import type { IdpClient, IdpRegistry } from '../core/idp-client.js';
import { createOidcClient } from './oidc-client.js';
import { insecureUrlProblem } from './transport.js';
import { resolvePreset } from './presets.js';
import { IdpConfigError } from './config-error.js';

export { IdpConfigError } from './config-error.js';

export interface IdpRegistryOptions {
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Reads private_key_file; default fs.readFileSync as UTF-8. */
  readonly readFile?: (path: string) => string;
  /** HTTP client for every IdP call; default the global fetch. */
  readonly fetch?: typeof fetch;
}

function checkUrls(p: ProviderConfig, urls: Record<string, string | undefined>): void {
  for (const [field, url] of Object.entries(urls)) {
    if (url === undefined) continue;
    const problem = insecureUrlProblem(url, p.allow_insecure_http);
    if (problem !== undefined) throw new IdpConfigError(`providers.${p.id}.${field}: ${problem}`);
  }
}

/**
 * Builds the registry from `config.providers`.
 * @throws IdpConfigError naming the provider field (bad preset combination, insecure URL,
 *   unreadable or unusable private key)
 */
export async function createIdpRegistry(
  config: Pick<Config, 'providers' | 'refresh'>,
  options: IdpRegistryOptions,
): Promise<IdpRegistry> {
  const readFile = options.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  const clients = new Map<string, IdpClient>();
  for (const p of config.providers) {
    let plan;
    try {
      plan = resolvePreset(p);
      const source = plan.source;
      checkUrls(p, {
        issuer: source.kind === 'discovery' ? source.issuer : source.metadata.issuer,
        authorization_endpoint:
          source.kind === 'explicit' ? source.metadata.authorization_endpoint : p.authorization_endpoint,
        token_endpoint: source.kind === 'explicit' ? source.metadata.token_endpoint : p.token_endpoint,
        revocation_endpoint: p.revocation_endpoint,
        userinfo_endpoint: p.userinfo_endpoint,
        jwks_uri: p.jwks_uri,
        ...Object.fromEntries(
          p.downstreams.map((d) => [`downstreams.${d.id}.token_endpoint`, d.token_endpoint]),
        ),
      });
    } catch (err) {
      throw err instanceof IdpConfigError ? err : new IdpConfigError((err as Error).message);
    }
    let clientAuth;
    try {
      clientAuth = await createClientAuth(p, readFile);
    } catch (err) {
      throw new IdpConfigError((err as Error).message);
    }
    // A downstream with its own client authenticates as that client (its secret or key).
    const downstreamAuth = new Map<string, Awaited<ReturnType<typeof createClientAuth>>>();
    for (const d of p.downstreams) {
      if (d.client_id === undefined) continue;
      try {
        downstreamAuth.set(
          d.id,
          await createClientAuth(
            {
              id: `${p.id}.downstreams.${d.id}`,
              client_auth: d.client_auth ?? 'client_secret_basic',
              client_secret: d.client_secret,
              private_key_file: d.private_key_file,
              private_key_id: d.private_key_id,
            },
            readFile,
          ),
        );
      } catch (err) {
        throw new IdpConfigError((err as Error).message);
      }
    }
    clients.set(
      p.id,
      createOidcClient({
        provider: p,
        plan,
        clientAuth,
        downstreamAuth,
        refreshSkewMs: config.refresh.skew,
        logger: options.logger,
        ...(options.clock ? { clock: options.clock } : {}),
        ...(options.fetch ? { fetch: options.fetch } : {}),
      }),
    );
  }
  const ids = Object.freeze([...clients.keys()]);
  return {
    ids,
    /** @throws BrokerError INVALID_REQUEST naming `provider` when the id is not configured */
    get(id: string): IdpClient {
      const client = clients.get(id);
      if (client === undefined) {
        throw invalidRequest([
          { field: 'provider', description: `unknown provider ${JSON.stringify(id.slice(0, 64))}` },
        ]);
      }
      return client;
    },
  };
}
