/**
 * Request validation for the four RPCs: wire messages in, domain inputs out, or one
 * INVALID_ARGUMENT / INVALID_REQUEST error listing every bad field (google.rpc.BadRequest). Field
 * names are the proto field names, as AIP-193 asks.
 */
import type {
  CompleteLoginInput,
  DownstreamTokenInput,
  GetTokenInput,
  RevokeInput,
  StartLoginInput,
} from '../broker/api.js';
import { invalidRequest, type FieldViolation } from '../core/errors.js';
import type {
  CompleteLoginRequest,
  GetDownstreamTokenRequest,
  GetValidSubjectTokenRequest,
  RevokeSubjectTokenRequest,
  StartLoginRequest,
} from '../gen/credbroker/v1/broker.js';
import type { Duration } from '../gen/google/protobuf/duration.js';

/** user_id bounds (issue 2): 1–256 bytes of UTF-8. */
export const MAX_USER_ID_BYTES = 256;
/** GetValidSubjectToken's default margin when min_valid_for is unset (docs/architecture.md §2). */
export const DEFAULT_MIN_VALID_FOR_MS = 60_000;
/** A caller cannot ask for more than an hour of validity: most IdPs issue no longer tokens. */
export const MAX_MIN_VALID_FOR_MS = 3_600_000;
const MAX_CODE_LENGTH = 4096;
const MAX_STATE_LENGTH = 512;
const MAX_NONCE_LENGTH = 512;
const MAX_LOGIN_HINT_LENGTH = 256;
const MAX_URI_LENGTH = 2048;
const MAX_SCOPES = 32;
/** RFC 6749 §3.3 scope-token characters. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/;
/** RFC 7636 §4.1: 43–128 unreserved characters. */
const CODE_VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;

/** Resolves the request's provider against the configured ones. */
export interface ProviderResolver {
  readonly ids: readonly string[];
  /** Configured downstream ids by provider id (`providers[].downstreams[].id`). */
  readonly downstreams?: Readonly<Record<string, readonly string[]>>;
}

/** Collects bad fields; a valid request allocates no list (the hot path validates every call). */
class Violations {
  private list: FieldViolation[] | undefined = undefined;
  add(field: string, description: string): void {
    (this.list ??= []).push({ field, description });
  }
  throwIfAny(): void {
    if (this.list !== undefined) throw invalidRequest(this.list);
  }
}

function quote(text: string): string {
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);
}

function provider(v: Violations, providers: ProviderResolver, value: string): string {
  if (value === '') {
    if (providers.ids.length === 1) return providers.ids[0]!;
    v.add(
      'provider',
      providers.ids.length === 0
        ? 'no providers are configured'
        : `required when several providers are configured (one of: ${providers.ids.join(', ')})`,
    );
    return '';
  }
  if (!providers.ids.includes(value)) v.add('provider', `unknown provider ${quote(value)}`);
  return value;
}

function userId(v: Violations, value: string, required: boolean): string | undefined {
  if (value === '') {
    if (required) v.add('user_id', 'required (1 to 256 bytes of UTF-8)');
    return undefined;
  }
  // A UTF-16 code unit is at most 3 bytes of UTF-8: short ids need no byte count.
  if (value.length * 3 > MAX_USER_ID_BYTES && Buffer.byteLength(value, 'utf8') > MAX_USER_ID_BYTES) {
    v.add('user_id', `must be at most ${MAX_USER_ID_BYTES} bytes of UTF-8`);
  } else if (value.includes('\uFFFD')) {
    v.add('user_id', 'must be valid UTF-8');
  }
  return value;
}

function redirectUri(v: Violations, value: string): string {
  if (value === '') {
    v.add('redirect_uri', 'required');
    return value;
  }
  if (value.length > MAX_URI_LENGTH) {
    v.add('redirect_uri', `must be at most ${MAX_URI_LENGTH} characters`);
    return value;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    v.add('redirect_uri', 'must be an absolute URL');
    return value;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') v.add('redirect_uri', 'must be an http(s) URL');
  if (url.hash !== '') v.add('redirect_uri', 'must not contain a fragment (RFC 6749 §3.1.2)');
  return value;
}

function bounded(v: Violations, field: string, value: string, max: number): string | undefined {
  if (value === '') return undefined;
  if (value.length > max) v.add(field, `must be at most ${max} characters`);
  return value;
}

function minValidFor(v: Violations, value: Duration | undefined): number {
  if (value === undefined) return DEFAULT_MIN_VALID_FOR_MS;
  const { seconds, nanos } = value;
  if (seconds < 0 || nanos < 0 || nanos > 999_999_999) {
    v.add('min_valid_for', 'must be a non-negative duration');
    return 0;
  }
  const ms = seconds * 1000 + Math.ceil(nanos / 1e6);
  if (ms > MAX_MIN_VALID_FOR_MS) v.add('min_valid_for', 'must be at most 1h');
  return ms;
}

export function validateStartLogin(req: StartLoginRequest, providers: ProviderResolver): StartLoginInput {
  const v = new Violations();
  const input: StartLoginInput = {
    provider: provider(v, providers, req.provider),
    redirectUri: redirectUri(v, req.redirectUri),
    scopes: req.scopes,
    loginHint: bounded(v, 'login_hint', req.loginHint, MAX_LOGIN_HINT_LENGTH),
  };
  if (req.scopes.length > MAX_SCOPES) v.add('scopes', `at most ${MAX_SCOPES} scopes`);
  req.scopes.forEach((scope, i) => {
    if (!SCOPE_TOKEN.test(scope)) v.add(`scopes[${i}]`, 'must be an RFC 6749 scope token');
  });
  v.throwIfAny();
  return input;
}

export function validateCompleteLogin(
  req: CompleteLoginRequest,
  providers: ProviderResolver,
): CompleteLoginInput {
  const v = new Violations();
  if (req.code === '') v.add('code', 'required');
  const input: CompleteLoginInput = {
    provider: provider(v, providers, req.provider),
    code: bounded(v, 'code', req.code, MAX_CODE_LENGTH) ?? '',
    redirectUri: redirectUri(v, req.redirectUri),
    state: bounded(v, 'state', req.state, MAX_STATE_LENGTH),
    codeVerifier: req.codeVerifier === '' ? undefined : req.codeVerifier,
    nonce: bounded(v, 'nonce', req.nonce, MAX_NONCE_LENGTH),
    userId: userId(v, req.userId, false),
  };
  if (input.state === undefined && input.codeVerifier === undefined) {
    v.add('state', 'required unless code_verifier is given');
  }
  if (input.state !== undefined && input.codeVerifier !== undefined) {
    v.add('code_verifier', 'must be empty when state is given (the broker holds the verifier)');
  }
  if (input.state !== undefined && input.nonce !== undefined) {
    v.add('nonce', 'must be empty when state is given (the broker holds the nonce)');
  }
  if (input.codeVerifier !== undefined && !CODE_VERIFIER.test(input.codeVerifier)) {
    v.add('code_verifier', 'must be 43 to 128 unreserved characters (RFC 7636 §4.1)');
  }
  v.throwIfAny();
  return input;
}

export function validateGetToken(
  req: GetValidSubjectTokenRequest,
  providers: ProviderResolver,
): GetTokenInput {
  const v = new Violations();
  const input: GetTokenInput = {
    userId: userId(v, req.userId, true) ?? '',
    provider: provider(v, providers, req.provider),
    minValidForMs: minValidFor(v, req.minValidFor),
  };
  v.throwIfAny();
  return input;
}

export function validateRevoke(req: RevokeSubjectTokenRequest, providers: ProviderResolver): RevokeInput {
  const v = new Violations();
  const input: RevokeInput = {
    userId: userId(v, req.userId, true) ?? '',
    provider: provider(v, providers, req.provider),
    revokeAtIdp: req.revokeAtIdp,
  };
  v.throwIfAny();
  return input;
}

/** Downstream ids are configuration ids: short, so a longer value is rejected without echoing it. */
const MAX_DOWNSTREAM_LENGTH = 128;

export function validateGetDownstreamToken(
  req: GetDownstreamTokenRequest,
  providers: ProviderResolver,
): DownstreamTokenInput {
  const v = new Violations();
  const input: DownstreamTokenInput = {
    userId: userId(v, req.userId, true) ?? '',
    provider: provider(v, providers, req.provider),
    downstream: req.downstream,
    minValidForMs: minValidFor(v, req.minValidFor),
  };
  if (req.downstream === '') {
    v.add('downstream', 'required (the id of a downstream configured under the provider)');
  } else if (req.downstream.length > MAX_DOWNSTREAM_LENGTH) {
    v.add('downstream', `must be at most ${MAX_DOWNSTREAM_LENGTH} characters`);
  } else if (providers.ids.includes(input.provider)) {
    // The field is named, the configured ids are not: validation runs before the caller policy,
    // so listing them would tell any authenticated caller every downstream of every provider.
    if (!(providers.downstreams?.[input.provider] ?? []).includes(req.downstream)) {
      v.add('downstream', `unknown downstream ${quote(req.downstream)} of provider ${quote(input.provider)}`);
    }
  }
  v.throwIfAny();
  return input;
}
