/**
 * The behaviour every polyglot example client must show against a real broker: the seeded
 * token, a decoded REAUTH_REQUIRED with its cause, a non-retryable INVALID_REQUEST, and
 * STORE_UNAVAILABLE decoded with its RetryInfo and retried. Shared by python.test.ts and go.test.ts.
 */
import assert from 'node:assert/strict';
import { EXPIRING_USER, startPolyglotBroker, PROVIDER, type PolyglotBroker } from './broker.js';
import type { ClientRun } from './toolchain.js';

export interface ClientArgs {
  readonly target: string;
  readonly userId: string;
  readonly provider: string;
  readonly attempts?: number;
}

/** Builds the client once; returns how to run it. */
export type BuildClient = () => Promise<(args: ClientArgs) => Promise<ClientRun>>;

export function clientSuite(build: BuildClient): void {
  let broker: PolyglotBroker | undefined;
  let client: (args: ClientArgs) => Promise<ClientRun>;

  before(async () => {
    client = await build();
    broker = await startPolyglotBroker();
  });
  after(async () => {
    await broker?.stop();
  });

  const call = (userId: string, provider = PROVIDER, attempts?: number) =>
    client({ target: broker!.address, userId, provider, ...(attempts === undefined ? {} : { attempts }) });

  it('gets the stored token for a user', async () => {
    const run = await call(broker!.userId);
    assert.equal(run.exitCode, 0, run.stderr);
    assert.equal(run.output.outcome, 'token');
    assert.equal(run.output.tokenSha256, broker!.tokenSha256);
    assert.equal(run.output.tokenType, 'Bearer');
    assert.equal(run.output.source, 'TOKEN_SOURCE_STORED');
    assert.deepEqual(run.output.scopes, ['openid', 'profile']);
    assert.equal(new Date(run.output.expiresAt as string).getTime(), broker!.expiresAt.getTime());
  });

  it('decodes REAUTH_REQUIRED with cause NO_TOKEN from the grpc-status-details-bin trailer', async () => {
    const run = await call('nobody');
    assert.equal(run.exitCode, 2, run.stderr);
    assert.deepEqual(run.output, {
      outcome: 'reauth',
      code: 'FAILED_PRECONDITION',
      reason: 'REAUTH_REQUIRED',
      cause: 'NO_TOKEN',
      causeIsKnown: true,
      provider: PROVIDER,
      userId: 'nobody',
    });
  });

  it('decodes cause NO_REFRESH_TOKEN for a token inside the skew without a refresh token', async () => {
    const run = await call(EXPIRING_USER);
    assert.equal(run.exitCode, 2, run.stderr);
    assert.equal(run.output.reason, 'REAUTH_REQUIRED');
    assert.equal(run.output.cause, 'NO_REFRESH_TOKEN');
    assert.equal(run.output.causeIsKnown, true);
    assert.equal(run.output.userId, EXPIRING_USER);
  });

  it('reports INVALID_REQUEST as a non-retryable error', async () => {
    const run = await call(broker!.userId, 'unknown-provider');
    assert.equal(run.exitCode, 1, run.stderr);
    assert.equal(run.output.outcome, 'error');
    assert.equal(run.output.code, 'INVALID_ARGUMENT');
    assert.equal(run.output.reason, 'INVALID_REQUEST');
  });

  // Last: it takes Redis down for the rest of the suite.
  it('decodes STORE_UNAVAILABLE with its RetryInfo and retries after the delay', async () => {
    await broker!.redis.stop();
    const unavailable = () => broker!.server.logs.records().filter((r) => r.reason === 'STORE_UNAVAILABLE');
    const before = unavailable().length;
    const run = await call(broker!.userId, PROVIDER, 2);
    assert.equal(run.exitCode, 3, run.stderr);
    assert.equal(run.output.outcome, 'retryable');
    assert.equal(run.output.code, 'UNAVAILABLE');
    assert.equal(run.output.reason, 'STORE_UNAVAILABLE');
    assert.equal(run.output.retryDelaySeconds, 1);
    const calls = unavailable().slice(before);
    assert.equal(calls.length, 2, 'the client called twice: once, then once after RetryInfo');
    // The broker logs each call when it ends; the retry started at least RetryInfo's 1 s later.
    const [first, second] = calls as { time: string; durationMs: number }[];
    const retryStart = Date.parse(second!.time) - second!.durationMs;
    assert.ok(retryStart - Date.parse(first!.time) >= 950, 'the retry waited for retry_delay (1 s)');
  });
}
