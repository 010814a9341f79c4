/**
 * `credbroker rotate-keys`: re-seals every token record in Redis under the key ring's active key.
 *
 * SCANs every master (each Cluster master in turn, sorted by address so a resume position stays
 * meaningful), and for each record not yet under the active key opens it with the ring and
 * writes the new envelope with a Lua compare-on-generation (RESEAL) that keeps the generation and
 * the TTL. A refresh that writes meanwhile makes the re-seal a no-op — its own write already used
 * the active key — so rotation never clobbers a rotated refresh token. Safe to re-run at any
 * time (records already current are only counted); after an interruption `--resume` continues
 * from the last printed position.
 */
import type { Redis } from 'ioredis';
import { Cluster } from 'ioredis';
import { isBrokerError } from '../core/errors.js';
import { ConfigError, loadConfig } from '../config/load.js';
import { envelopeKeyId } from '../store/envelope.js';
import { loadKeyRing, type KeyRing } from '../store/key-ring.js';
import { TOKEN_KEY_PATTERN, tokenKey } from '../store/keys.js';
import { openRecord, sealRecord } from '../store/record-codec.js';
import { connectRedis, type RedisClient } from '../store/redis-connection.js';
import { withScripts } from '../store/redis-store.js';

export interface RotationSummary {
  /** Records re-sealed under the active key by this run. */
  resealed: number;
  /** Records already under the active key. */
  alreadyCurrent: number;
  /** Records no ring key opens (lost key, tampered): left as they are; their users re-authenticate. */
  undecryptable: number;
  /** Records rewritten or deleted by the broker between our read and our re-seal (already current). */
  changedMeanwhile: number;
}

/** Where a run stopped: master index (sorted by address) and SCAN cursor. */
export interface RotationPosition {
  readonly node: number;
  readonly cursor: string;
}

export function formatPosition(p: RotationPosition): string {
  return `${p.node}:${p.cursor}`;
}

/** @throws Error when the text is not `node:cursor` */
export function parsePosition(text: string): RotationPosition {
  const m = /^(\d+):(\d+)$/.exec(text.trim());
  if (!m) throw new Error(`--resume: expected NODE:CURSOR as printed by a previous run, got "${text}"`);
  return { node: Number(m[1]), cursor: m[2]! };
}

export interface RotateKeysOptions {
  readonly client: RedisClient;
  readonly keyRing: KeyRing;
  /** Continue from this position (a previous run's last progress line). */
  readonly resume?: RotationPosition | undefined;
  /** SCAN COUNT hint. */
  readonly batch?: number;
  /** Called after every SCAN batch with the running totals and the position to resume from. */
  readonly onProgress?: (summary: Readonly<RotationSummary>, next: RotationPosition) => void;
}

function masters(client: RedisClient): Redis[] {
  const nodes = client instanceof Cluster ? client.nodes('master') : [client];
  return [...nodes].sort((a, b) => address(a).localeCompare(address(b)));
}

function address(node: Redis): string {
  return `${node.options.host ?? ''}:${node.options.port ?? ''}`;
}

/**
 * Re-seals every token record under `keyRing.active`.
 * @throws BrokerError STORE_UNAVAILABLE or the Redis error when Redis fails mid-way (re-run with
 *   `resume` from the last progress position)
 */
export async function rotateKeys(options: RotateKeysOptions): Promise<RotationSummary> {
  const { keyRing, batch = 500 } = options;
  const client = withScripts(options.client);
  const summary: RotationSummary = { resealed: 0, alreadyCurrent: 0, undecryptable: 0, changedMeanwhile: 0 };
  const nodes = masters(options.client);
  const start = options.resume ?? { node: 0, cursor: '0' };
  for (let n = start.node; n < nodes.length; n++) {
    const node = nodes[n]!;
    let cursor = n === start.node ? start.cursor : '0';
    do {
      const [next, keys] = await node.scan(
        cursor,
        'MATCH',
        TOKEN_KEY_PATTERN,
        'COUNT',
        batch,
        'TYPE',
        'hash',
      );
      for (const key of keys) await rotateOne(key);
      cursor = next;
      options.onProgress?.(summary, cursor === '0' ? { node: n + 1, cursor: '0' } : { node: n, cursor });
    } while (cursor !== '0');
  }
  return summary;

  async function rotateOne(key: string): Promise<void> {
    const [g, v, p, u] = await client.hmgetBuffer(key, 'g', 'v', 'p', 'u');
    if (!g || !v) {
      summary.changedMeanwhile += 1; // deleted or expired since the SCAN
      return;
    }
    if (envelopeKeyId(v) === keyRing.active.id) {
      summary.alreadyCurrent += 1;
      return;
    }
    if (!p || !u) {
      summary.undecryptable += 1;
      return;
    }
    const ref = { provider: p.toString('utf8'), userId: u.toString('utf8') };
    // A record copied under another user's key names its original owner: it opens for nobody.
    if (tokenKey(ref) !== key) {
      summary.undecryptable += 1;
      return;
    }
    const generation = Number(g.toString());
    let sealed: Buffer;
    try {
      const { record } = openRecord(keyRing, ref, v, generation);
      sealed = sealRecord(keyRing.active, ref, record);
    } catch (err) {
      if (!isBrokerError(err, 'REAUTH_REQUIRED')) throw err;
      summary.undecryptable += 1;
      return;
    }
    if ((await client.cbReseal(key, generation, sealed)) === 1) summary.resealed += 1;
    else summary.changedMeanwhile += 1;
  }
}

export interface RunRotateKeysOptions {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly configFile: string | undefined;
  readonly resume: string | undefined;
  readonly out: (line: string) => void;
  /** How long to wait for Redis to accept commands. */
  readonly connectTimeoutMs?: number;
}

/**
 * The command: loads the configuration like `serve`, connects to its Redis, rotates, prints
 * progress and a summary. @returns the exit code (0 done, 1 Redis failure)
 * @throws ConfigError / KeyRingError for bad settings (the CLI exits 2)
 */
export async function runRotateKeys(options: RunRotateKeysOptions): Promise<number> {
  const config = loadConfig({ env: options.env, file: options.configFile });
  const keyRing = loadKeyRing(config.store); // KeyRingError is a ConfigError: exit 2
  if (keyRing === undefined) {
    throw new ConfigError(['store.keys / store.keys_file: rotate-keys needs a key ring; none is configured']);
  }
  const connections = connectRedis(config.store);
  if (connections === undefined) {
    throw new ConfigError([
      'store.redis_url / redis_cluster / redis_sentinel: rotate-keys works on Redis; the memory store lives and dies with one process',
    ]);
  }
  let resume: RotationPosition | undefined;
  try {
    resume = options.resume === undefined ? undefined : parsePosition(options.resume);
  } catch (err) {
    options.out(`rotate-keys: ${(err as Error).message}`);
    return 2;
  }
  const { client } = connections;
  client.on('error', () => undefined);
  try {
    await waitReady(client, options.connectTimeoutMs ?? 10_000);
    options.out(
      `rotate-keys: re-sealing every record under key "${keyRing.active.id}" (${connections.kind})`,
    );
    const started = Date.now();
    const summary = await rotateKeys({
      client,
      keyRing,
      resume,
      onProgress: (s, next) =>
        options.out(
          `rotate-keys: re-sealed ${s.resealed}, already current ${s.alreadyCurrent}, undecryptable ${s.undecryptable}, changed meanwhile ${s.changedMeanwhile} (resume: --resume ${formatPosition(next)})`,
        ),
    });
    options.out(
      `rotate-keys: done in ${Date.now() - started} ms: re-sealed ${summary.resealed}, already current ${summary.alreadyCurrent}, undecryptable ${summary.undecryptable}, changed meanwhile ${summary.changedMeanwhile}`,
    );
    return 0;
  } catch (err) {
    options.out(
      `rotate-keys: failed: ${(err as Error).message} — safe to re-run, or continue with the last --resume`,
    );
    return 1;
  } finally {
    client.disconnect();
  }
}

function waitReady(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new Error(`Redis did not become ready within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = (): void => {
      clearTimeout(timer);
      resolve();
    };
    client.once('ready', onReady);
  });
}
