import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Metadata, status, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { BrokerError, ErrorReason } from '../../src/core/errors.js';
import { createLogger } from '../../src/logger.js';
import { setImmediate as turn } from 'node:timers/promises';
import { InFlightCalls, unary } from '../../src/server/call.js';

interface Answer {
  readonly err: ServiceError | null;
  readonly value: unknown;
  readonly metadata: Metadata | undefined;
}

/** A grpc-js unary call as the server hands it to a handler, recording what the handler sends. */
function fakeCall(): { call: ServerUnaryCall<unknown, unknown>; sent: Metadata[] } {
  const sent: Metadata[] = [];
  const call = Object.assign(new EventEmitter(), {
    request: { provider: 'corp', userId: 'alice' },
    metadata: new Metadata(),
    cancelled: false,
    getDeadline: () => Infinity,
    sendMetadata: (metadata: Metadata) => sent.push(metadata),
  });
  return { call: call as unknown as ServerUnaryCall<unknown, unknown>, sent };
}

/** A logger whose lines are collected; `refuse` makes the destination throw for matching lines. */
function collectingLogger(refuse?: RegExp) {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    destination: {
      write(line: string) {
        if (refuse?.test(line)) throw new Error('destination refused the line');
        lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  });
  return { logger, lines };
}

/** Invokes `handler` once; resolves with what it answered (waits for an asynchronous answer). */
function invoke(handler: ReturnType<typeof unary<unknown, unknown, { provider: string; userId: string }>>): {
  answeredBeforeReturn: boolean;
  answer: Promise<Answer>;
} {
  const { call, sent } = fakeCall();
  let resolve!: (a: Answer) => void;
  const answer = new Promise<Answer>((r) => (resolve = r));
  let answered = false;
  handler(call, (err, value) => {
    answered = true;
    resolve({ err: err as ServiceError | null, value, metadata: sent[0] });
  });
  return { answeredBeforeReturn: answered, answer };
}

const validate = (req: unknown) => req as { provider: string; userId: string };

describe('call wrapper', () => {
  it('answers an operation that answers without a promise before the handler returns', async () => {
    const { logger, lines } = collectingLogger();
    const inFlight = new InFlightCalls();
    const handler = unary('GetValidSubjectToken', { logger, inFlight }, validate, () => ({ token: 'sync' }));
    const { answeredBeforeReturn, answer } = invoke(handler);
    assert.equal(answeredBeforeReturn, true);
    assert.equal(inFlight.calls.size, 0);
    const { err, value, metadata } = await answer;
    assert.equal(err, null);
    assert.deepEqual(value, { token: 'sync' });
    assert.match(String(metadata?.get('x-request-id')[0]), /^[0-9a-f-]{36}$/);
    const line = lines.find((l) => l.msg === 'call');
    assert.equal(line?.status, 'OK');
    assert.equal(line?.rpc, 'GetValidSubjectToken');
  });

  it('answers an operation with a promise once it settles, with its value or its error', async () => {
    const { logger, lines } = collectingLogger();
    const inFlight = new InFlightCalls();
    const ok = invoke(
      unary('GetValidSubjectToken', { logger, inFlight }, validate, async () => ({ token: 'async' })),
    );
    assert.equal(ok.answeredBeforeReturn, false);
    assert.equal(inFlight.calls.size, 1, 'in flight until it settles (shutdown can end it)');
    assert.deepEqual((await ok.answer).value, { token: 'async' });
    assert.equal(inFlight.calls.size, 0);
    const failing = invoke(
      unary('GetValidSubjectToken', { logger }, validate, () =>
        Promise.reject(new BrokerError(ErrorReason.STORE_UNAVAILABLE, 'the token store is unavailable')),
      ),
    );
    const { err } = await failing.answer;
    assert.equal(err?.code, status.UNAVAILABLE);
    assert.deepEqual(
      lines.filter((l) => l.msg === 'call').map((l) => l.status),
      ['OK', 'UNAVAILABLE'],
    );
  });

  it('answers a synchronous throw of the operation as its error', async () => {
    const { logger } = collectingLogger();
    const handler = unary('GetValidSubjectToken', { logger }, validate, () => {
      throw new BrokerError(ErrorReason.STORE_UNAVAILABLE, 'the token store is unavailable');
    });
    const { answeredBeforeReturn, answer } = invoke(handler);
    assert.equal(answeredBeforeReturn, true);
    assert.equal((await answer).err?.code, status.UNAVAILABLE);
  });

  for (const shape of ['without a promise', 'with a promise'] as const) {
    it(`still answers (${shape}) when its call line cannot be written, and logs why`, async () => {
      const { logger, lines } = collectingLogger(/"msg":"call"/);
      const run = shape === 'with a promise' ? async () => ({ token: 't' }) : () => ({ token: 't' });
      const { err, value } = await invoke(unary('GetValidSubjectToken', { logger }, validate, run)).answer;
      assert.equal(err, null);
      assert.deepEqual(value, { token: 't' });
      assert.ok(lines.some((l) => l.msg === 'finishing the call failed' && l.level === 'error'));
      // A failing call too: its error is answered although the call line is not written.
      const failing = unary('GetValidSubjectToken', { logger }, validate, () =>
        Promise.reject(new BrokerError(ErrorReason.STORE_UNAVAILABLE, 'the token store is unavailable')),
      );
      assert.equal((await invoke(failing).answer).err?.code, status.UNAVAILABLE);
    });
  }

  it('answers every call exactly once, never throws into grpc-js and never rejects unhandled, when the logger itself throws', async () => {
    const logger = createLogger({
      destination: {
        write() {
          throw new Error('destination down');
        },
      },
    });
    const refused = () => new BrokerError(ErrorReason.STORE_UNAVAILABLE, 'the token store is unavailable');
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown) => rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    try {
      const runs = [
        () => ({ token: 't' }),
        async () => ({ token: 't' }),
        () => Promise.reject(refused()),
        () => {
          throw refused();
        },
      ];
      for (const run of runs) {
        const inFlight = new InFlightCalls();
        const handler = unary('GetValidSubjectToken', { logger, inFlight }, validate, run);
        const answers: unknown[] = [];
        assert.doesNotThrow(() => handler(fakeCall().call, (err, value) => answers.push(err ?? value)));
        await turn();
        assert.equal(answers.length, 1, `${String(run)}: answered once`);
        assert.equal(inFlight.calls.size, 0);
      }
      await turn();
      assert.deepEqual(rejections, []);
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });

  it('ends a waiting call at shutdown once: aborts its signal, and logs no error when it gives up on that signal', async () => {
    const { logger, lines } = collectingLogger();
    const inFlight = new InFlightCalls();
    const handler = unary('GetValidSubjectToken', { logger, inFlight }, validate, (_input, ctx) => {
      const { signal } = ctx;
      return new Promise((_resolve, reject) =>
        signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }),
      );
    });
    const { answer } = invoke(handler);
    assert.equal(inFlight.calls.size, 1);
    const shutdown = new BrokerError(ErrorReason.SHUTTING_DOWN, 'the server is shutting down');
    assert.equal(inFlight.endAll(shutdown), 1);
    assert.equal((await answer).err?.code, status.UNAVAILABLE);
    await turn();
    assert.equal(inFlight.calls.size, 0);
    assert.deepEqual(
      lines.filter((l) => l.level === 'error' || l.level === 'warn').map((l) => l.msg),
      [],
      'giving up on the shutdown signal is not an error',
    );
  });
});
