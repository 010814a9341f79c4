import assert from 'node:assert/strict';
import { every } from '../../src/core/clock.js';
import { createFakeClock } from '../helpers/fake-clock.js';

describe('fake clock (test helper)', () => {
  it('fires due timers in time order, each at its own time, on advance', async () => {
    const clock = createFakeClock(1_000);
    const fired: string[] = [];
    clock.setTimer(30, () => fired.push(`b@${clock.now()}`));
    clock.setTimer(10, () => fired.push(`a@${clock.now()}`));
    clock.setTimer(30, () => fired.push(`c@${clock.now()}`));
    const late = clock.setTimer(50, () => fired.push('late'));
    await clock.advance(40);
    assert.deepEqual(fired, ['a@1010', 'b@1030', 'c@1030']);
    assert.equal(clock.now(), 1_040);
    late.cancel();
    await clock.advance(100);
    assert.equal(fired.length, 3);
    assert.equal(clock.pending, 0);
  });

  it('settles the reactions to one timer before the next fires', async () => {
    const clock = createFakeClock(0);
    const seen: number[] = [];
    // A chain of awaits set off by the first timer schedules a timer due before the second one.
    clock.setTimer(10, () => {
      void (async () => {
        await Promise.resolve();
        await Promise.resolve();
        clock.setTimer(5, () => seen.push(clock.now()));
      })();
    });
    clock.setTimer(20, () => seen.push(clock.now()));
    await clock.advance(20);
    assert.deepEqual(seen, [15, 20]);
  });

  it('runs a promise to completion on virtual time, and refuses one nothing can settle', async () => {
    const clock = createFakeClock(0);
    assert.equal(await clock.run(clock.sleep(60_000).then(() => 'done')), 'done');
    assert.equal(clock.now(), 60_000);
    await assert.rejects(clock.run(new Promise(() => undefined)), /no timer is left/);
    clock.setTimer(10_000, () => undefined);
    await assert.rejects(clock.run(new Promise(() => undefined), 1_000), /nothing is due within 1000 ms/);
  });

  it('repeats with every() until cancelled', async () => {
    const clock = createFakeClock(0);
    const ticks: number[] = [];
    const timer = every(clock, 100, () => ticks.push(clock.now()));
    await clock.advance(350);
    timer.cancel();
    await clock.advance(1_000);
    assert.deepEqual(ticks, [100, 200, 300]);
    assert.equal(clock.pending, 0);
  });
});
