/**
 * loadConfig (./load.ts) in a worker thread, for the `serve` command: the YAML parser and the
 * schema library are needed once, at start-up, and would otherwise stay on the serving heap for
 * the life of the process (≈ 4.2 MB that every full garbage collection marks again; see
 * docs/PERFORMANCE.md, sixth pass). The worker validates and reads the secret files, posts the
 * plain result back and exits, and its heap goes with it. Same errors as loadConfig.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { deepFreeze } from '../core/freeze.js';
import { ConfigError } from './error.js';
import type { Config } from './load.js';

export interface IsolatedLoadOptions {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly file?: string | undefined;
}

/** What the worker posts: the configuration, or why there is none. */
export type LoadReply =
  | { readonly ok: true; readonly config: Config }
  | { readonly ok: false; readonly problems: readonly string[] }
  | { readonly ok: false; readonly problems?: undefined; readonly message: string };

/** The worker's module beside this one (.ts when this runs from the sources). */
const WORKER = new URL(
  import.meta.url.endsWith('.ts') ? './load-worker.ts' : './load-worker.js',
  import.meta.url,
);

interface TsxManifest {
  readonly exports: { readonly './esm/api': { readonly import: { readonly default: string } } };
}

/**
 * Starts the worker. Run from the TypeScript sources (tests, `npm run dev`: tsx), the worker first
 * registers tsx itself: on Node 20 a worker does not inherit the loader hooks that `--import tsx`
 * registered (privatenumber/tsx#354). The built server never takes that branch.
 */
function startWorker(module: URL, workerData: IsolatedLoadOptions): Worker {
  const options = { workerData, stdout: false, stderr: false };
  if (!module.pathname.endsWith('.ts')) return new Worker(module, options);
  // tsx's ESM API as `import` resolves it (this module may itself run as CommonJS under tsx).
  const manifest = createRequire(import.meta.url).resolve('tsx/package.json');
  const { exports } = JSON.parse(readFileSync(manifest, 'utf8')) as TsxManifest;
  const api = JSON.stringify(new URL(exports['./esm/api'].import.default, pathToFileURL(manifest)).href);
  const code = `import(${api}).then((tsx) => { tsx.register(); return import(${JSON.stringify(module.href)}); });`;
  return new Worker(code, { ...options, eval: true });
}

/**
 * Loads, validates and freezes the configuration in a worker; resolves once the worker has exited.
 * `worker`: the worker's module (tests replace it to exercise the failure paths).
 * @throws ConfigError naming every bad field or variable, as loadConfig; Error when the worker
 *   fails otherwise (it threw, or exited without an answer).
 */
export function loadConfigIsolated(options: IsolatedLoadOptions, worker: URL = WORKER): Promise<Config> {
  return new Promise((resolve, reject) => {
    let reply: LoadReply | undefined;
    let failure: Error | undefined;
    const thread = startWorker(worker, { env: { ...options.env }, file: options.file });
    thread.once('message', (message: LoadReply) => {
      reply = message;
    });
    thread.once('error', (err) => {
      failure = err;
    });
    thread.once('exit', (code) => {
      if (reply?.ok === true) resolve(deepFreeze(reply.config));
      else if (reply?.problems !== undefined) reject(new ConfigError(reply.problems));
      else if (reply !== undefined) reject(new Error(`loading the configuration failed: ${reply.message}`));
      else
        reject(failure ?? new Error(`loading the configuration failed: the worker exited with code ${code}`));
    });
  });
}
