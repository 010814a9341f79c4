import type { BrokerApi } from '../../src/broker/api.js';
import { BrokerError, ErrorReason } from '../../src/core/errors.js';

function notImplemented(rpc: string): () => Promise<never> {
  return () => Promise.reject(new BrokerError(ErrorReason.NOT_IMPLEMENTED, `${rpc} is not implemented yet`));
}

/**
 * The API before an operation is built: every call answers UNIMPLEMENTED (with an ErrorInfo),
 * never a fake success. Compose with real operations: `{ ...notImplementedApi, startLogin }`.
 */
export const notImplementedApi: BrokerApi = {
  startLogin: notImplemented('StartLogin'),
  completeLogin: notImplemented('CompleteLogin'),
  getValidSubjectToken: notImplemented('GetValidSubjectToken'),
  revokeSubjectToken: notImplemented('RevokeSubjectToken'),
};
