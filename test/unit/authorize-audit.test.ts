import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { hashUserId } from '../../src/logger.js';
import type { CallOutcome } from '../../src/server/call.js';
import { auditObserver, createAuditLog } from '../../src/server/security/audit.js';
import { captureLogs } from '../helpers/log-capture.js';

const base: CallOutcome = {
  rpc: 'GetValidSubjectToken',
  code: status.OK,
  reason: undefined,
  metadata: {},
  durationMs: 1,
  provider: 'corp',
  userId: 'alice@example.com',
  requestId: 'req-1',
  caller: 'orders-service',
};

describe('audit log', () => {
  it('writes one line per event under the logger name "audit", even when the service logs only warnings', () => {
    const logs = captureLogs('warn');
    createAuditLog(logs.logger).record({
      event: 'refresh',
      outcome: 'rejected',
      cause: 'invalid_grant',
      provider: 'corp',
      userId: 'alice@example.com',
      rpc: 'GetValidSubjectToken',
      requestId: 'req-9',
    });
    const [line, ...rest] = logs.records();
    assert.deepEqual(rest, []);
    assert.equal(line!.name, 'audit');
    assert.equal(line!.level, 'info');
    assert.equal(line!.event, 'refresh');
    assert.equal(line!.outcome, 'rejected');
    assert.equal(line!.cause, 'invalid_grant');
    assert.equal(line!.user, hashUserId('alice@example.com'));
    assert.ok(!logs.text().includes('alice@example.com'));
  });

  it('is silent only when the service log is silent', () => {
    const logs = captureLogs('silent');
    createAuditLog(logs.logger).record({ event: 'revoke', outcome: 'ok' });
    assert.deepEqual(logs.lines, []);
  });

  it('maps call outcomes to events: releases, failures with their reason and cause, denials with the caller', () => {
    const logs = captureLogs();
    const observe = auditObserver(createAuditLog(logs.logger));
    observe(base);
    observe({
      ...base,
      code: status.FAILED_PRECONDITION,
      reason: 'REAUTH_REQUIRED',
      metadata: { cause: 'NO_TOKEN' },
    });
    observe({ ...base, rpc: 'CompleteLogin', caller: 'web-login' });
    observe({
      ...base,
      rpc: 'StartLogin',
      code: status.PERMISSION_DENIED,
      reason: 'CALLER_FORBIDDEN',
      caller: undefined,
      metadata: { cause: 'RPC_NOT_ALLOWED', caller: 'orders-service' },
    });
    const events = logs.records().map((r) => [r.event, r.outcome, r.cause, r.caller, r.rpc, r.requestId]);
    assert.deepEqual(events, [
      ['token_release', 'ok', undefined, 'orders-service', 'GetValidSubjectToken', 'req-1'],
      ['token_release', 'REAUTH_REQUIRED', 'NO_TOKEN', 'orders-service', 'GetValidSubjectToken', 'req-1'],
      ['login_complete', 'ok', undefined, 'web-login', 'CompleteLogin', 'req-1'],
      ['denied', 'CALLER_FORBIDDEN', 'RPC_NOT_ALLOWED', 'orders-service', 'StartLogin', 'req-1'],
    ]);
  });
});
