/**
 * loadConfig: the only reader of the configuration file and of CREDBROKER_* environment
 * variables. The result is validated fail-fast and deeply frozen; every error names the field
 * (`providers[0].issuer`) or the variable and what is allowed.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { deepFreeze } from '../core/freeze.js';
import { ConfigError } from './error.js';
import {
  configSchema,
  MIN_USER_HASH_KEY_CHARS,
  USER_HASH_KEY_TOO_SHORT,
  type ParsedConfig,
} from './schema.js';

export { ConfigError } from './error.js';

type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** The effective configuration: validated, secrets read from their files, frozen. */
export type Config = DeepReadonly<ParsedConfig> & {
  /** Where it came from: the file, and the environment variables that were applied. */
  readonly source: { readonly file: string | undefined; readonly env: readonly string[] };
};
export type ProviderConfig = Config['providers'][number];
export type DownstreamConfig = ProviderConfig['downstreams'][number];
export type StoreConfig = Config['store'];

type Kind = 'string' | 'boolean' | 'integer' | 'list';
/** CREDBROKER_* variable → config path and how to read it. */
const ENV: Record<string, { path: readonly string[]; kind: Kind }> = {
  CREDBROKER_LISTEN: { path: ['listen'], kind: 'string' },
  CREDBROKER_HEALTH_LISTEN: { path: ['health_listen'], kind: 'string' },
  CREDBROKER_METRICS_LISTEN: { path: ['metrics_listen'], kind: 'string' },
  CREDBROKER_INSECURE: { path: ['insecure'], kind: 'boolean' },
  CREDBROKER_REFLECTION: { path: ['reflection'], kind: 'boolean' },
  CREDBROKER_LOG_LEVEL: { path: ['log_level'], kind: 'string' },
  CREDBROKER_LOG_PRETTY: { path: ['log_pretty'], kind: 'boolean' },
  CREDBROKER_LOG_USER_HASH_KEY: { path: ['log_user_hash_key'], kind: 'string' },
  CREDBROKER_LOG_USER_HASH_KEY_FILE: { path: ['log_user_hash_key_file'], kind: 'string' },
  CREDBROKER_SHUTDOWN_GRACE: { path: ['shutdown_grace'], kind: 'string' },
  CREDBROKER_SHUTDOWN_DELAY: { path: ['shutdown_delay'], kind: 'string' },
  CREDBROKER_MAX_RECEIVE_MESSAGE_BYTES: { path: ['max_receive_message_bytes'], kind: 'integer' },
  CREDBROKER_TLS_CERT_FILE: { path: ['tls', 'cert_file'], kind: 'string' },
  CREDBROKER_TLS_KEY_FILE: { path: ['tls', 'key_file'], kind: 'string' },
  CREDBROKER_TLS_CLIENT_CA_FILE: { path: ['tls', 'client_ca_file'], kind: 'string' },
  CREDBROKER_TLS_REQUIRE_CLIENT_CERT: { path: ['tls', 'require_client_cert'], kind: 'boolean' },
  CREDBROKER_TLS_RELOAD_INTERVAL: { path: ['tls', 'reload_interval'], kind: 'string' },
  CREDBROKER_STORE_SUBJECT_TOKENS: { path: ['store', 'subject_tokens'], kind: 'boolean' },
  CREDBROKER_REDIS_URL: { path: ['store', 'redis_url'], kind: 'string' },
  CREDBROKER_REDIS_CLUSTER: { path: ['store', 'redis_cluster'], kind: 'list' },
  CREDBROKER_REDIS_SENTINELS: { path: ['store', 'redis_sentinel', 'sentinels'], kind: 'list' },
  CREDBROKER_REDIS_SENTINEL_NAME: { path: ['store', 'redis_sentinel', 'name'], kind: 'string' },
  CREDBROKER_REDIS_PASSWORD_FILE: { path: ['store', 'redis_password_file'], kind: 'string' },
  CREDBROKER_KEYS: { path: ['store', 'keys'], kind: 'string' },
  CREDBROKER_KEYS_FILE: { path: ['store', 'keys_file'], kind: 'string' },
  CREDBROKER_ACTIVE_KEY: { path: ['store', 'active_key'], kind: 'string' },
  CREDBROKER_STORE_COMMAND_TIMEOUT: { path: ['store', 'command_timeout'], kind: 'string' },
  CREDBROKER_STORE_PROBE_INTERVAL: { path: ['store', 'probe_interval'], kind: 'string' },
  CREDBROKER_STORE_MAX_RECORD_TTL: { path: ['store', 'max_record_ttl'], kind: 'string' },
  CREDBROKER_STORE_LOGIN_STATE_TTL: { path: ['store', 'login_state_ttl'], kind: 'string' },
  CREDBROKER_STORE_CACHE: { path: ['store', 'cache', 'enabled'], kind: 'boolean' },
  CREDBROKER_STORE_CACHE_MAX_ENTRIES: { path: ['store', 'cache', 'max_entries'], kind: 'integer' },
  CREDBROKER_STORE_CACHE_HEARTBEAT: { path: ['store', 'cache', 'heartbeat'], kind: 'string' },
  CREDBROKER_STORE_CACHE_MAX_AGE: { path: ['store', 'cache', 'max_age'], kind: 'string' },
  CREDBROKER_REFRESH_SKEW: { path: ['refresh', 'skew'], kind: 'string' },
  CREDBROKER_REFRESH_LOCK_LEASE: { path: ['refresh', 'lock_lease'], kind: 'string' },
};

/** Provider fields settable as CREDBROKER_PROVIDER_<ID>_<FIELD>. */
const PROVIDER_ENV: Record<string, Kind> = {
  preset: 'string',
  issuer: 'string',
  tenant: 'string',
  authorization_endpoint: 'string',
  token_endpoint: 'string',
  revocation_endpoint: 'string',
  userinfo_endpoint: 'string',
  jwks_uri: 'string',
  client_id: 'string',
  client_secret: 'string',
  client_secret_file: 'string',
  private_key_file: 'string',
  private_key_id: 'string',
  client_auth: 'string',
  redirect_uris: 'list',
  scopes: 'list',
  skew: 'string',
  timeout: 'string',
  default_access_token_lifetime: 'string',
  allow_insecure_http: 'boolean',
};
const PROVIDER_PREFIX = 'CREDBROKER_PROVIDER_';
/** Variables read elsewhere (the entry point), not overrides. */
const NOT_OVERRIDES = new Set(['CREDBROKER_CONFIG']);

type Raw = Record<string, unknown>;

function coerce(name: string, text: string, kind: Kind, problems: string[]): unknown {
  switch (kind) {
    case 'string':
      return text;
    case 'list':
      return text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    case 'boolean':
      if (text === 'true' || text === '1') return true;
      if (text === 'false' || text === '0') return false;
      problems.push(`${name}: expected true or false, got "${text}"`);
      return undefined;
    case 'integer':
      if (/^\d+$/.test(text)) return Number(text);
      problems.push(`${name}: expected a whole number, got "${text}"`);
      return undefined;
  }
}

function setPath(target: Raw, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Raw;
  }
  node[path[path.length - 1]!] = value;
}

function envName(id: string): string {
  return id.toUpperCase().replace(/-/g, '_');
}

function applyEnv(raw: Raw, env: Readonly<Record<string, string | undefined>>, problems: string[]): string[] {
  const applied: string[] = [];
  const logLevel = env.LOG_LEVEL;
  if (logLevel !== undefined && env.CREDBROKER_LOG_LEVEL === undefined) {
    raw.log_level = logLevel;
    applied.push('LOG_LEVEL');
  }
  for (const [name, text] of Object.entries(env)) {
    if (!name.startsWith('CREDBROKER_') || text === undefined || NOT_OVERRIDES.has(name)) continue;
    const known = ENV[name];
    if (known) {
      const value = coerce(name, text, known.kind, problems);
      if (value !== undefined) setPath(raw, known.path, value);
      applied.push(name);
      continue;
    }
    if (name.startsWith(PROVIDER_PREFIX)) {
      const rest = name.slice(PROVIDER_PREFIX.length);
      const field = Object.keys(PROVIDER_ENV)
        .sort((a, b) => b.length - a.length)
        .find((f) => rest.endsWith(`_${f.toUpperCase()}`) && rest.length > f.length + 1);
      if (field !== undefined) {
        const idPart = rest.slice(0, rest.length - field.length - 1);
        if (!Array.isArray(raw.providers)) raw.providers = [];
        const providers = raw.providers as Raw[];
        let provider = providers.find((p) => typeof p.id === 'string' && envName(p.id) === idPart);
        if (!provider) {
          provider = { id: idPart.toLowerCase() };
          providers.push(provider);
        }
        const value = coerce(name, text, PROVIDER_ENV[field]!, problems);
        if (value !== undefined) provider[field] = value;
        applied.push(name);
        continue;
      }
    }
    problems.push(`${name}: unknown environment variable (see docs/configuration.md)`);
  }
  return applied;
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (out, key) =>
      typeof key === 'number' ? `${out}[${key}]` : out === '' ? String(key) : `${out}.${String(key)}`,
    '',
  );
}

export interface LoadConfigOptions {
  /** The environment (process.env at the entry point). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** YAML file; default: env.CREDBROKER_CONFIG; none: defaults plus environment. */
  readonly file?: string | undefined;
  /** Reads files (config and *_file secrets); tests may replace it. */
  readonly readFile?: (path: string) => string;
}

/**
 * Loads, validates and freezes the configuration.
 * @throws ConfigError naming every bad field or variable.
 */
export function loadConfig(options: LoadConfigOptions): Config {
  const readFile = options.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  const file = options.file ?? options.env.CREDBROKER_CONFIG;
  const problems: string[] = [];
  let raw: Raw = {};
  if (file !== undefined && file !== '') {
    let text: string;
    try {
      text = readFile(file);
    } catch (err) {
      throw new ConfigError([
        `config file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      ]);
    }
    try {
      const parsed: unknown = parseYaml(text);
      if (parsed !== null && parsed !== undefined) {
        if (typeof parsed !== 'object' || Array.isArray(parsed)) {
          throw new ConfigError([`config file ${file}: expected a YAML mapping at the top level`]);
        }
        raw = parsed as Raw;
      }
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError([
        `config file ${file}: not valid YAML (${(err as Error).message.split('\n')[0]})`,
      ]);
    }
  }
  const applied = applyEnv(raw, options.env, problems);
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const where = formatPath(issue.path);
      problems.push(`${where === '' ? '(top level)' : where}: ${issue.message}`);
    }
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  const config = result.data;

  const readSecret = (field: string, path: string): string => {
    try {
      const secret = readFile(path).trim();
      if (secret === '') problems.push(`${field}: file ${path} is empty`);
      return secret;
    } catch (err) {
      problems.push(`${field}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      return '';
    }
  };
  if (config.log_user_hash_key_file !== undefined) {
    const key = readSecret('log_user_hash_key_file', config.log_user_hash_key_file);
    if (key !== '' && key.length < MIN_USER_HASH_KEY_CHARS) {
      problems.push(`log_user_hash_key_file: the key ${USER_HASH_KEY_TOO_SHORT}`);
    }
    config.log_user_hash_key = key;
  }
  config.providers.forEach((p, i) => {
    if (p.client_secret === undefined && p.client_secret_file !== undefined) {
      p.client_secret = readSecret(`providers[${i}].client_secret_file`, p.client_secret_file);
    }
    p.downstreams.forEach((d, j) => {
      if (d.client_secret === undefined && d.client_secret_file !== undefined) {
        d.client_secret = readSecret(
          `providers[${i}].downstreams[${j}].client_secret_file`,
          d.client_secret_file,
        );
      }
    });
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze({ ...config, source: { file, env: applied } }) as Config;
}

const MASK = '***';
const SECRET_FIELDS = new Set(['client_secret', 'keys', 'password', 'log_user_hash_key']);

/** The password of a `scheme://user:password@host` URL (store.redis_url, redis_cluster). */
const URL_PASSWORD = /^([a-z][a-z0-9+.-]*:\/\/[^/:@]*:)[^/@]*@/i;

/**
 * A copy of the configuration with every secret value replaced by `***`, for printing: secret
 * fields, and passwords written into URLs.
 */
export function maskConfig(config: Config): unknown {
  const mask = (value: unknown, key?: string): unknown => {
    if (key !== undefined && SECRET_FIELDS.has(key) && value !== undefined) return MASK;
    if (typeof value === 'string') return value.replace(URL_PASSWORD, `$1${MASK}@`);
    if (Array.isArray(value)) return value.map((v) => mask(v));
    if (typeof value === 'object' && value !== null) {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mask(v, k)]));
    }
    return value;
  };
  return mask(config);
}
