/**
 * The load generator: h2load (nghttp2-client) sending a pre-framed gRPC request over h2c. It is
 * written in C and costs the 2-core machine far less CPU than a grpc-js client would, so the
 * server under test, not the generator, is what saturates. h2load sees only HTTP status, not
 * grpc-status: the caller checks that separately (a real gRPC call with the identical request
 * before the run, and the broker's calls-by-code metric after it).
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** gRPC length-prefixed message framing: flag 0 (uncompressed), 4-byte big-endian length. */
export function grpcFrame(message: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(0, 0);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

export interface LoadOptions {
  /** host:port (h2c, prior knowledge). */
  readonly address: string;
  /** `/package.Service/Method`. */
  readonly path: string;
  /** The serialised request message (framed here). */
  readonly request: Uint8Array;
  readonly connections: number;
  /** Concurrent streams per connection. */
  readonly streams: number;
  readonly durationS: number;
  readonly warmupS: number;
  /** Scratch directory for the body and per-request log. */
  readonly workDir: string;
  readonly label: string;
  /** Fixed request rate per connection (open-ish loop); unset: as fast as the server answers. */
  readonly rpsPerConnection?: number;
  /** Send exactly this many requests instead of running for `durationS` (no warm-up then). */
  readonly requests?: number;
}

export interface LoadResult {
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  /** Requests completed in the measurement window (after warm-up). */
  readonly completed: number;
  /** HTTP 200 responses in the per-request log. */
  readonly http200: number;
  /** Requests h2load counts as failed or errored (transport level). */
  readonly failed: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Runs h2load for `durationS` after `warmupS` and summarises its per-request log. */
export async function h2load(options: LoadOptions): Promise<LoadResult> {
  const body = `${options.workDir}/${options.label}.body`;
  const log = `${options.workDir}/${options.label}.log`;
  writeFileSync(body, grpcFrame(options.request));
  writeFileSync(log, '');
  const { stdout } = await run(
    'h2load',
    [
      `http://${options.address}${options.path}`,
      '-d',
      body,
      '-H',
      'content-type: application/grpc',
      '-H',
      'te: trailers',
      '-c',
      String(options.connections),
      '-m',
      String(options.streams),
      '-t',
      '1',
      ...(options.requests === undefined
        ? ['-D', `${options.durationS}s`, `--warm-up-time=${options.warmupS}s`]
        : ['-n', String(options.requests)]),
      `--log-file=${log}`,
      ...(options.rpsPerConnection === undefined ? [] : [`--rps=${options.rpsPerConnection}`]),
    ],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  const summary = /finished in ([\d.]+)(m?s), ([\d.]+) req\/s/.exec(stdout);
  const counts =
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
      stdout,
    );
  if (!summary || !counts) throw new Error(`cannot parse h2load output:\n${stdout}`);

  const lines = readFileSync(log, 'utf8').split('\n');
  const durations = new Float64Array(lines.length);
  let n = 0;
  let http200 = 0;
  let sum = 0;
  for (const line of lines) {
    if (line === '') continue;
    const [, statusCode, micros] = line.split('\t');
    if (statusCode === '200') http200 += 1;
    const ms = Number(micros) / 1000;
    durations[n++] = ms;
    sum += ms;
  }
  const sorted = durations.subarray(0, n).sort();
  return {
    requestsPerSecond: Number(summary[3]),
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    meanMs: n === 0 ? Number.NaN : sum / n,
    completed: Number(counts[3]),
    http200,
    failed: Number(counts[5]) + Number(counts[6]),
  };
}
