/**
 * `npx tsx bench/layer-cost.ts [--requests=N] [--rounds=R] [--cpu-prof] [--before=DIR]`: what the
 * broker's gRPC server layer costs per call over bare grpc-js, measured as CPU time rather than
 * throughput so that it stays comparable on a machine shared with other work.
 *
 * Compiles the repository with tsc (as production runs: no tsx, no esbuild helpers) into
 * .tmp/layer-cost/build, starts the echo baseline (bench/echo-server.ts) and the server-layer
 * diagnostic (bench/server-layer.ts: the real BrokerServer, production logger, metrics and
 * audit, constant domain answer), sends each exactly N requests with h2load (4 connections × 16
 * streams, after a warm-up of N/4), rounds interleaved, and prints each process's user+system
 * CPU per call (/proc/PID/stat). `--before=DIR`: also the server layer of another compiled tree
 * (e.g. an older commit: `git archive <rev> | tar -x -C DIR`, `tsc --outDir DIR/.tmp/build`),
 * measured in the same rounds. With `--cpu-prof` the current server layer runs under
 * `node --cpu-prof` and the top self-time functions of the measured requests are printed in µs
 * per call (percent of busy samples × CPU per call).
 *
 * `--broker`: also the real broker (the compiled `src/cli.js serve`, Redis store with its record
 * cache, one seeded user, production configuration as bench/run.ts), in the same rounds: the
 * cost of the store read and the domain over the server layer. `--cpu-prof=broker` profiles the
 * broker instead of the server layer.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { GetValidSubjectTokenRequest } from '../src/gen/credbroker/v1/broker.js';
import { waitServing, writeBrokerConfig } from './lib/broker.js';
import { freePort } from './lib/net.js';
import { startRedis } from './lib/redis.js';
import { openSeedStore, SEED_TTL_MS, seedRecord } from './lib/store.js';
import { buildBench, deploymentNodeOptions } from './lib/build.js';
import { cpuSeconds, helperPort, peakRssMiB, ROOT, spawnNode, type Child } from './lib/processes.js';
import { h2load } from './load.js';
import { summariseProfile, type ProfileWindow } from './profile.js';

const TOKEN_LENGTH = 900;
const METHOD_PATH = '/credbroker.v1.CredentialBroker/GetValidSubjectToken';

function option(name: string, fallback: number): number {
  const given = process.argv.find((a) => a.startsWith(`--${name}=`));
  return given === undefined ? fallback : Number(given.slice(name.length + 3));
}

const requests = option('requests', 40_000);
/** `--rps=N`: send at N requests per second in all (h2load --rps per connection) instead of as fast as answered. */
const rps = option('rps', 0);
const rounds = option('rounds', 3);
const profiled = process.argv.find((a) => a === '--cpu-prof' || a.startsWith('--cpu-prof='));
const cpuProf = profiled !== undefined;
const withBroker = process.argv.includes('--broker');
/** `--broker-env=NAME=VALUE,…`: also the broker with these environment settings (e.g. CREDBROKER_LOG_LEVEL=warn). */
const variantEnv = process.argv
  .find((a) => a.startsWith('--broker-env='))
  ?.slice('--broker-env='.length)
  .split(',')
  .map((kv): [string, string] => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]);
const profileTarget = profiled?.startsWith('--cpu-prof=')
  ? profiled.slice('--cpu-prof='.length)
  : 'server layer';
if (profileTarget === 'broker' && !withBroker) throw new Error('--cpu-prof=broker needs --broker');
const profArgs = (name: string) =>
  cpuProf && profileTarget === name ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
/**
 * `--trace-gc`: every target runs with node --trace-gc; GC pauses per call are printed by kind, and
 * each target's GC lines of the measured rounds are kept in .tmp/layer-cost/gc-<target>.log.
 */
const traceGc = process.argv.includes('--trace-gc');
const gcArgs = traceGc ? ['--trace-gc'] : [];
const before = process.argv.find((a) => a.startsWith('--before='))?.slice('--before='.length);
const work = join(ROOT, '.tmp/layer-cost');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const profDir = join(work, 'prof');

const request = GetValidSubjectTokenRequest.encode({
  userId: 'user-00007@example.com',
  provider: 'corp',
  minValidFor: { seconds: 60, nanos: 0 },
}).finish();

const build = buildBench(join(work, 'build'));
/** The same runtime flags as production (and as bench/run.ts), or `--node-options='…'`. */
const nodeOptions =
  process.argv.find((a) => a.startsWith('--node-options='))?.slice('--node-options='.length) ??
  deploymentNodeOptions();
const runtime = { NODE_OPTIONS: nodeOptions };
console.log(`NODE_OPTIONS: ${nodeOptions}`);

const echo = spawnNode(join(build, 'bench/echo-server.js'), [String(TOKEN_LENGTH)], runtime, {
  stdout: 'pipe',
  nodeArgs: [...gcArgs, ...profArgs('echo')],
});
const layer = spawnNode(join(build, 'bench/server-layer.js'), [String(TOKEN_LENGTH)], runtime, {
  stdout: traceGc ? 'pipe' : 'ignore',
  nodeArgs: [...gcArgs, ...profArgs('server layer')],
});
const cleanups: (() => Promise<void>)[] = [];
const brokerKey = `bench1:${randomBytes(32).toString('base64')}`;
const targets: { name: string; child: Child; address: string }[] = [
  { name: 'echo', child: echo, address: `127.0.0.1:${await helperPort(echo, 'stdout')}` },
  { name: 'server layer', child: layer, address: `127.0.0.1:${await helperPort(layer, 'stderr')}` },
];
if (before !== undefined) {
  const old = spawnNode(join(before, 'bench/server-layer.js'), [String(TOKEN_LENGTH)], runtime, {
    stdout: 'ignore',
  });
  targets.push({ name: 'before', child: old, address: `127.0.0.1:${await helperPort(old, 'stderr')}` });
}
if (withBroker) {
  const redisUrl = await startSeededRedis();
  targets.push(await startBroker(build, 'broker', redisUrl));
  if (before !== undefined) targets.push(await startBroker(before, 'broker before', redisUrl));
  if (variantEnv !== undefined)
    targets.push(await startBroker(build, 'broker variant', redisUrl, Object.fromEntries(variantEnv)));
}

/** `<build>/src/cli.js serve` as bench/run.ts runs it (production configuration). */
async function startBroker(
  buildDir: string,
  name: string,
  redisUrl: string,
  extraEnv: Record<string, string> = {},
): Promise<(typeof targets)[number]> {
  const address = `127.0.0.1:${await freePort()}`;
  const env = { ...brokerEnv(redisUrl), CREDBROKER_LISTEN: address };
  const child = spawnNode(
    join(buildDir, 'src/cli.js'),
    ['serve'],
    { ...env, ...runtime, ...extraEnv },
    {
      stdout: traceGc ? 'pipe' : 'ignore',
      nodeArgs: [...gcArgs, ...profArgs(name)],
    },
  );
  await waitServing(address, child);
  return { name, child, address };
}

function brokerEnv(redisUrl: string): Record<string, string> {
  // No IdP: the hot path never calls one (port 9 is discard).
  const file = writeBrokerConfig(join(work, 'broker.yaml'), redisUrl, 'http://127.0.0.1:9');
  return { CREDBROKER_CONFIG: file, CREDBROKER_METRICS_LISTEN: '127.0.0.1:0', CREDBROKER_KEYS: brokerKey };
}

/** redis-server with one user's token seeded through the store; returns its URL. */
async function startSeededRedis(): Promise<string> {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const store = await openSeedStore(brokerEnv(redis.url));
  const user = 'user-00007@example.com';
  await store.putToken(
    { provider: 'corp', userId: user },
    seedRecord(user, 'at-'.padEnd(TOKEN_LENGTH, '.'), 'rt-bench', Date.now()),
    SEED_TTL_MS,
  );
  await store.close();
  return redis.url;
}

async function cpuPerCall(target: (typeof targets)[number], n: number, label: string): Promise<number> {
  const pid = target.child.proc.pid!;
  const cpu0 = cpuSeconds(pid);
  const r = await h2load({
    address: target.address,
    path: METHOD_PATH,
    request,
    connections: 4,
    streams: 16,
    durationS: 0,
    warmupS: 0,
    requests: n,
    workDir: work,
    label,
    ...(rps > 0 ? { rpsPerConnection: rps / 4 } : {}),
  });
  if (r.failed > 0 || r.http200 !== n)
    throw new Error(`${label}: ${r.failed} failed, ${r.http200}/${n} HTTP 200`);
  p99Ms[target.name]?.push(r.p99Ms);
  return ((cpuSeconds(pid) - cpu0) * 1e6) / n;
}

/** `--trace-gc`: pause ms by GC kind, per target, during the measured rounds. */
const gcPauses: Record<string, Record<string, number>> = {};
let measuring: string | undefined;
if (traceGc) {
  const GC_LINE = /ms: ([A-Za-z-]+)[^,]*, ([\d.]+) \/ [\d.]+ ms/;
  for (const t of targets) {
    let partial = '';
    gcPauses[t.name] = {};
    t.child.proc.stdout?.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop() ?? '';
      if (measuring !== t.name) return;
      // Only the GC lines: a broker's stdout also carries its call and audit lines.
      const gcLines = lines.filter((line) => GC_LINE.test(line));
      if (gcLines.length > 0)
        appendFileSync(join(work, `gc-${t.name.replace(' ', '-')}.log`), `${gcLines.join('\n')}\n`);
      for (const line of gcLines) {
        const m = GC_LINE.exec(line)!;
        gcPauses[t.name]![m[1]!] = (gcPauses[t.name]![m[1]!] ?? 0) + Number(m[2]);
      }
    });
  }
}
const windows: ProfileWindow[] = [];
const perCall: Record<string, number[]> = Object.fromEntries(targets.map((t) => [t.name, []]));
/** Each measured round's p99 latency per target (warm-ups are not recorded). */
const p99Ms: Record<string, number[]> = {};
try {
  for (const t of targets) await cpuPerCall(t, Math.ceil(requests / 4), `warmup-${t.name.replace(' ', '-')}`);
  for (const t of targets) p99Ms[t.name] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const t of targets) {
      const startNs = process.hrtime.bigint();
      measuring = t.name;
      perCall[t.name]!.push(await cpuPerCall(t, requests, `${t.name.replace(' ', '-')}-${round}`));
      measuring = undefined;
      if (t.name === profileTarget) windows.push({ startNs, endNs: process.hrtime.bigint() });
    }
    console.log(
      `round ${round}: CPU µs/call  ${targets.map((t) => `${t.name} ${perCall[t.name]!.at(-1)!.toFixed(1)}`).join('  ')}`,
    );
    if (rps > 0)
      console.log(
        `round ${round}: p99 ms       ${targets.map((t) => `${t.name} ${p99Ms[t.name]!.at(-1)!.toFixed(2)}`).join('  ')}`,
      );
  }
  console.log(
    `peak RSS (VmHWM) MiB: ${targets.map((t) => `${t.name} ${peakRssMiB(t.child.proc.pid!)}`).join('  ')}`,
  );
} finally {
  await Promise.all(targets.map((t) => t.child.stop()));
  for (const cleanup of cleanups) await cleanup();
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const echoUs = median(perCall.echo!);
const layerUs = median(perCall['server layer']!);
console.log(
  `median CPU µs/call: echo ${echoUs.toFixed(1)}, server layer ${layerUs.toFixed(1)}, ` +
    `server layer over echo ${(layerUs - echoUs).toFixed(1)} (${requests} requests × ${rounds} rounds)`,
);
if (before !== undefined) {
  const beforeUs = median(perCall.before!);
  console.log(`before: ${beforeUs.toFixed(1)} µs/call, over echo ${(beforeUs - echoUs).toFixed(1)}`);
}
if (withBroker && before !== undefined) {
  const beforeUs = median(perCall['broker before']!);
  console.log(`broker before: ${beforeUs.toFixed(1)} µs/call, over echo ${(beforeUs - echoUs).toFixed(1)}`);
}
if (variantEnv !== undefined) {
  const variantUs = median(perCall['broker variant']!);
  console.log(
    `broker with ${variantEnv.map((kv) => kv.join('=')).join(',')}: ${variantUs.toFixed(1)} µs/call, over echo ${(variantUs - echoUs).toFixed(1)}`,
  );
}
if (withBroker) {
  const brokerUs = median(perCall.broker!);
  console.log(
    `broker: ${brokerUs.toFixed(1)} µs/call, over echo ${(brokerUs - echoUs).toFixed(1)}, over the server layer ${(brokerUs - layerUs).toFixed(1)}; ` +
      `broker ÷ echo by CPU ${(echoUs / brokerUs).toFixed(3)}`,
  );
}
if (traceGc) {
  for (const [name, pauses] of Object.entries(gcPauses)) {
    const kinds = Object.entries(pauses).map(
      ([kind, ms]) => `${kind} ${((ms * 1000) / (requests * rounds)).toFixed(1)}`,
    );
    console.log(`GC pause µs/call, ${name}: ${kinds.join(', ') || 'none'}`);
  }
}
if (cpuProf) {
  const profiledUs = median(perCall[profileTarget]!);
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (file) {
    const profile = summariseProfile(join(profDir, file), windows);
    const us = (percent: number) => ((percent / 100) * profiledUs).toFixed(1).padStart(6);
    console.log(
      `${profileTarget} profile (measured rounds, busy ${profile.busyPercentOfWall}% of wall), self time µs/call:`,
    );
    for (const a of profile.byArea)
      console.log(`  ${us(a.percent)}  ${a.percent.toFixed(1).padStart(5)}%  ${a.area}`);
    console.log('  top functions:');
    for (const f of profile.topFunctions)
      console.log(`  ${us(f.percent)}  ${f.percent.toFixed(1).padStart(5)}%  ${f.name}  ${f.location}`);
  }
}
