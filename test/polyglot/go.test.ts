import assert from 'node:assert/strict';
import { startPolyglotBroker, PROVIDER, type PolyglotBroker } from './broker.js';
import { buildGoClient, runClient } from './toolchain.js';

describe('Go client (examples/go, GOPATH build against Debian grpc-go, stubs from protoc-gen-go)', function () {
  this.timeout(180_000);
  let broker: PolyglotBroker | undefined;
  let client = '';

  before(async () => {
    // A cold build of grpc-go takes ~30 s on 2 cores; .tmp/go-cache makes reruns fast.
    client = await buildGoClient();
    broker = await startPolyglotBroker();
  });
  after(async () => {
    await broker?.stop();
  });

  const go = (args: readonly string[]) => runClient(client, ['-target', broker!.address, ...args]);

  it('gets the stored token for a user', async () => {
    const run = await go(['-user-id', broker!.userId, '-provider', PROVIDER]);
    assert.equal(run.exitCode, 0, run.stderr);
    assert.equal(run.output.outcome, 'token');
    assert.equal(run.output.tokenSha256, broker!.tokenSha256);
    assert.equal(run.output.tokenType, 'Bearer');
    assert.equal(run.output.source, 'TOKEN_SOURCE_STORED');
    assert.equal(new Date(run.output.expiresAt as string).getTime(), broker!.expiresAt.getTime());
  });

  it('decodes REAUTH_REQUIRED with cause NO_TOKEN from the grpc-status-details-bin trailer', async () => {
    const run = await go(['-user-id', 'nobody', '-provider', PROVIDER]);
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

  it('reports INVALID_REQUEST as a non-retryable error', async () => {
    const run = await go(['-user-id', broker!.userId, '-provider', 'unknown-provider']);
    assert.equal(run.exitCode, 1, run.stderr);
    assert.equal(run.output.outcome, 'error');
    assert.equal(run.output.code, 'INVALID_ARGUMENT');
    assert.equal(run.output.reason, 'INVALID_REQUEST');
  });
});
