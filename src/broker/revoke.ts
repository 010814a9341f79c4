/**
 * RevokeSubjectToken: deletes a user's record, leaving a tombstone so that a refresh finishing
 * concurrently cannot resurrect it (its fenced write fails), and optionally revokes the grant at
 * the IdP (RFC 7009) best-effort. Idempotent: revoking nothing succeeds with `deleted: false`.
 */
import type { IdpRegistry } from '../core/idp-client.js';
import type { TokenRecord, TokenStore } from '../core/token-store.js';
import type { RevokeInput, RevokeResult } from './api.js';
import { isBrokerError, ErrorReason, type SubjectRef } from '../core/errors.js';
import type { BrokerMetrics } from './metrics.js';
import { countStoreErrors } from './refresh.js';

/** Attempts to delete exactly the record that was read before falling back to an unconditional delete. */
const DELETE_ATTEMPTS = 3;

export interface RevokeOptions {
  readonly store: TokenStore;
  readonly idps: IdpRegistry;
  readonly storageEnabled: boolean;
  readonly metrics: BrokerMetrics;
}

/** @throws BrokerError STORE_UNAVAILABLE (nothing is reported deleted unless it was) */
export async function revokeSubjectToken(options: RevokeOptions, input: RevokeInput): Promise<RevokeResult> {
  const { idps, storageEnabled, metrics } = options;
  const store = countingStore(options.store, metrics);
  const ref: SubjectRef = { provider: input.provider, userId: input.userId };
  const idp = idps.get(input.provider);
  if (!storageEnabled) {
    return { deleted: false, idpRevocation: input.revokeAtIdp ? 'NOT_SUPPORTED' : 'NOT_REQUESTED' };
  }
  if (!input.revokeAtIdp) {
    const deleted = await store.deleteToken(ref);
    await deleteDownstreamTokens(store, ref, idp.downstreams ?? []);
    return { deleted, idpRevocation: 'NOT_REQUESTED' };
  }

  const { deleted, record } = await deleteWhatWasRead(store, ref);
  const downstreamTokens = await readDownstreamTokens(store, ref, idp.downstreams ?? []);
  await deleteDownstreamTokens(store, ref, idp.downstreams ?? []);
  // The downstream tokens too, best effort: an IdP that ties exchanged tokens to the grant drops
  // them with it anyway, and one that issued them as JWTs cannot revoke them (they expire with
  // their short lifetime). They are revoked with the provider's client; a downstream configured
  // with a client of its own may be refused that (logged by the IdP client). Not in the result.
  const downstreamRevocations = Promise.all(
    downstreamTokens.map((token) => idp.revoke(token, 'access_token')),
  );
  if (record === undefined) {
    await downstreamRevocations;
    return { deleted, idpRevocation: 'NOT_SUPPORTED' };
  }
  // RFC 7009 §2: revoking the refresh token also invalidates the grant's access tokens at most
  // IdPs; without one, revoke the access token.
  const [idpRevocation] = await Promise.all([
    record.refreshToken !== undefined && record.refreshToken !== ''
      ? idp.revoke(record.refreshToken, 'refresh_token')
      : idp.revoke(record.accessToken, 'access_token'),
    downstreamRevocations,
  ]);
  return { deleted, idpRevocation };
}

/**
 * The access tokens of the user's cached downstream tokens, to revoke at the IdP. A record that
 * cannot be opened, or a read that fails, only means that one is not revoked (it is deleted).
 */
async function readDownstreamTokens(
  store: Pick<TokenStore, 'getToken'>,
  ref: SubjectRef,
  downstreams: readonly string[],
): Promise<string[]> {
  const records = await Promise.all(
    downstreams.map((downstream) => store.getToken({ ...ref, downstream }).catch(() => undefined)),
  );
  return records.flatMap((r) => (r === undefined || r.accessToken === '' ? [] : [r.accessToken]));
}

/**
 * Deletes (with tombstone) the user's cached token of every configured downstream, after the
 * subject record. An exchange in flight cannot write afterwards: its write is one atomic store
 * step that requires the subject record with the login epoch it exchanged under
 * (TokenStore.putDownstreamToken), and a deleted one has none.
 */
async function deleteDownstreamTokens(
  store: Pick<TokenStore, 'deleteToken'>,
  ref: SubjectRef,
  downstreams: readonly string[],
): Promise<void> {
  await Promise.all(downstreams.map((downstream) => store.deleteToken({ ...ref, downstream })));
}

/** The store operations revoke uses, each counted in the store-errors metric when it fails. */
function countingStore(
  store: TokenStore,
  metrics: BrokerMetrics,
): Pick<TokenStore, 'getToken' | 'deleteToken' | 'deleteTokenIfGeneration'> {
  return {
    getToken: (ref) => countStoreErrors(metrics, 'get', store.getToken(ref)),
    deleteToken: (ref) => countStoreErrors(metrics, 'delete', store.deleteToken(ref)),
    deleteTokenIfGeneration: (ref, generation) =>
      countStoreErrors(metrics, 'delete', store.deleteTokenIfGeneration(ref, generation)),
  };
}

/**
 * Deletes the record it read (by generation), so the token revoked at the IdP is the one that was
 * deleted even if a refresh rotated it in between. An undecryptable record is deleted with
 * nothing to revoke.
 */
async function deleteWhatWasRead(
  store: Pick<TokenStore, 'getToken' | 'deleteToken' | 'deleteTokenIfGeneration'>,
  ref: SubjectRef,
): Promise<{ deleted: boolean; record: TokenRecord | undefined }> {
  for (let attempt = 0; attempt < DELETE_ATTEMPTS; attempt++) {
    let record: TokenRecord | undefined;
    try {
      record = await store.getToken(ref);
    } catch (err) {
      if (isBrokerError(err, ErrorReason.REAUTH_REQUIRED)) {
        return { deleted: await store.deleteToken(ref), record: undefined };
      }
      throw err;
    }
    if (record === undefined) return { deleted: await store.deleteToken(ref), record: undefined };
    if (await store.deleteTokenIfGeneration(ref, record.generation)) return { deleted: true, record };
  }
  return { deleted: await store.deleteToken(ref), record: undefined };
}
