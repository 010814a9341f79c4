import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { BrokerError, ErrorReason, ReauthCause, reauthRequired } from '../../src/core/errors.js';
import { ErrorReason as ProtoReason, ReauthCause as ProtoCause } from '../../src/gen/credbroker/v1/errors.js';
import { ErrorInfo, RetryInfo } from '../../src/gen/google/rpc/error_details.js';
import { Status } from '../../src/gen/google/rpc/status.js';
import { toServiceError } from '../../src/server/errors.js';

function detailsOf(err: BrokerError | Error) {
  const serviceError = toServiceError(err);
  const status = Status.decode(serviceError.metadata!.get('grpc-status-details-bin')[0] as Buffer);
  return { serviceError, status };
}

describe('error model', () => {
  it('keeps the domain reasons and causes equal to the proto enums', () => {
    const protoReasons = Object.keys(ProtoReason).filter(
      (k) => Number.isNaN(Number(k)) && k !== 'ERROR_REASON_UNSPECIFIED' && k !== 'UNRECOGNIZED',
    );
    assert.deepEqual([...protoReasons].sort(), Object.values(ErrorReason).sort());
    const protoCauses = Object.keys(ProtoCause).filter(
      (k) => Number.isNaN(Number(k)) && k !== 'REAUTH_CAUSE_UNSPECIFIED' && k !== 'UNRECOGNIZED',
    );
    assert.deepEqual([...protoCauses].sort(), Object.values(ReauthCause).sort());
  });

  it('maps REAUTH_REQUIRED to FAILED_PRECONDITION with one ErrorInfo', () => {
    const { serviceError, status: st } = detailsOf(
      reauthRequired('NO_TOKEN', { provider: 'corp', userId: 'u1' }),
    );
    assert.equal(serviceError.code, status.FAILED_PRECONDITION);
    assert.equal(st.code, status.FAILED_PRECONDITION);
    assert.equal(st.details.length, 1);
    const info = ErrorInfo.decode(st.details[0]!.value);
    assert.deepEqual(info, {
      reason: 'REAUTH_REQUIRED',
      domain: 'credbroker.v1',
      metadata: { cause: 'NO_TOKEN', provider: 'corp', userId: 'u1' },
    });
  });

  it('adds RetryInfo to every UNAVAILABLE, honouring retryAfterMs', () => {
    const { status: st } = detailsOf(new BrokerError('IDP_UNAVAILABLE', 'idp down', { retryAfterMs: 2500 }));
    const retry = st.details.find((d) => d.typeUrl.endsWith('RetryInfo'));
    assert.ok(retry);
    assert.deepEqual(RetryInfo.decode(retry.value).retryDelay, { seconds: 2, nanos: 500_000_000 });
    const store = detailsOf(new BrokerError('STORE_UNAVAILABLE', 'store down'));
    assert.ok(store.status.details.some((d) => d.typeUrl.endsWith('RetryInfo')));
  });

  it('turns any other error into INTERNAL without its message', () => {
    const { serviceError, status: st } = detailsOf(new Error('db password is hunter2'));
    assert.equal(serviceError.code, status.INTERNAL);
    assert.equal(serviceError.details, 'internal error');
    assert.ok(!JSON.stringify(st).includes('hunter2'));
    assert.equal(ErrorInfo.decode(st.details[0]!.value).reason, 'INTERNAL_ERROR');
  });
});
