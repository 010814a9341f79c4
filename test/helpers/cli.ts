/** Runs the real `credbroker` command line (through tsx) as a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** Starts the CLI; the caller owns the process (it is killed at exit if still running). */
export function spawnCli(
  args: readonly string[],
  env: Record<string, string> = {},
  input?: string,
): ChildProcess & { output(): CliResult; exited: Promise<CliResult> } {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (input !== undefined) child.stdin!.end(input);
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const output = (): CliResult => ({ code: child.exitCode, signal: child.signalCode, stdout, stderr });
  const exited = new Promise<CliResult>((resolve) =>
    child.once('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    }),
  );
  return Object.assign(child, { output, exited });
}

/** Runs the CLI to completion (killed after `timeoutMs`). */
export async function runCli(
  args: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 15_000,
  input?: string,
): Promise<CliResult> {
  const child = spawnCli(args, env, input);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const result = await child.exited;
  clearTimeout(timer);
  return result;
}
