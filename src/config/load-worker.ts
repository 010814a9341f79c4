/** The worker of ./isolated.ts: runs loadConfig once and posts the result. */
import { parentPort, workerData } from 'node:worker_threads';
import type { IsolatedLoadOptions, LoadReply } from './isolated.js';
import { ConfigError, loadConfig } from './load.js';

const { env, file } = workerData as IsolatedLoadOptions;
let reply: LoadReply;
try {
  reply = { ok: true, config: loadConfig({ env, file }) };
} catch (err) {
  reply =
    err instanceof ConfigError
      ? { ok: false, problems: err.problems }
      : { ok: false, message: err instanceof Error ? err.message : String(err) };
}
parentPort!.postMessage(reply);
