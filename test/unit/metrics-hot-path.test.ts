import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { Counter, Histogram, Registry } from 'prom-client';
import type { CallOutcome } from '../../src/server/call.js';
import { createMetrics, METRIC_NAMES } from '../../src/server/metrics.js';

const CALL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const REMAINING_BUCKETS = [0, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400];

function outcome(rpc: string, durationMs: number, code = status.OK, reason?: string): CallOutcome {
  return {
    rpc,
    code,
    reason,
    metadata: {},
    durationMs,
    provider: 'corp',
    userId: 'u',
    requestId: 'r',
    caller: undefined,
  };
}

/** The series of `name` in exposition text: series → value. */
function seriesOf(text: string, name: string): Map<string, number> {
  const lines = text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name}_`));
  return new Map(lines.map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
}

/** Equal series; sums equal up to float rounding (added in another order). */
function assertSameSeries(ours: Map<string, number>, theirs: Map<string, number>, name: string): void {
  assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort(), name);
  assert.ok(ours.size > 0, name);
  for (const [series, value] of theirs) {
    if (series.includes('_sum'))
      assert.ok(Math.abs(ours.get(series)! - value) < 1e-9 * Math.max(1, value), series);
    else assert.equal(ours.get(series), value, series);
  }
}

describe('metrics on the hot path (plain numbers, added at scrape time)', () => {
  it('expose exactly what prom-client observing each call exposes, across several scrapes', async () => {
    const metrics = createMetrics();
    const reference = new Registry();
    const calls = new Counter({
      name: METRIC_NAMES.calls,
      help: 'x',
      labelNames: ['rpc', 'code', 'reason'],
      registers: [reference],
    });
    const duration = new Histogram({
      name: METRIC_NAMES.callDuration,
      help: 'x',
      labelNames: ['rpc'],
      buckets: CALL_BUCKETS,
      registers: [reference],
    });
    const remaining = new Histogram({
      name: METRIC_NAMES.tokenRemaining,
      help: 'x',
      buckets: REMAINING_BUCKETS,
      registers: [reference],
    });
    // Bounds themselves (le is inclusive), values between, above every bound, zero.
    const durationsMs = [0, 1, 1.0001, 2.5, 7, 10, 99, 100, 1000, 10_000, 10_001, 60_000];
    const remainingMs = [-5, 0, 10_000, 10_001, 3_599_000, 86_400_000, 90_000_000];
    for (let scrape = 0; scrape < 3; scrape++) {
      for (const [i, ms] of durationsMs.entries()) {
        const rpc = i % 3 === 0 ? 'GetDownstreamToken' : 'GetValidSubjectToken';
        const failed = i % 4 === 3;
        metrics.observer(
          outcome(rpc, ms, failed ? status.FAILED_PRECONDITION : status.OK, failed ? 'NO_TOKEN' : undefined),
        );
        calls.inc({ rpc, code: failed ? 'FAILED_PRECONDITION' : 'OK', reason: failed ? 'NO_TOKEN' : '' });
        duration.observe({ rpc }, ms / 1000);
      }
      for (const ms of remainingMs) {
        metrics.brokerMetrics.tokenServed(ms);
        remaining.observe(Math.max(0, ms) / 1000);
      }
      const [ours, theirs] = [await metrics.registry.metrics(), await reference.metrics()];
      for (const name of [METRIC_NAMES.calls, METRIC_NAMES.callDuration, METRIC_NAMES.tokenRemaining]) {
        assertSameSeries(seriesOf(ours, name), seriesOf(theirs, name), name);
      }
    }
  });

  it('start again from zero after a registry reset', async () => {
    const metrics = createMetrics();
    metrics.observer(outcome('GetValidSubjectToken', 3));
    await metrics.registry.metrics();
    metrics.registry.resetMetrics();
    metrics.observer(outcome('GetValidSubjectToken', 30));
    const text = await metrics.registry.metrics();
    assert.match(text, /^credbroker_call_duration_seconds_count\{rpc="GetValidSubjectToken"\} 1$/m);
    assert.match(
      text,
      /^credbroker_call_duration_seconds_bucket\{le="0.005",rpc="GetValidSubjectToken"\} 0$/m,
    );
    assert.match(text, /^credbroker_calls_total\{rpc="GetValidSubjectToken",code="OK",reason=""\} 1$/m);
  });
});
