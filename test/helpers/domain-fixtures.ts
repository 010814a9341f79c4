/** Shared fixtures for unit tests of the domain (token service, refresh, revoke). */
import assert from 'node:assert/strict';
import type { CallContext } from '../../src/broker/api.js';
import { BrokerError } from '../../src/core/errors.js';
import { createLogger } from '../../src/logger.js';

export const MIN = 60_000;
export const DAY = 24 * 60 * MIN;

/** The IdpClient members that tests of the token service do not exercise. */
export const idpBasics = {
  id: 'corp',
  redirectUris: ['https://app.example.com/cb'],
  scopes: ['openid'],
  oidc: true,
  providesSubject: true,
  authorizationUrl: () => Promise.reject(new Error('not used')),
  exchangeCode: () => Promise.reject(new Error('not used')),
};

/** A call context as the transport would give it: silent logger, optional deadline and signal. */
export function callContext(deadline = Infinity, signal = new AbortController().signal): CallContext {
  return { deadline, signal, logger: createLogger({ level: 'silent' }), requestId: 'req', caller: undefined };
}

/** Awaits a promise expected to reject with a BrokerError; returns it. */
export async function brokerError(promise: Promise<unknown>): Promise<BrokerError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof BrokerError, `expected a BrokerError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}
