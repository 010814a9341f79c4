/**
 * Child processes of the benchmarks: Node.js scripts (TypeScript through tsx, or the built
 * `dist/` JavaScript as production runs it), their CPU time and peak memory from /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Child {
  readonly proc: ChildProcess;
  /** The last 4 000 characters the process wrote to stderr. */
  readonly stderr: () => string;
  /** SIGTERM, then SIGKILL after 25 s. */
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
process.once('exit', () => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL')));

export interface SpawnOptions {
  /** Node.js flags before the script (e.g. `--cpu-prof`). */
  readonly nodeArgs?: readonly string[];
  /** What to do with stdout (default: discard — call logs are formatted either way). */
  readonly stdout?: 'pipe' | 'ignore';
}

/**
 * Starts `node <script>`: a `.ts` script through tsx, a `.js` one (e.g. `dist/cli.js`) as is. The
 * environment is only PATH, HOME, NODE_ENV=production and `env`.
 */
export function spawnNode(
  script: string,
  argv: readonly string[],
  env: Readonly<Record<string, string>>,
  options: SpawnOptions = {},
): Child {
  const loader = script.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const proc = spawn(process.execPath, [...(options.nodeArgs ?? []), ...loader, script, ...argv], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_ENV: 'production', ...env },
    stdio: ['ignore', options.stdout ?? 'ignore', 'pipe'],
  });
  children.add(proc);
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) =>
    proc.once('exit', () => {
      children.delete(proc);
      resolve();
    }),
  );
  return {
    proc,
    stderr: () => stderr,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await Promise.race([exited, sleep(25_000)]);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
}

/**
 * The port in the JSON line `{"port": N}` a helper server prints on `stream` (other lines before
 * it, such as `--trace-gc` output, are skipped).
 */
export function helperPort(child: Child, stream: 'stdout' | 'stderr'): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    // stderr flows from the start (spawnNode keeps its tail): the line may have gone by already.
    let seen = stream === 'stderr' ? child.stderr() : '';
    const source = child.proc[stream]!;
    const onData = (d: Buffer) => {
      seen += d.toString();
      // Whole lines only: the last piece may be the start of one still being written.
      const line = seen
        .split('\n')
        .slice(0, -1)
        .find((l) => l.startsWith('{"port":'));
      if (line === undefined) return;
      source.off('data', onData);
      resolve((JSON.parse(line) as { port: number }).port);
    };
    source.on('data', onData);
    onData(Buffer.alloc(0));
    const exited = () => reject(new Error(`helper server exited: ${child.stderr()}`));
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) exited();
    else child.proc.once('exit', exited);
    // Never hang the bench: a line trimmed from the captured tail, or one never printed.
    setTimeout(() => reject(new Error(`no {"port": N} line on ${stream} within 60 s`)), 60_000).unref();
  });
}

/** CPU time (user + system) a process has used so far, in seconds (Linux /proc, CLK_TCK 100). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Peak resident set (VmHWM) of a live process, MiB. */
export function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s*(\d+) kB/.exec(status)?.[1] ?? Number.NaN);
  return Math.round((kb / 1024) * 10) / 10;
}
