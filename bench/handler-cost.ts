/**
 * `npx tsx bench/handler-cost.ts [--calls=N] [--rounds=R]`: what the broker's own code costs per
 * GetValidSubjectToken call, in process and without the transport — the handler grpc-js calls
 * (src/server/service.ts: the call wrapper, validation, the caller policy, request id, the
 * domain's answer encoded once, the call line, the metrics and audit observers, the answer) run
 * against a constant stored token, with the production logger writing to /dev/null through the
 * production stdout batch (src/logger.ts BatchedStdout over pino's synchronous destination).
 *
 * The end-to-end figures (bench/run.ts, bench/layer-cost.ts) vary by ±10 µs per call from round to
 * round on a shared machine; this one varies by a few per cent, so it says how much of the
 * broker's cost over bare grpc-js is its own code at all. It does not include what grpc-js and
 * node:http2 do for the call, nor the collector's cost of the transport's garbage.
 *
 * Variants, measured in interleaved rounds (CPU time per call, median of the rounds):
 *   handler          — as production (info-level call line and audit line written)
 *   lines not written — the same lines built, handed to a destination that drops them
 *   logging silent   — no call line, no audit line
 *   no observers     — call line, but no metrics and no audit observer
 *   call object only — building the stand-in ServerUnaryCall, subtracted from the others
 */
import { Metadata, type ServerUnaryCall } from '@grpc/grpc-js';
import { pino } from 'pino';
import type { BrokerApi } from '../src/broker/api.js';
import type { GetValidSubjectTokenRequest } from '../src/gen/credbroker/v1/broker.js';
import { BatchedStdout, createLogger, type LineTarget } from '../src/logger.js';
import { InFlightCalls, type CallObserver } from '../src/server/call.js';
import { createMetrics } from '../src/server/metrics.js';
import { auditObserver, createAuditLog } from '../src/server/security/audit.js';
import { createAuthorizer } from '../src/server/security/authorize.js';
import { createCredentialBrokerService } from '../src/server/service.js';

function option(name: string, fallback: number): number {
  const given = process.argv.find((a) => a.startsWith(`--${name}=`));
  return given === undefined ? fallback : Number(given.slice(name.length + 3));
}

const calls = option('calls', 200_000);
const rounds = option('rounds', 7);

const expiresAt = new Date(Date.now() + 3600_000);
/** The stored record every call is answered from (its response is encoded once). */
const record = {};
const api = {
  getValidSubjectToken: () => ({
    accessToken: 'at-'.padEnd(900, '.'),
    tokenType: 'Bearer',
    expiresAt,
    scopes: ['openid', 'profile', 'email', 'offline_access'],
    source: 'STORED' as const,
    degraded: false,
    loginEpoch: 1,
    served: record,
  }),
} as unknown as BrokerApi;

type Handler = (call: ServerUnaryCall<unknown, unknown>, callback: () => void) => void;

function handler(level: 'info' | 'silent', target: LineTarget, observe: boolean): Handler {
  const logger = createLogger({ level, destination: new BatchedStdout(target) });
  const observers: CallObserver[] = observe
    ? [createMetrics().observer, auditObserver(createAuditLog(logger))]
    : [];
  const service = createCredentialBrokerService({
    api,
    providers: { ids: ['corp'], downstreams: { corp: [] } },
    logger,
    observers,
    authorize: createAuthorizer({ callers: [], insecure: true, tls: false }),
    inFlight: new InFlightCalls(),
  });
  return service.getValidSubjectToken as unknown as Handler;
}

/** Production's stdout target, on /dev/null. */
const devNull = pino.destination({ dest: '/dev/null', sync: true, minLength: 0 });
const dropped: LineTarget = { write: () => undefined };

const request: GetValidSubjectTokenRequest = {
  userId: 'user-00007@example.com',
  provider: 'corp',
  minValidFor: { seconds: 60, nanos: 0 },
};
/** What the handler reads of a grpc-js ServerUnaryCall on a plaintext connection. */
function stubCall(): ServerUnaryCall<unknown, unknown> {
  return {
    request,
    metadata: new Metadata(),
    cancelled: false,
    getDeadline: () => Infinity,
    getAuthContext: () => ({}),
    sendMetadata: () => undefined,
  } as unknown as ServerUnaryCall<unknown, unknown>;
}

const answered = (): void => undefined;
const variants: { readonly name: string; readonly run: () => void }[] = [
  ['handler', handler('info', devNull, true)] as const,
  ['lines not written', handler('info', dropped, true)] as const,
  ['logging silent', handler('silent', devNull, true)] as const,
  ['no observers', handler('info', devNull, false)] as const,
].map(([name, h]) => ({ name, run: () => h(stubCall(), answered) }));
let sink: unknown;
variants.push({ name: 'call object only', run: () => (sink = stubCall()) });

function cpuNsPerCall(run: () => void): number {
  const started = process.cpuUsage();
  for (let i = 0; i < calls; i++) run();
  const used = process.cpuUsage(started);
  return ((used.user + used.system) * 1000) / calls;
}

const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
for (const v of variants) cpuNsPerCall(v.run); // warm up the JIT
for (let round = 1; round <= rounds; round++) {
  for (const v of variants) samples.get(v.name)!.push(cpuNsPerCall(v.run));
}
void sink;

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const stub = median(samples.get('call object only')!);
console.log(
  `${calls} calls × ${rounds} rounds; CPU µs per call, the stand-in call object (${(stub / 1000).toFixed(2)}) subtracted:`,
);
for (const v of variants) {
  if (v.name === 'call object only') continue;
  const xs = samples.get(v.name)!;
  const range = `${((Math.min(...xs) - stub) / 1000).toFixed(2)}–${((Math.max(...xs) - stub) / 1000).toFixed(2)}`;
  console.log(`  ${v.name.padEnd(18)} ${((median(xs) - stub) / 1000).toFixed(2)}  (rounds ${range})`);
}
