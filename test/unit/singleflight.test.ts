import assert from 'node:assert/strict';
import { createSingleflight, DEADLINE_HEADROOM_MS, waitWithin } from '../../src/broker/singleflight.js';
import { createFakeClock } from '../helpers/fake-clock.js';

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('Singleflight', () => {
  it('runs once for concurrent callers of one key and shares the result and the state', async () => {
    const flights = createSingleflight<string, { joined: number }>();
    const gate = deferred<string>();
    let runs = 0;
    const run = () => {
      runs += 1;
      return gate.promise;
    };
    const first = flights.join('alice', () => ({ joined: 1 }), run);
    const second = flights.join('alice', () => ({ joined: 100 }), run);
    second.state.joined += 1;
    assert.equal(first.leader, true);
    assert.equal(second.leader, false);
    assert.equal(first.state, second.state);
    gate.resolve('token');
    assert.deepEqual(await Promise.all([first.promise, second.promise]), ['token', 'token']);
    assert.equal(runs, 1);
    assert.equal(first.state.joined, 2);
  });

  it('runs separately for different keys', async () => {
    const flights = createSingleflight<string, null>();
    const a = flights.join(
      'a',
      () => null,
      async () => 'A',
    );
    const b = flights.join(
      'b',
      () => null,
      async () => 'B',
    );
    assert.equal(b.leader, true);
    assert.deepEqual(await Promise.all([a.promise, b.promise]), ['A', 'B']);
  });

  it('starts a new flight once the previous one settled, even after a failure', async () => {
    const flights = createSingleflight<string, null>();
    const failed = flights.join(
      'alice',
      () => null,
      () => {
        throw new Error('synchronous failure');
      },
    );
    await assert.rejects(failed.promise, /synchronous failure/);
    assert.equal(flights.size, 0);
    const next = flights.join(
      'alice',
      () => null,
      async () => 'ok',
    );
    assert.equal(next.leader, true);
    assert.equal(await next.promise, 'ok');
  });

  it('does not turn a failure nobody awaits into an unhandled rejection', async () => {
    const flights = createSingleflight<string, null>();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      flights.join(
        'alice',
        () => null,
        () => Promise.reject(new Error('nobody listens')),
      );
      // No idle() here: awaiting it would handle the rejection itself. Unhandled rejections are
      // reported once the microtask queue drains, before the next turn of the event loop.
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(flights.size, 0);
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('reports idle once every running flight has settled', async () => {
    const flights = createSingleflight<string, null>();
    const gate = deferred<string>();
    flights.join(
      'alice',
      () => null,
      () => gate.promise,
    );
    assert.equal(flights.size, 1);
    let idle = false;
    const waiting = flights.idle().then(() => (idle = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(idle, false);
    gate.reject(new Error('failed'));
    await waiting;
    assert.equal(flights.size, 0);
  });
});

describe('waitWithin', () => {
  const giveUp = () => new Error('gave up');

  it("gives up at the caller's deadline less the headroom, on the clock's time, and leaves no timer", async () => {
    const clock = createFakeClock(0);
    const flight = deferred<string>();
    const waiting = waitWithin(flight.promise, 1_000, new AbortController().signal, clock, giveUp);
    await clock.advance(1_000 - DEADLINE_HEADROOM_MS - 1);
    let outcome: unknown;
    waiting.catch((err: unknown) => (outcome = err));
    await clock.settle();
    assert.equal(outcome, undefined, 'still waiting one ms before the headroom');
    await clock.advance(1);
    assert.match(String(outcome), /gave up/);
    assert.equal(clock.pending, 0);
  });

  it('returns the result, or gives up on abort, and cancels its timer either way', async () => {
    const clock = createFakeClock(0);
    const flight = deferred<string>();
    const won = waitWithin(flight.promise, 1_000, new AbortController().signal, clock, giveUp);
    flight.resolve('ok');
    assert.equal(await won, 'ok');
    const controller = new AbortController();
    const aborted = waitWithin(deferred<string>().promise, 1_000, controller.signal, clock, giveUp);
    controller.abort();
    await assert.rejects(aborted, /gave up/);
    assert.equal(clock.pending, 0);
    assert.equal(clock.now(), 0);
  });
});
