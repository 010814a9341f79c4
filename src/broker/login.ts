/**
 * StartLogin and CompleteLogin (docs/architecture.md §2): the authorization-code flow with PKCE (RFC 7636,
 * S256) and an OIDC nonce, the login state kept in the shared store (single use, bound to the
 * provider and redirect_uri), the code exchange and ID-token verification by the IdP client,
 * and — when storage is on — capture of the user's tokens, best-effort.
 *
 * Nothing here logs or returns a code, verifier, nonce, state or token.
 */
import { createHash, randomBytes } from 'node:crypto';
import { IdpError, type IdpClient, type IdpRegistry, type TokenSet } from '../core/idp-client.js';
import { hashUserId, type Logger } from '../logger.js';
import type { Identity } from '../core/identity.js';
import type { LoginState, TokenStore } from '../core/token-store.js';
import type {
  BrokerApi,
  CallContext,
  CompleteLoginInput,
  CompleteLoginResult,
  StartLoginInput,
  StartLoginResult,
  StorageOutcome,
} from './api.js';
import { BrokerError, ErrorReason, invalidRequest, type SubjectRef } from '../core/errors.js';
import { noopBrokerMetrics, type BrokerMetrics } from './metrics.js';
import { recordTtlMs } from './merge.js';
import { loginRecord } from './token-set.js';

/** 32 random bytes: state, nonce and PKCE verifier each carry 256 bits (RFC 7636 §7.1). */
const RANDOM_BYTES = 32;

/** ErrorInfo.metadata.cause on LOGIN_REJECTED when the IdP's answer failed verification. */
export const INVALID_IDP_RESPONSE = 'INVALID_IDP_RESPONSE';

export interface LoginFlowOptions {
  readonly store: TokenStore;
  readonly idps: IdpRegistry;
  /** Capture tokens at login: `store.subject_tokens` is on AND a key ring is configured. */
  readonly storageEnabled: boolean;
  /** How long StartLogin's state stays valid, ms (`store.login_state_ttl`, default 10 min). */
  readonly loginStateTtlMs: number;
  /** Lifetime of a record whose refresh token has no known expiry, ms (`store.max_record_ttl`). */
  readonly maxRecordTtlMs: number;
  /** Epoch-ms time source; default Date.now. */
  readonly clock?: { now(): number };
  /** Fallback logger; calls log through `ctx.logger`. */
  readonly logger: Logger;
  readonly metrics?: BrokerMetrics;
}

export type LoginFlow = Pick<BrokerApi, 'startLogin' | 'completeLogin'>;

function random(): string {
  return randomBytes(RANDOM_BYTES).toString('base64url');
}

/** RFC 7636 §4.2: code_challenge = BASE64URL(SHA256(ASCII(code_verifier))). */
export function pkceChallenge(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}

/** RFC 6749 §3.1.2.2–3: the redirect_uri must match a registered one exactly. */
function requireAllowedRedirect(idp: IdpClient, redirectUri: string): void {
  if (!idp.redirectUris.includes(redirectUri)) {
    throw invalidRequest([
      { field: 'redirect_uri', description: `not in the redirect_uris allowlist of provider ${idp.id}` },
    ]);
  }
}

const stateInvalid = (provider: string, why: string): BrokerError =>
  new BrokerError(
    ErrorReason.LOGIN_STATE_INVALID,
    'the login state is unknown, expired, already used, or does not match this provider and redirect_uri',
    { metadata: { provider }, cause: new Error(why) },
  );

function idpUnavailable(provider: string, err: IdpError): BrokerError {
  return new BrokerError(ErrorReason.IDP_UNAVAILABLE, `identity provider ${provider} is unavailable`, {
    metadata: { provider },
    ...(err.retryAfterMs === undefined ? {} : { retryAfterMs: err.retryAfterMs }),
    cause: err,
  });
}

/** Maps an IdP failure at CompleteLogin: rejected → LOGIN_REJECTED, unavailable → IDP_UNAVAILABLE. */
function loginError(provider: string, err: unknown): unknown {
  if (!(err instanceof IdpError)) return err;
  if (err.kind === 'unavailable') return idpUnavailable(provider, err);
  if (err.invalidResponse) {
    return new BrokerError(
      ErrorReason.LOGIN_REJECTED,
      "the identity provider's response failed verification (ID token signature, issuer, audience, expiry or nonce)",
      { metadata: { provider, cause: INVALID_IDP_RESPONSE }, cause: err },
    );
  }
  return new BrokerError(
    ErrorReason.LOGIN_REJECTED,
    'the identity provider rejected the authorization code',
    {
      metadata: { provider, idpError: err.oauthError ?? 'unknown' },
      cause: err,
    },
  );
}

/**
 * Creates StartLogin and CompleteLogin over a store and the IdP registry. Compose into the
 * BrokerApi: `{ ...otherOperations, ...createLoginFlow(options) }`.
 */
export function createLoginFlow(options: LoginFlowOptions): LoginFlow {
  const { store, idps, storageEnabled, loginStateTtlMs, maxRecordTtlMs } = options;
  const now = () => (options.clock ? options.clock.now() : Date.now());
  const metrics = options.metrics ?? noopBrokerMetrics;

  /**
   * Persists the login's tokens under (provider, userId). Best-effort (docs/architecture.md §2): a store
   * failure is logged and reported as FAILED, never thrown.
   */
  async function capture(
    ref: SubjectRef,
    tokens: TokenSet,
    identity: Identity,
    requestedScopes: readonly string[],
    log: Logger,
  ): Promise<StorageOutcome> {
    if (!storageEnabled) return 'DISABLED';
    const subject = identity.subject === '' ? undefined : identity.subject;
    try {
      // A re-login that returned no refresh token keeps the stored one, but only for the same
      // IdP subject: never hand one person's refresh token to another's login.
      let previous;
      if ((tokens.refreshToken ?? '') === '' && subject !== undefined) {
        previous = await store.getToken(ref, { fresh: true }).catch((err: unknown) => {
          log.warn({ err }, 'reading the previous record for a re-login failed; storing without it');
          return undefined;
        });
      }
      const at = now();
      const record = loginRecord({ tokens, subject, requestedScopes, previous, now: at });
      await store.putToken(ref, record, recordTtlMs(record, at, maxRecordTtlMs));
      return 'STORED';
    } catch (err) {
      metrics.storeError('put');
      log.error({ err }, 'storing the subject token at login failed; the login succeeds without it');
      return 'FAILED';
    }
  }

  return {
    async startLogin(input: StartLoginInput, ctx: CallContext): Promise<StartLoginResult> {
      const idp = idps.get(input.provider);
      requireAllowedRedirect(idp, input.redirectUri);
      const state = random();
      const nonce = random();
      const codeVerifier = random();
      const scopes = union(idp.scopes, input.scopes);
      let authorizationUrl: string;
      try {
        authorizationUrl = await idp.authorizationUrl({
          redirectUri: input.redirectUri,
          scopes,
          state,
          nonce,
          codeChallenge: pkceChallenge(codeVerifier),
          loginHint: input.loginHint,
          offline: storageEnabled,
        });
      } catch (err) {
        if (err instanceof IdpError) throw idpUnavailable(idp.id, err);
        throw err;
      }
      const createdAt = now();
      const login: LoginState = {
        provider: idp.id,
        redirectUri: input.redirectUri,
        codeVerifier,
        nonce,
        scopes,
        createdAt,
      };
      await store.putLoginState(state, login, loginStateTtlMs);
      ctx.logger.debug({ provider: idp.id }, 'login started');
      return { authorizationUrl, state, expiresAt: new Date(createdAt + loginStateTtlMs) };
    },

    async completeLogin(input: CompleteLoginInput, ctx: CallContext): Promise<CompleteLoginResult> {
      const idp = idps.get(input.provider);
      requireAllowedRedirect(idp, input.redirectUri);
      if (storageEnabled && !idp.providesSubject && input.userId === undefined) {
        throw invalidRequest([
          {
            field: 'user_id',
            description: `required: provider ${idp.id} returns no user identity (plain OAuth 2.0) and token storage is on`,
          },
        ]);
      }

      let codeVerifier: string;
      let nonce: string | undefined;
      let scopes: readonly string[];
      if (input.state !== undefined) {
        // Consumed before the exchange: single use even when the exchange then fails.
        const login = await store.consumeLoginState(input.state);
        if (login === undefined) throw stateInvalid(idp.id, 'unknown, expired or already used');
        if (login.provider !== idp.id) throw stateInvalid(idp.id, 'issued for another provider');
        if (login.redirectUri !== input.redirectUri)
          throw stateInvalid(idp.id, 'issued for another redirect_uri');
        codeVerifier = login.codeVerifier;
        nonce = login.nonce;
        scopes = login.scopes;
      } else {
        // A front end that ran its own PKCE (and nonce) hands them over instead of a state.
        codeVerifier = input.codeVerifier ?? '';
        nonce = input.nonce;
        scopes = idp.scopes;
      }

      let result: Awaited<ReturnType<IdpClient['exchangeCode']>>;
      try {
        result = await idp.exchangeCode(
          {
            code: input.code,
            redirectUri: input.redirectUri,
            codeVerifier,
            nonce: idp.oidc ? nonce : undefined,
            state: input.state,
          },
          ctx.signal,
        );
      } catch (err) {
        const mapped = loginError(idp.id, err);
        if (mapped instanceof BrokerError) {
          ctx.logger.info(
            {
              provider: idp.id,
              reason: mapped.reason,
              idpError: mapped.metadata.idpError,
              err: mapped.cause,
            },
            'login failed at the identity provider',
          );
        }
        throw mapped;
      }
      const { tokens, identity } = result;
      const userId = input.userId ?? identity.subject;
      const ref: SubjectRef = { provider: idp.id, userId };
      const log = ctx.logger.child({ provider: idp.id, userIdHash: hashUserId(userId) });
      const storage = await capture(ref, tokens, identity, scopes, log);
      log.info({ storage }, 'login completed');
      return {
        userId,
        identity,
        storage,
        accessTokenExpiresAt: new Date(tokens.expiresAt),
        scopes: tokens.scopes ?? scopes,
      };
    },
  };
}
