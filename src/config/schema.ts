/**
 * The configuration shape of docs/architecture.md §6a, validated with zod. Every default is a named constant
 * with the reason for its value; docs/configuration.md documents each setting.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseDuration } from './duration.js';

/** The API port. Loopback-only exposure is decided by `insecure`/TLS checks, not by this default. */
export const DEFAULT_LISTEN = '0.0.0.0:50051';
/** Plaintext grpc.health.v1 only: the kubelet's gRPC probe cannot speak TLS. */
export const DEFAULT_HEALTH_LISTEN = '0.0.0.0:50052';
/** Prometheus' conventional exporter range. */
export const DEFAULT_METRICS_LISTEN = '0.0.0.0:9464';
/** Kubernetes' default terminationGracePeriodSeconds is 30 s; drain well inside it. */
export const DEFAULT_SHUTDOWN_GRACE = '20s';
/** Time to keep answering while NOT_SERVING before closing, so endpoints are withdrawn first. */
export const DEFAULT_SHUTDOWN_DELAY = '0s';
/** Requests are tiny; a bound stops memory abuse (issue 2: 64 KiB). */
export const DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 64 * 1024;
/** The origin's 60 s margin: a token is refreshed once it has less left. */
export const DEFAULT_REFRESH_SKEW = '60s';
/** Lease of the per-user refresh lock; renewed while the IdP call is in flight. */
export const DEFAULT_LOCK_LEASE = '5s';
/** Records without a refresh-token expiry are kept at most this long (docs/architecture.md §3). */
export const DEFAULT_MAX_RECORD_TTL = '30d';
/** How long StartLogin state stays valid (docs/architecture.md §2). */
export const DEFAULT_LOGIN_STATE_TTL = '10m';
/** A Redis command that takes longer fails with STORE_UNAVAILABLE instead of queueing forever. */
export const DEFAULT_STORE_COMMAND_TIMEOUT = '1s';
/** How often readiness probes the store. */
export const DEFAULT_STORE_PROBE_INTERVAL = '2s';
/**
 * Records the Redis store's process-local cache keeps (LRU). A record is a few KiB (access,
 * refresh and ID token): 10,000 is tens of MiB at most, and covers a replica's active users.
 */
export const DEFAULT_STORE_CACHE_MAX_ENTRIES = 10_000;
/**
 * Liveness PING on each cache invalidation link: a replica cut off from Redis without a TCP
 * error stops serving from its cache within this plus store.command_timeout.
 */
export const DEFAULT_STORE_CACHE_HEARTBEAT = '1s';
/**
 * Longest a record cache entry is served after it was read (less when its Redis TTL is shorter):
 * bounds how long an invalidation lost without the link noticing can leave an entry stale.
 */
export const DEFAULT_STORE_CACHE_MAX_AGE = '30s';
/** IdP calls are bounded; the refresh lock's lease is renewed meanwhile. */
export const DEFAULT_IDP_TIMEOUT = '10s';
/**
 * Access-token lifetime assumed when the IdP sends no `expires_in` and the token is not a JWT.
 * Short on purpose: unknown must never mean "never expires" (the origin's bug).
 */
export const DEFAULT_ACCESS_TOKEN_LIFETIME = '5m';
/** cert-manager renews at 2/3 of a certificate's life: a minute's delay in noticing is plenty. */
export const DEFAULT_TLS_RELOAD_INTERVAL = '1m';

const RPC_NAMES = [
  'StartLogin',
  'CompleteLogin',
  'GetValidSubjectToken',
  'RevokeSubjectToken',
  'GetDownstreamToken',
] as const;
export type RpcName = (typeof RPC_NAMES)[number];

const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a duration like 500ms, 60s, 5m, 1h or 30d, got "${text}"`,
    });
    return z.NEVER;
  }
  return ms;
});

const hostPort = z.string().refine(
  (text) => {
    const at = text.lastIndexOf(':');
    if (at <= 0) return false;
    const host = text.slice(0, at).replace(/^\[(.*)\]$/, '$1');
    const port = Number(text.slice(at + 1));
    return (
      Number.isInteger(port) &&
      port >= 0 &&
      port <= 65535 &&
      (isIP(host) !== 0 || /^[a-z0-9.-]+$/i.test(host))
    );
  },
  { message: 'expected host:port, e.g. 0.0.0.0:50051 or [::1]:50051' },
);

const httpUrl = z.url({ protocol: /^https?$/, message: 'expected an absolute http(s) URL' });
const redisUrl = z.url({ protocol: /^rediss?$/, message: 'expected a redis:// or rediss:// URL' });

export const providerIdPattern = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** callers[].downstreams entries: `<downstream>` or `<provider>/<downstream>`. */
const callerDownstreamPattern = /^(?:[a-z0-9][a-z0-9_-]{0,62}\/)?[a-z0-9][a-z0-9_-]{0,62}$/;

/** RFC 8693 §3: the token type a downstream asks for by default. */
export const DEFAULT_REQUESTED_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

const scopeToken = z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'expected an RFC 6749 scope token');
const clientAuthMethod = z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none']);

/**
 * A downstream API of a provider: the broker exchanges the user's subject token for a token of
 * this audience / resource (RFC 8693, RFC 8707) or, for Entra, on behalf of the user. The client
 * is the provider's unless `client_id` is set, in which case every client-authentication setting
 * comes from the downstream (a secret is never paired with another client's id).
 */
const downstreamSchema = z
  .strictObject({
    id: z.string().regex(providerIdPattern, 'expected lowercase letters, digits, "-" or "_" (1-63 chars)'),
    mode: z.enum(['token_exchange', 'entra_obo']).default('token_exchange'),
    audience: z.string().min(1).max(2048).optional(),
    resource: z.url({ message: 'expected an absolute URI (RFC 8707 §2)' }).optional(),
    scopes: z.array(scopeToken).optional(),
    requested_token_type: z.string().min(1).default(DEFAULT_REQUESTED_TOKEN_TYPE),
    token_endpoint: httpUrl.optional(),
    client_id: z.string().min(1).optional(),
    client_secret: z.string().min(1).optional(),
    client_secret_file: z.string().min(1).optional(),
    private_key_file: z.string().min(1).optional(),
    private_key_id: z.string().min(1).optional(),
    client_auth: clientAuthMethod.optional(),
  })
  .superRefine((d, ctx) => {
    const own = [d.client_secret, d.client_secret_file, d.private_key_file, d.private_key_id, d.client_auth];
    if (d.client_id === undefined && own.some((v) => v !== undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['client_id'],
        message:
          'client authentication settings of a downstream need its own client_id (else the provider client is used)',
      });
    }
    if (d.client_id !== undefined) {
      const auth = d.client_auth ?? 'client_secret_basic';
      const needsSecret = auth === 'client_secret_basic' || auth === 'client_secret_post';
      if (needsSecret && d.client_secret === undefined && d.client_secret_file === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['client_secret'],
          message: `client_auth ${auth} needs client_secret or client_secret_file`,
        });
      }
      if (auth === 'private_key_jwt' && d.private_key_file === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['private_key_file'],
          message: 'client_auth private_key_jwt needs private_key_file',
        });
      }
    }
    if (
      d.mode === 'token_exchange' &&
      d.audience === undefined &&
      d.resource === undefined &&
      !d.scopes?.length
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['audience'],
        message: 'a token_exchange downstream needs audience, resource or scopes (what the token is for)',
      });
    }
    if (d.mode === 'entra_obo') {
      if (!d.scopes?.length) {
        ctx.addIssue({
          code: 'custom',
          path: ['scopes'],
          message: 'an entra_obo downstream needs scopes (e.g. api://orders/.default)',
        });
      }
      for (const field of ['audience', 'resource'] as const) {
        if (d[field] !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: [field],
            message: 'not used by entra_obo (Entra names the downstream API in scopes)',
          });
        }
      }
    }
  });

const providerSchema = z
  .strictObject({
    id: z.string().regex(providerIdPattern, 'expected lowercase letters, digits, "-" or "_" (1-63 chars)'),
    preset: z.enum(['generic', 'google', 'microsoft', 'github']).default('generic'),
    issuer: httpUrl.optional(),
    tenant: z.string().min(1).optional(),
    authorization_endpoint: httpUrl.optional(),
    token_endpoint: httpUrl.optional(),
    revocation_endpoint: httpUrl.optional(),
    userinfo_endpoint: httpUrl.optional(),
    jwks_uri: httpUrl.optional(),
    client_id: z.string().min(1),
    client_secret: z.string().min(1).optional(),
    client_secret_file: z.string().min(1).optional(),
    private_key_file: z.string().min(1).optional(),
    private_key_id: z.string().min(1).optional(),
    client_auth: clientAuthMethod.default('client_secret_basic'),
    redirect_uris: z.array(httpUrl).min(1),
    scopes: z
      .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'expected an RFC 6749 scope token'))
      .optional(),
    skew: duration.optional(),
    timeout: duration.prefault(DEFAULT_IDP_TIMEOUT),
    default_access_token_lifetime: duration.prefault(DEFAULT_ACCESS_TOKEN_LIFETIME),
    /** Plain-http IdP endpoints are accepted only on loopback, for development and tests. */
    allow_insecure_http: z.boolean().default(false),
    downstreams: z.array(downstreamSchema).default([]),
  })
  .superRefine((p, ctx) => {
    const downstreamIds = new Set<string>();
    p.downstreams.forEach((d, i) => {
      if (downstreamIds.has(d.id)) {
        ctx.addIssue({
          code: 'custom',
          path: ['downstreams', i, 'id'],
          message: `duplicate downstream id "${d.id}"`,
        });
      }
      downstreamIds.add(d.id);
    });
    const needsSecret = p.client_auth === 'client_secret_basic' || p.client_auth === 'client_secret_post';
    if (needsSecret && p.client_secret === undefined && p.client_secret_file === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['client_secret'],
        message: `client_auth ${p.client_auth} needs client_secret or client_secret_file`,
      });
    }
    if (p.client_auth === 'private_key_jwt' && p.private_key_file === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['private_key_file'],
        message: 'client_auth private_key_jwt needs private_key_file',
      });
    }
    if (
      p.preset === 'generic' &&
      p.issuer === undefined &&
      (!p.authorization_endpoint || !p.token_endpoint)
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['issuer'],
        message:
          'a generic provider needs issuer (OIDC discovery) or authorization_endpoint and token_endpoint',
      });
    }
    if (p.preset === 'microsoft' && p.tenant === undefined && p.issuer === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['tenant'],
        message: 'the microsoft preset needs tenant (or issuer)',
      });
    }
  });

const callerSchema = z
  .strictObject({
    name: z.string().min(1),
    api_key_sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/, 'expected the hex SHA-256 of the API key (64 lowercase hex digits)')
      .optional(),
    tls_subject: z.string().min(1).optional(),
    tls_san: z.string().min(1).optional(),
    allow: z.array(z.enum(RPC_NAMES)).min(1),
    providers: z.array(z.string().regex(providerIdPattern)).optional(),
    /**
     * Downstreams this caller may ask GetDownstreamToken for: `<provider>/<downstream>` for one
     * provider's, a bare `<downstream>` id for that id under every provider the caller may use;
     * absent: every downstream.
     */
    downstreams: z
      .array(
        z
          .string()
          .regex(
            callerDownstreamPattern,
            "expected a downstream id, or <provider id>/<downstream id> for one provider's",
          ),
      )
      .optional(),
  })
  .refine((c) => c.api_key_sha256 !== undefined || c.tls_subject !== undefined || c.tls_san !== undefined, {
    message: 'a caller needs api_key_sha256, tls_subject or tls_san',
  });

const sentinelSchema = z.strictObject({
  sentinels: z.array(hostPort).min(1),
  name: z.string().min(1),
  password_file: z.string().min(1).optional(),
});

/** The Redis store's record cache (src/store/record-cache.ts); unused by the memory store. */
const storeCacheSchema = z.strictObject({
  enabled: z.boolean().default(true),
  max_entries: z.number().int().min(1).max(10_000_000).default(DEFAULT_STORE_CACHE_MAX_ENTRIES),
  heartbeat: duration
    .refine((ms) => ms >= 10, { message: 'must be at least 10ms' })
    .prefault(DEFAULT_STORE_CACHE_HEARTBEAT),
  max_age: duration
    .refine((ms) => ms >= 1, { message: 'must be at least 1ms' })
    .prefault(DEFAULT_STORE_CACHE_MAX_AGE),
});

const storeSchema = z
  .strictObject({
    subject_tokens: z.boolean().default(false),
    redis_url: redisUrl.optional(),
    redis_cluster: z.array(redisUrl).min(1).optional(),
    redis_sentinel: sentinelSchema.optional(),
    redis_password_file: z.string().min(1).optional(),
    keys: z.string().min(1).optional(),
    keys_file: z.string().min(1).optional(),
    active_key: z.string().min(1).optional(),
    command_timeout: duration.prefault(DEFAULT_STORE_COMMAND_TIMEOUT),
    probe_interval: duration.prefault(DEFAULT_STORE_PROBE_INTERVAL),
    max_record_ttl: duration.prefault(DEFAULT_MAX_RECORD_TTL),
    login_state_ttl: duration.prefault(DEFAULT_LOGIN_STATE_TTL),
    cache: storeCacheSchema.prefault({}),
  })
  .refine(
    (s) => [s.redis_url, s.redis_cluster, s.redis_sentinel].filter((v) => v !== undefined).length <= 1,
    { message: 'choose one of redis_url, redis_cluster or redis_sentinel' },
  );

const tlsSchema = z.strictObject({
  cert_file: z.string().min(1),
  key_file: z.string().min(1),
  client_ca_file: z.string().min(1).optional(),
  /** With a client CA, callers must present a certificate (mutual TLS). */
  require_client_cert: z.boolean().default(true),
  /** How often the files are re-read; a changed, loadable set is used for new connections. */
  reload_interval: duration.prefault(DEFAULT_TLS_RELOAD_INTERVAL),
});

/** log_user_hash_key: at least this many characters (e.g. a base64 key from `credbroker keygen`). */
export const MIN_USER_HASH_KEY_CHARS = 32;
export const USER_HASH_KEY_TOO_SHORT = `must be at least ${MIN_USER_HASH_KEY_CHARS} characters (e.g. the base64 part of \`credbroker keygen\`)`;

export const configSchema = z
  .strictObject({
    listen: hostPort.default(DEFAULT_LISTEN),
    health_listen: z.union([hostPort, z.literal('')]).default(DEFAULT_HEALTH_LISTEN),
    metrics_listen: z.union([hostPort, z.literal('')]).default(DEFAULT_METRICS_LISTEN),
    insecure: z.boolean().default(false),
    reflection: z.boolean().default(true),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    log_pretty: z.boolean().default(false),
    /** The key user ids are hashed with in log lines (src/log-keys.ts); a secret. */
    log_user_hash_key: z.string().trim().min(MIN_USER_HASH_KEY_CHARS, USER_HASH_KEY_TOO_SHORT).optional(),
    log_user_hash_key_file: z.string().min(1).optional(),
    shutdown_grace: duration.prefault(DEFAULT_SHUTDOWN_GRACE),
    shutdown_delay: duration.prefault(DEFAULT_SHUTDOWN_DELAY),
    max_receive_message_bytes: z
      .number()
      .int()
      .min(1024)
      .max(4 * 1024 * 1024)
      .default(DEFAULT_MAX_RECEIVE_MESSAGE_BYTES),
    tls: tlsSchema.optional(),
    store: storeSchema.prefault({}),
    refresh: z
      .strictObject({
        skew: duration.prefault(DEFAULT_REFRESH_SKEW),
        lock_lease: duration.prefault(DEFAULT_LOCK_LEASE),
      })
      .prefault({}),
    providers: z.array(providerSchema).default([]),
    callers: z.array(callerSchema).default([]),
  })
  .superRefine((c, ctx) => {
    if (c.log_user_hash_key !== undefined && c.log_user_hash_key_file !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['log_user_hash_key_file'],
        message: 'set log_user_hash_key or log_user_hash_key_file, not both',
      });
    }
    const seen = new Set<string>();
    c.providers.forEach((p, i) => {
      if (seen.has(p.id))
        ctx.addIssue({
          code: 'custom',
          path: ['providers', i, 'id'],
          message: `duplicate provider id "${p.id}"`,
        });
      seen.add(p.id);
      // A token that is always inside the skew window would be refreshed at the IdP on every call.
      const skew = p.skew ?? c.refresh.skew;
      if (p.default_access_token_lifetime <= skew) {
        ctx.addIssue({
          code: 'custom',
          path: ['providers', i, 'default_access_token_lifetime'],
          message: `must be longer than the refresh skew (${skew / 1000}s), or every call would refresh at the identity provider`,
        });
      }
    });
    c.callers.forEach((caller, i) => {
      caller.providers?.forEach((id, j) => {
        if (!seen.has(id)) {
          ctx.addIssue({
            code: 'custom',
            path: ['callers', i, 'providers', j],
            message: `unknown provider "${id}"`,
          });
        }
      });
      // A downstream id must exist under a provider the caller may use.
      const usable = c.providers.filter(
        (p) => caller.providers === undefined || caller.providers.includes(p.id),
      );
      caller.downstreams?.forEach((entry, j) => {
        if (!callerDownstreamPattern.test(entry)) return; // reported by the pattern already
        const slash = entry.indexOf('/');
        const providerId = slash < 0 ? undefined : entry.slice(0, slash);
        const id = entry.slice(slash + 1);
        const under = usable.filter((p) => providerId === undefined || p.id === providerId);
        if (!under.some((p) => p.downstreams.some((d) => d.id === id))) {
          ctx.addIssue({
            code: 'custom',
            path: ['callers', i, 'downstreams', j],
            message:
              providerId === undefined
                ? `unknown downstream "${id}" (not configured under any provider this caller may use)`
                : `unknown downstream "${entry}" (provider "${providerId}" is not one this caller may use, or has no downstream "${id}")`,
          });
        }
      });
    });
  });

/** The validated file + environment input, before secrets are read from files. */
export type ParsedConfig = z.output<typeof configSchema>;
export type ProviderInput = ParsedConfig['providers'][number];
export type DownstreamInput = ProviderInput['downstreams'][number];
export type CallerConfig = Readonly<ParsedConfig['callers'][number]>;
export type TlsConfig = Readonly<NonNullable<ParsedConfig['tls']>>;
