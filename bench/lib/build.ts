/**
 * The benchmarks run compiled JavaScript, as production does: `dist/` from `npm run build` for the
 * broker (`node dist/cli.js serve`), and the bench's own servers (echo baseline, server-layer
 * diagnostic) compiled with the same tsc. tsx would add its loader's memory and esbuild helpers
 * (`__name` on every function expression) that production does not have.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './processes.js';

const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

/** `npm run build`: src/ → dist/. Type errors do not stop tsc's emit; a missing output does. */
export function buildDist(): string {
  const tsc = spawnSync(process.execPath, [TSC, '-p', 'tsconfig.build.json'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  const cli = join(ROOT, 'dist/cli.js');
  if (!existsSync(cli)) throw new Error(`npm run build did not produce dist/cli.js:\n${tsc.stdout}`);
  return cli;
}

/**
 * Compiles the whole repository (src, bench, …) into `outDir` with tsc; returns `outDir`. The
 * output gets `"type": "module"` and a link to proto/ (reflection loads it from ../../proto).
 */
export function buildBench(outDir: string): string {
  rmSync(outDir, { recursive: true, force: true });
  const tsc = spawnSync(
    process.execPath,
    [TSC, '-p', 'tsconfig.json', '--noEmit', 'false', '--outDir', outDir, '--sourceMap', 'false'],
    { cwd: ROOT, encoding: 'utf8' },
  );
  if (!existsSync(join(outDir, 'bench/server-layer.js'))) throw new Error(`tsc did not emit:\n${tsc.stdout}`);
  writeFileSync(join(outDir, 'package.json'), '{"type":"module"}\n');
  symlinkSync(join(ROOT, 'proto'), join(outDir, 'proto'));
  return outDir;
}

/**
 * NODE_OPTIONS of the shipped Kubernetes Deployment (deploy/kubernetes/deployment.yaml): the
 * brokers run with the runtime flags production runs with, and echo and the server layer with the
 * same, so that the comparison is between servers, not between V8 heap settings. The heap limit
 * matters for memory: V8 sizes its old generation's growth from it (peak RSS under the bench load
 * ≈ 180 MiB without it, ≈ 120 MiB with it, docs/PERFORMANCE.md).
 */
export function deploymentNodeOptions(): string {
  const manifest = readFileSync(join(ROOT, 'deploy/kubernetes/deployment.yaml'), 'utf8');
  const value = /- name: NODE_OPTIONS\s*\n\s*value: *["']?([^"'\n]*)/.exec(manifest)?.[1]?.trim();
  if (!value) throw new Error('deploy/kubernetes/deployment.yaml sets no NODE_OPTIONS');
  return value;
}
