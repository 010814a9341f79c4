/**
 * Token records and login state to sealed bytes and back. Token records are protobuf
 * `credbroker.store.v1.StoredToken` sealed under the key ring's active key; login state is
 * sealed under a key derived from the state itself (HKDF-SHA256, RFC 5869), so it works with
 * storage disabled and whoever reads the store without the state learns nothing.
 */
import { createHash, hkdfSync } from 'node:crypto';
import { reauthRequired, type BrokerError, type SubjectRef } from '../core/errors.js';
import { ObtainedVia, StoredToken } from '../gen/credbroker/store/v1/stored_token.js';
import { EnvelopeError, open, seal, type EnvelopeContext } from './envelope.js';
import type { KeyRing, RingKey } from './key-ring.js';
import type { LoginState, TokenRecord } from '../core/token-store.js';

const TOKEN_PURPOSE = 'token';
const LOGIN_PURPOSE = 'login';
const LOGIN_KEY_ID = 'state';

/** A downstream record's envelope also binds the downstream id: it cannot pass for another's. */
const DOWNSTREAM_PURPOSE = 'downstream:';

function tokenContext(ref: SubjectRef): EnvelopeContext {
  const purpose = ref.downstream === undefined ? TOKEN_PURPOSE : `${DOWNSTREAM_PURPOSE}${ref.downstream}`;
  return { purpose, provider: ref.provider, userId: ref.userId };
}

const obtainedVia = {
  login: ObtainedVia.OBTAINED_VIA_LOGIN,
  refresh: ObtainedVia.OBTAINED_VIA_REFRESH,
  exchange: ObtainedVia.OBTAINED_VIA_EXCHANGE,
} as const satisfies Record<TokenRecord['obtainedVia'], ObtainedVia>;

export function encodeRecord(record: TokenRecord): Uint8Array {
  return StoredToken.encode({
    accessToken: record.accessToken,
    refreshToken: record.refreshToken ?? '',
    tokenType: record.tokenType,
    expiresAt: new Date(record.expiresAt),
    refreshExpiresAt: record.refreshExpiresAt === undefined ? undefined : new Date(record.refreshExpiresAt),
    scopes: [...record.scopes],
    idToken: record.idToken ?? '',
    obtainedVia: obtainedVia[record.obtainedVia],
    updatedAt: new Date(record.updatedAt),
    generation: record.generation,
    subject: record.subject ?? '',
    issuedTokenType: record.issuedTokenType ?? '',
    loginEpoch: record.loginEpoch ?? 0,
  }).finish();
}

/** @throws Error when the bytes are not a complete StoredToken */
export function decodeRecord(bytes: Uint8Array): TokenRecord {
  const m = StoredToken.decode(bytes);
  if (m.expiresAt === undefined || m.updatedAt === undefined) throw new Error('record lacks expiry');
  const via = (Object.keys(obtainedVia) as TokenRecord['obtainedVia'][]).find(
    (name) => obtainedVia[name] === m.obtainedVia,
  );
  if (via === undefined) throw new Error('record lacks obtained_via');
  return {
    accessToken: m.accessToken,
    refreshToken: m.refreshToken === '' ? undefined : m.refreshToken,
    tokenType: m.tokenType,
    expiresAt: m.expiresAt.getTime(),
    refreshExpiresAt: m.refreshExpiresAt?.getTime(),
    scopes: m.scopes,
    idToken: m.idToken === '' ? undefined : m.idToken,
    obtainedVia: via,
    updatedAt: m.updatedAt.getTime(),
    generation: m.generation,
    subject: m.subject === '' ? undefined : m.subject,
    ...(m.issuedTokenType === '' ? {} : { issuedTokenType: m.issuedTokenType }),
    ...(m.loginEpoch === 0 ? {} : { loginEpoch: m.loginEpoch }),
  };
}

/** Seals a record for `ref` under `key` (the ring's active key unless re-sealing in a test). */
export function sealRecord(key: RingKey, ref: SubjectRef, record: TokenRecord): Buffer {
  return seal(key, tokenContext(ref), encodeRecord(record));
}

export interface OpenedRecord {
  readonly record: TokenRecord;
  /** The key that opened it; differs from the active key until the record is re-sealed. */
  readonly keyId: string;
}

/**
 * Opens a sealed record stored for `ref`.
 * @param generation the generation stored beside the envelope, when the backend keeps one: a
 *   mismatch with the sealed generation is treated as tampering
 * @throws BrokerError REAUTH_REQUIRED / UNDECRYPTABLE, with the EnvelopeError as internal cause
 */
export function openRecord(
  ring: KeyRing,
  ref: SubjectRef,
  sealed: Uint8Array,
  generation?: number,
): OpenedRecord {
  let opened: { plaintext: Buffer; keyId: string };
  try {
    opened = open(ring, tokenContext(ref), sealed);
  } catch (err) {
    throw undecryptable(ref, err);
  }
  let record: TokenRecord;
  try {
    record = decodeRecord(opened.plaintext);
  } catch (err) {
    throw undecryptable(
      ref,
      new EnvelopeError('PLAINTEXT', `sealed record is not a StoredToken (${(err as Error).message})`),
    );
  }
  if (generation !== undefined && record.generation !== generation) {
    throw undecryptable(ref, new EnvelopeError('PLAINTEXT', 'sealed generation differs from the stored one'));
  }
  return { record, keyId: opened.keyId };
}

export function undecryptable(ref: SubjectRef, cause: unknown): BrokerError {
  return reauthRequired('UNDECRYPTABLE', ref, cause);
}

/** The store key of a login state: SHA-256(state), hex. The state itself is never stored. */
export function loginStateId(state: string): string {
  return createHash('sha256').update(state, 'utf8').digest('hex');
}

function loginKey(state: string): RingKey {
  const key = Buffer.from(hkdfSync('sha256', Buffer.from(state, 'utf8'), 'credbroker:v1', 'login-state', 32));
  return { id: LOGIN_KEY_ID, key };
}

function loginContext(state: string): EnvelopeContext {
  return { purpose: LOGIN_PURPOSE, provider: '', userId: loginStateId(state) };
}

export function sealLoginState(state: string, value: LoginState): Buffer {
  const json = JSON.stringify({
    provider: value.provider,
    redirectUri: value.redirectUri,
    codeVerifier: value.codeVerifier,
    nonce: value.nonce,
    scopes: value.scopes,
    createdAt: value.createdAt,
  });
  return seal(loginKey(state), loginContext(state), Buffer.from(json, 'utf8'));
}

/** @returns undefined when the bytes do not open under this state (treated as unknown state) */
export function openLoginState(state: string, sealed: Uint8Array): LoginState | undefined {
  const key = loginKey(state);
  try {
    const { plaintext } = open(
      { get: (id) => (id === key.id ? key : undefined) },
      loginContext(state),
      sealed,
    );
    return JSON.parse(plaintext.toString('utf8')) as LoginState;
  } catch {
    return undefined;
  }
}
