/**
 * The explicit context of one provider's openid-client adapter (./oidc-client.ts and
 * ./token-exchange.ts): configuration, the fetch every IdP call goes through (bounded by the
 * provider's `timeout` and by the caller's AbortSignal), and the lazily discovered, cached
 * openid-client Configuration. Functions over this context replace one large closure.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  allowInsecureRequests,
  Configuration,
  customFetch,
  discovery,
  enableNonRepudiationChecks,
  type ClientAuth,
  type CustomFetch,
  type ServerMetadata,
} from 'openid-client';
import type { ProviderConfig } from '../config/load.js';
import type { Logger } from '../logger.js';
import { toIdpError, type IdpOperation } from './errors.js';
import { IdpError } from '../core/idp-client.js';
import type { ProviderPlan } from './presets.js';
import { systemClock, type Clock } from '../core/clock.js';
import { insecureUrlProblem, oauthErrorAs400 } from './transport.js';

export interface OidcClientOptions {
  readonly provider: ProviderConfig;
  readonly plan: ProviderPlan;
  readonly clientAuth: ClientAuth;
  /** The global refresh skew (refresh.skew), ms; the provider's `skew` overrides it. */
  readonly refreshSkewMs: number;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** HTTP client; default the global fetch. */
  readonly fetch?: typeof fetch;
  /**
   * Client authentication of each downstream that has its own `client_id`, by downstream id
   * (built at startup with the provider's). Downstreams without one use `clientAuth`.
   */
  readonly downstreamAuth?: ReadonlyMap<string, ClientAuth>;
}

export interface OidcContext {
  readonly provider: ProviderConfig;
  readonly plan: ProviderPlan;
  readonly clientAuth: ClientAuth;
  readonly downstreamAuth: ReadonlyMap<string, ClientAuth>;
  readonly clock: Clock;
  /** Logger with the provider id. */
  readonly log: Logger;
  readonly timeoutSeconds: number;
  /**
   * The caller's AbortSignal for the call in progress: openid-client takes a fetch per
   * configuration, not per call, so the signal travels with the async context.
   */
  readonly callSignal: AsyncLocalStorage<AbortSignal | undefined>;
  readonly fetch: CustomFetch;
  /** Discovered (or built) once; a failure is not cached. */
  configuration: Promise<Configuration> | undefined;
  /** Per-downstream configurations (own token endpoint or client), built once each. */
  readonly downstreamConfigurations: Map<string, Promise<Configuration>>;
}

export function createOidcContext(options: OidcClientOptions): OidcContext {
  const { provider, plan } = options;
  const baseFetch = options.fetch ?? globalThis.fetch;
  const callSignal = new AsyncLocalStorage<AbortSignal | undefined>();
  return {
    provider,
    plan,
    clientAuth: options.clientAuth,
    downstreamAuth: options.downstreamAuth ?? new Map(),
    clock: options.clock ?? systemClock,
    log: options.logger.child({ provider: provider.id }),
    timeoutSeconds: provider.timeout / 1000,
    callSignal,
    fetch: async (url, init) => {
      const extra = callSignal.getStore();
      const signal = extra && init.signal ? AbortSignal.any([init.signal, extra]) : (init.signal ?? extra);
      const response = await baseFetch(url, { ...init, signal } as RequestInit);
      return plan.githubQuirks ? oauthErrorAs400(response) : response;
    },
    configuration: undefined,
    downstreamConfigurations: new Map(),
  };
}

function execute(ctx: OidcContext): ((config: Configuration) => void)[] {
  return ctx.provider.allow_insecure_http ? [allowInsecureRequests] : [];
}

/** Our fetch, timeout and transport rules on a Configuration built by hand. */
export function configure(ctx: OidcContext, config: Configuration): Configuration {
  config[customFetch] = ctx.fetch;
  config.timeout = ctx.timeoutSeconds;
  for (const extension of execute(ctx)) extension(config);
  return config;
}

function checkEndpoints(ctx: OidcContext, config: Configuration): void {
  const m = config.serverMetadata();
  for (const url of [
    m.authorization_endpoint,
    m.token_endpoint,
    m.revocation_endpoint,
    m.userinfo_endpoint,
    m.jwks_uri,
  ]) {
    if (url === undefined) continue;
    const problem = insecureUrlProblem(url, ctx.provider.allow_insecure_http);
    if (problem !== undefined) {
      throw new IdpError('unavailable', 'identity provider metadata names an insecure endpoint', {
        cause: new Error(`discovery: ${problem}`),
      });
    }
  }
}

async function build(ctx: OidcContext): Promise<Configuration> {
  const { provider: p, plan, clientAuth } = ctx;
  let config: Configuration;
  if (plan.source.kind === 'discovery') {
    const discovered = await discovery(new URL(plan.source.issuer), p.client_id, {}, clientAuth, {
      [customFetch]: ctx.fetch,
      timeout: ctx.timeoutSeconds,
      execute: execute(ctx),
    });
    config =
      Object.keys(plan.source.overrides).length === 0
        ? discovered
        : configure(
            ctx,
            new Configuration(
              { ...(discovered.serverMetadata() as ServerMetadata), ...plan.source.overrides },
              p.client_id,
              {},
              clientAuth,
            ),
          );
  } else {
    config = configure(ctx, new Configuration({ ...plan.source.metadata }, p.client_id, {}, clientAuth));
  }
  checkEndpoints(ctx, config);
  // OIDC Core §3.1.3.7 allows trusting TLS for an ID token from the token endpoint; we verify
  // its signature against the provider's JWKS anyway (docs/architecture.md §5).
  if (plan.oidc) enableNonRepudiationChecks(config);
  return config;
}

/**
 * The provider's Configuration: discovered once and cached; a failure is not cached, the next
 * call discovers again. @throws IdpError unavailable
 */
export function getConfiguration(ctx: OidcContext): Promise<Configuration> {
  if (ctx.configuration === undefined) {
    // Outside any caller's signal: one caller cancelling must not fail the shared discovery.
    const attempt = ctx.callSignal
      .exit(() => build(ctx))
      .catch((err: unknown) => {
        ctx.configuration = undefined;
        const error = toIdpError(err, 'discovery', ctx.clock.now());
        ctx.log.warn({ err: error.cause }, 'identity provider discovery failed');
        throw error;
      });
    ctx.configuration = attempt;
  }
  return ctx.configuration;
}

/** Runs one IdP operation with the caller's signal, mapping every failure to IdpError. */
export async function run<T>(
  ctx: OidcContext,
  operation: IdpOperation,
  signal: AbortSignal | undefined,
  fn: (config: Configuration) => Promise<T>,
): Promise<T> {
  const config = await getConfiguration(ctx);
  try {
    return await ctx.callSignal.run(signal, () => fn(config));
  } catch (err) {
    throw toIdpError(err, operation, ctx.clock.now());
  }
}

/** RFC 6750 spells the type "Bearer"; oauth4webapi lower-cases it. */
export function tokenType(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (value.toLowerCase() === 'bearer') return 'Bearer';
  if (value.toLowerCase() === 'dpop') return 'DPoP';
  return value;
}
