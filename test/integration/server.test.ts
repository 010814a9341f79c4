import assert from 'node:assert/strict';
import {
  Client,
  credentials,
  loadPackageDefinition,
  Metadata,
  status,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { BrokerApi } from '../../src/broker/api.js';
import { notImplementedApi } from '../helpers/not-implemented.js';
import { checkHealth } from '../../src/cli/healthcheck.js';
import { GetValidSubjectTokenRequest } from '../../src/gen/credbroker/v1/broker.js';
import { call, callError, decodeError } from '../helpers/grpc.js';
import { CORP_PROVIDER_YAML, startTestServer, type TestServer } from '../helpers/server.js';
import { waitUntil } from '../helpers/wait.js';

const require = createRequire(import.meta.url);

describe('BrokerServer', () => {
  let ts: TestServer | undefined;
  afterEach(async () => {
    await ts?.stop();
    ts = undefined;
  });

  const provider = CORP_PROVIDER_YAML;

  it('answers health Check SERVING for "" and the API service, on both ports', async () => {
    ts = await startTestServer();
    for (const address of [ts.address, ts.healthAddress!]) {
      assert.equal(await checkHealth({ address, service: '', timeoutMs: 2000 }), 'SERVING');
      assert.equal(
        await checkHealth({ address, service: 'credbroker.v1.CredentialBroker', timeoutMs: 2000 }),
        'SERVING',
      );
    }
    await assert.rejects(checkHealth({ address: ts.address, service: 'nope', timeoutMs: 2000 }), {
      code: status.NOT_FOUND,
    });
  });

  it('lists credbroker.v1.CredentialBroker through server reflection', async () => {
    ts = await startTestServer();
    const protoRoot = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto');
    const definition = loadSync('grpc/reflection/v1/reflection.proto', { includeDirs: [protoRoot] });
    const pkg = loadPackageDefinition(definition) as unknown as {
      grpc: {
        reflection: {
          v1: {
            ServerReflection: new (
              a: string,
              c: unknown,
            ) => {
              serverReflectionInfo(): NodeJS.EventEmitter & { write(x: unknown): void; end(): void };
              close(): void;
            };
          };
        };
      };
    };
    const client = new pkg.grpc.reflection.v1.ServerReflection(ts.address, credentials.createInsecure());
    const stream = client.serverReflectionInfo();
    const response = await new Promise<{ listServicesResponse: { service: { name: string }[] } }>(
      (resolve, reject) => {
        stream.once('data', resolve);
        stream.once('error', reject);
        stream.write({ listServices: '' });
      },
    );
    stream.end();
    client.close();
    const names = response.listServicesResponse.service.map((s) => s.name);
    assert.ok(names.includes('credbroker.v1.CredentialBroker'), names.join(','));
    assert.ok(names.includes('grpc.health.v1.Health'), names.join(','));
  });

  it('turns reflection off when configured', async () => {
    ts = await startTestServer({ yaml: 'reflection: false\n' });
    const protoRoot = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto');
    const definition = loadSync('grpc/reflection/v1/reflection.proto', { includeDirs: [protoRoot] });
    const pkg = loadPackageDefinition(definition) as unknown as {
      grpc: {
        reflection: {
          v1: {
            ServerReflection: new (
              a: string,
              c: unknown,
            ) => {
              serverReflectionInfo(): NodeJS.EventEmitter & { write(x: unknown): void; end(): void };
              close(): void;
            };
          };
        };
      };
    };
    const client = new pkg.grpc.reflection.v1.ServerReflection(ts.address, credentials.createInsecure());
    const stream = client.serverReflectionInfo();
    const err = await new Promise<ServiceError>((resolve) => {
      stream.once('error', resolve);
      stream.write({ listServices: '' });
    });
    client.close();
    assert.equal(err.code, status.UNIMPLEMENTED);
  });

  it('rejects an empty user_id with INVALID_ARGUMENT, BadRequest naming user_id and ErrorInfo INVALID_REQUEST', async () => {
    ts = await startTestServer({ yaml: provider });
    const e = await callError(ts.client, ts.client.getValidSubjectToken, {
      userId: '',
      provider: '',
      minValidFor: undefined,
    });
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.equal(e.errorInfoCount, 1);
    assert.equal(e.errorInfo.reason, 'INVALID_REQUEST');
    assert.equal(e.errorInfo.domain, 'credbroker.v1');
    assert.deepEqual(
      e.badRequest?.fieldViolations.map((v) => v.field),
      ['user_id'],
    );
  });

  it('validates every RPC: oversized user_id, unknown provider, bad min_valid_for, bad redirect_uri, missing state', async () => {
    ts = await startTestServer({ yaml: provider });
    const fields = async (
      p: Promise<{ badRequest: { fieldViolations: { field: string }[] } | undefined; code: number }>,
    ) => {
      const e = await p;
      assert.equal(e.code, status.INVALID_ARGUMENT);
      return e.badRequest!.fieldViolations.map((v) => v.field).sort();
    };
    const c = ts.client;
    assert.deepEqual(
      await fields(
        callError(c, c.getValidSubjectToken, {
          userId: 'é'.repeat(129),
          provider: 'other',
          minValidFor: { seconds: 3601, nanos: 0 },
        }),
      ),
      ['min_valid_for', 'provider', 'user_id'],
    );
    assert.deepEqual(
      await fields(
        callError(c, c.getValidSubjectToken, {
          userId: 'u',
          provider: '',
          minValidFor: { seconds: -1, nanos: 0 },
        }),
      ),
      ['min_valid_for'],
    );
    assert.deepEqual(
      await fields(
        callError(c, c.startLogin, {
          provider: '',
          redirectUri: '/relative',
          scopes: ['bad scope'],
          loginHint: '',
        }),
      ),
      ['redirect_uri', 'scopes[0]'],
    );
    assert.deepEqual(
      await fields(
        callError(c, c.completeLogin, {
          provider: 'corp',
          code: '',
          redirectUri: 'https://app.example.com/cb',
          state: '',
          codeVerifier: '',
          nonce: '',
          userId: '',
        }),
      ),
      ['code', 'state'],
    );
    assert.deepEqual(
      await fields(callError(c, c.revokeSubjectToken, { userId: '', provider: 'corp', revokeAtIdp: false })),
      ['user_id'],
    );
  });

  it('answers a not-yet-built RPC with UNIMPLEMENTED and an ErrorInfo', async () => {
    ts = await startTestServer({ yaml: provider });
    const e = await callError(ts.client, ts.client.revokeSubjectToken, {
      userId: 'u',
      provider: 'corp',
      revokeAtIdp: false,
    });
    assert.equal(e.code, status.UNIMPLEMENTED);
    assert.equal(e.errorInfo.reason, 'NOT_IMPLEMENTED');
  });

  it('answers INTERNAL "internal error" when a handler throws a plain Error, and logs it', async () => {
    const api: BrokerApi = {
      ...notImplementedApi,
      getValidSubjectToken: async () => {
        throw new Error('connection string redis://:hunter2@db');
      },
    };
    ts = await startTestServer({ yaml: provider, api });
    const e = await callError(ts.client, ts.client.getValidSubjectToken, {
      userId: 'u',
      provider: '',
      minValidFor: undefined,
    });
    assert.equal(e.code, status.INTERNAL);
    assert.equal(e.message, 'internal error');
    assert.ok(!JSON.stringify(e).includes('hunter2'));
    assert.equal(e.errorInfo.reason, 'INTERNAL_ERROR');
    const failed = ts.logs.records().find((r) => r.msg === 'call failed');
    assert.ok(failed, 'the real error is logged');
    assert.equal(failed.rpc, 'GetValidSubjectToken');
  });

  it('logs one line per call with method, code, duration, provider and a user hash — and no secrets', async () => {
    const secrets = {
      code: 'AUTHCODE-7f3a9c',
      state: 'STATE-91bd22',
      userId: 'alice@example.com',
      verifier: 'V'.repeat(43),
      bearer: 'APIKEY-secret-0042',
    };
    ts = await startTestServer({ yaml: provider });
    const md = new Metadata();
    md.set('authorization', `Bearer ${secrets.bearer}`);
    await callError(
      ts.client,
      ts.client.completeLogin,
      {
        provider: 'corp',
        code: secrets.code,
        redirectUri: 'https://app.example.com/cb',
        state: secrets.state,
        codeVerifier: '',
        nonce: '',
        userId: secrets.userId,
      },
      { metadata: md },
    );
    await callError(ts.client, ts.client.completeLogin, {
      provider: 'corp',
      code: secrets.code,
      redirectUri: 'https://app.example.com/cb',
      state: '',
      codeVerifier: secrets.verifier,
      nonce: 'NONCE-55',
      userId: '',
    });
    await callError(ts.client, ts.client.getValidSubjectToken, {
      userId: secrets.userId,
      provider: 'corp',
      minValidFor: undefined,
    });
    const calls = ts.logs.records().filter((r) => r.msg === 'call');
    assert.equal(calls.length, 3);
    for (const line of calls) {
      assert.equal(typeof line.rpc, 'string');
      assert.equal(line.status, 'UNIMPLEMENTED');
      assert.equal(typeof line.durationMs, 'number');
      assert.equal(line.provider, 'corp');
      assert.equal(typeof line.requestId, 'string');
    }
    assert.match(String(calls[2]!.user), /^[0-9a-f]{16}$/);
    const text = ts.logs.text();
    for (const secret of [...Object.values(secrets), 'NONCE-55'])
      assert.ok(!text.includes(secret), `log contains ${secret}`);
  });

  it('answers bytes that are not a request message with INVALID_REQUEST and a call log line, not a bare INTERNAL', async () => {
    ts = await startTestServer({ yaml: provider });
    const raw = new Client(ts.address, credentials.createInsecure());
    const send = (bytes: Buffer) =>
      new Promise<ServiceError>((resolve, reject) =>
        raw.makeUnaryRequest(
          '/credbroker.v1.CredentialBroker/GetValidSubjectToken',
          (b: Buffer) => b,
          (b: Buffer) => b,
          bytes,
          (err) => (err ? resolve(err) : reject(new Error('the call succeeded'))),
        ),
      );
    try {
      // min_valid_for.seconds = 2^60 (beyond Number's safe range), then a truncated field.
      const huge = GetValidSubjectTokenRequest.encode({
        userId: 'alice',
        provider: 'corp',
        minValidFor: { seconds: 2 ** 60, nanos: 0 },
      }).finish();
      for (const bytes of [Buffer.from(huge), Buffer.from([0x0a, 0xff])]) {
        const e = decodeError(await send(bytes));
        assert.equal(e.code, status.INVALID_ARGUMENT);
        assert.equal(e.errorInfo.reason, 'INVALID_REQUEST');
      }
    } finally {
      raw.close();
    }
    const lines = ts.logs.records().filter((r) => r.msg === 'call');
    assert.equal(lines.length, 2);
    assert.ok(lines.every((r) => r.status === 'INVALID_ARGUMENT'));
  });

  it('bounds the request size at 64 KiB', async () => {
    ts = await startTestServer({ yaml: provider });
    await assert.rejects(
      call(ts.client, ts.client.startLogin, {
        provider: 'corp',
        redirectUri: 'https://app.example.com/cb',
        scopes: [],
        loginHint: 'x'.repeat(70_000),
      }),
      { code: status.RESOURCE_EXHAUSTED },
    );
  });

  it('shuts down gracefully: NOT_SERVING, the in-flight call completes, new calls are refused', async () => {
    let entered!: () => void;
    let release!: () => void;
    const started = new Promise<void>((resolve) => (entered = resolve));
    const gate = new Promise<void>((resolve) => (release = resolve));
    const api: BrokerApi = {
      ...notImplementedApi,
      getValidSubjectToken: async () => {
        entered();
        await gate;
        return {
          accessToken: 'at',
          tokenType: 'Bearer',
          expiresAt: new Date(Date.now() + 3600_000),
          scopes: [],
          source: 'STORED',
          degraded: false,
        };
      },
    };
    ts = await startTestServer({ yaml: `${provider}shutdown_grace: 5s\n`, api });
    const { client, server, address } = ts;
    const inFlight = call(client, client.getValidSubjectToken, {
      userId: 'u',
      provider: '',
      minValidFor: undefined,
    });
    await started;
    const shutdown = server.shutdown();
    assert.equal(server.health.shuttingDown, true);
    // A new connection is refused (as soon as the listener has closed), and so is a new call on
    // the existing one, while the call in flight still runs.
    await waitUntil(
      () =>
        checkHealth({ address, service: '', timeoutMs: 500 }).then(
          () => false,
          () => true,
        ),
      { timeoutMs: 2_000, what: 'new connections to be refused' },
    );
    await assert.rejects(
      call(
        client,
        client.getValidSubjectToken,
        { userId: 'u2', provider: '', minValidFor: undefined },
        { deadlineMs: 1000 },
      ),
      (err: ServiceError) => err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED,
    );
    release();
    const response = await inFlight;
    assert.equal(response.accessToken, 'at');
    await shutdown;
  });

  it('cancels calls still in flight when the grace period ends', async () => {
    const api: BrokerApi = {
      ...notImplementedApi,
      getValidSubjectToken: () => {
        entered = true;
        return new Promise(() => undefined);
      },
    };
    let entered = false;
    ts = await startTestServer({ yaml: `${provider}shutdown_grace: 200ms\n`, api });
    const { client, server } = ts;
    const inFlight = call(client, client.getValidSubjectToken, {
      userId: 'u',
      provider: '',
      minValidFor: undefined,
    });
    // It is answered (SHUTTING_DOWN) while shutdown() still runs: handled, asserted below.
    inFlight.catch(() => undefined);
    await waitUntil(() => entered, { what: 'the call to reach the service' });
    const began = Date.now();
    await server.shutdown();
    assert.ok(Date.now() - began < 2000);
    await assert.rejects(
      inFlight,
      (err: ServiceError) => err.code === status.UNAVAILABLE || err.code === status.CANCELLED,
    );
  });
});
