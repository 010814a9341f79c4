/**
 * A real three-master Redis Cluster for tests: three `redis-server --cluster-enabled yes` on free
 * loopback ports, each with its own directory (nodes.conf) under one temp dir, joined with
 * `redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`. Resolves once every node
 * reports `cluster_state:ok` and sees every master and replica. `stop()` kills all three and removes the directory.
 * With `replicas` > 0, that many more nodes per master join as its replicas (for failover
 * tests: CLUSTER FAILOVER on a replica); `ports` then lists masters and replicas alike.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { freePort } from './ports.js';
import { requireRedisServer, waitForPort } from './redis.js';

export interface RedisCluster {
  readonly ports: readonly number[];
  /** Seed URLs, one per node. */
  readonly urls: readonly string[];
  /** Kills node `i` (SIGKILL: an outage). Its slots become unavailable (without replicas). */
  stopNode(i: number): Promise<void>;
  /** Starts node `i` again on its port with its nodes.conf; resolves once the cluster is settled. */
  startNode(i: number): Promise<void>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

function clusterCommand(port: number, subcommand: 'info' | 'nodes'): string {
  const r = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'cluster', subcommand], {
    encoding: 'utf8',
    timeout: 5_000,
  });
  return r.stdout ?? '';
}

/**
 * Whether the node at `port` sees the whole topology: `masters` masters and `replicas` replicas
 * per master, each replica attached to a known master, no node flagged fail or handshake.
 * cluster_state:ok alone comes before gossip has told every node who replicates whom.
 */
function seesTopology(port: number, masters: number, replicas: number): boolean {
  const lines = clusterCommand(port, 'nodes').trim().split('\n').filter(Boolean);
  const fields = lines.map((line) => line.split(' '));
  if (fields.some((f) => /fail|handshake|noaddr/.test(f[2] ?? ''))) return false;
  const masterIds = new Set(fields.filter((f) => f[2]?.includes('master')).map((f) => f[0]));
  const attached = fields.filter((f) => f[2]?.includes('slave') && masterIds.has(f[3]));
  return masterIds.size === masters && attached.length === masters * replicas;
}

export async function startRedisCluster(nodes = 3, replicas = 0): Promise<RedisCluster> {
  requireRedisServer();
  const dir = mkdtempSync(join(tmpdir(), 'credbroker-cluster-'));
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(children.map((proc) => kill(proc)));
    rmSync(dir, { recursive: true, force: true });
  };
  const spawnNode = (i: number): void => {
    const port = ports[i]!;
    const nodeDir = join(dir, String(port));
    const proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(nodeDir, 'nodes.conf'),
        '--cluster-node-timeout',
        '2000',
        '--dir',
        nodeDir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'yes',
      ],
      { stdio: 'ignore' },
    );
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    children[i] = proc;
  };
  const waitOk = async (): Promise<void> => {
    const until = Date.now() + 20_000;
    const settled = (port: number) =>
      clusterCommand(port, 'info').includes('cluster_state:ok') && seesTopology(port, nodes, replicas);
    while (!ports.every(settled)) {
      if (Date.now() > until)
        throw new Error(
          'the Redis Cluster did not reach cluster_state:ok with its whole topology within 20 s',
        );
      await sleep(100);
    }
  };
  const kill = async (proc: ChildProcess | undefined): Promise<void> => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
  };
  try {
    for (let i = 0; i < nodes * (1 + replicas); i++) {
      const port = await freePort();
      mkdirSync(join(dir, String(port)));
      ports.push(port);
      spawnNode(i);
    }
    await Promise.all(ports.map((port) => waitForPort(port)));
    const create = spawnSync(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...ports.map((p) => `127.0.0.1:${p}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (create.status !== 0)
      throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    await waitOk();
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    ports,
    urls: ports.map((p) => `redis://127.0.0.1:${p}`),
    stopNode: (i) => kill(children[i]),
    startNode: async (i) => {
      spawnNode(i);
      await waitForPort(ports[i]!);
      await waitOk();
    },
    stop,
  };
}

/**
 * CLUSTER FAILOVER on the replica at `port` (a coordinated manual failover: it catches up with
 * its master, then takes over): waits for its replication link to be up first, and asks again
 * when an attempt timed out (Redis aborts one after 5 s). Resolves once it is a master.
 */
export async function clusterFailover(port: number, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  const node = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
  node.on('error', () => undefined);
  const isMaster = async () => ((await node.call('ROLE')) as string[])[0] === 'master';
  try {
    while (!(await node.info('replication')).includes('master_link_status:up')) {
      if (Date.now() > until) throw new Error(`replica ${port} never got its replication link up`);
      await sleep(50);
    }
    for (;;) {
      await node.call('CLUSTER', 'FAILOVER');
      const attemptUntil = Date.now() + 6_000;
      while (Date.now() < attemptUntil) {
        if (await isMaster()) return;
        await sleep(50);
      }
      if (Date.now() > until) throw new Error(`replica ${port} did not take over within ${timeoutMs} ms`);
    }
  } finally {
    node.disconnect();
  }
}
