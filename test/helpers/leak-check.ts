/**
 * Mocha root hook plugin (.mocharc.json `require`): a suite must leave no server, socket, child
 * process or timer behind (house style §9), so mocha runs without `exit: true` and ends by itself.
 * After the last test this hook waits briefly for closing handles to finish closing, then fails
 * the run naming whatever still keeps the process alive. If something the check cannot see keeps
 * it alive anyway, a last unref'd timer (which fires only while the process is being kept alive)
 * lists it and exits with status 1 instead of hanging CI.
 *
 * CREDBROKER_TRACE_HANDLES=1 records where each timer, socket and process was created, and the
 * failure shows those stacks (costly; for finding a leak, not for every run).
 */
import { createHook } from 'node:async_hooks';
import type { Context } from 'mocha';
import { setTimeout as sleep } from 'node:timers/promises';

/** How long handles may take to finish closing after the last test. */
const SETTLE_MS = 3_000;
/** How long the process may stay alive after the run before it is treated as hung. */
const HANG_MS = 10_000;

interface Traced {
  readonly type: string;
  readonly stack: string;
  readonly trigger: number;
  readonly resource: WeakRef<object>;
}
/** Every live async resource but promises (handles, timers, immediates, requests), by async id. */
const traced = new Map<number, Traced>();
const KEPT_TYPES = new Set(['Timeout', 'TCPWRAP', 'TCPSERVERWRAP', 'PROCESSWRAP', 'PIPEWRAP', 'UDPWRAP']);
if (process.env.CREDBROKER_TRACE_HANDLES === '1') {
  Error.stackTraceLimit = 40;
  createHook({
    init(asyncId, type, trigger, resource) {
      if (type === 'PROMISE') return;
      const stack = (new Error().stack ?? '')
        .split('\n')
        .slice(1)
        .filter((line) => !line.includes('node:internal') && !line.includes('leak-check.ts'))
        .slice(0, 8)
        .join('\n');
      traced.set(asyncId, { type, stack, trigger, resource: new WeakRef(resource) });
    },
    destroy(asyncId) {
      // Kept for the origin chain of what they created; a diagnostic run can afford it.
      if (KEPT_TYPES.has(traced.get(asyncId)?.type ?? '')) traced.delete(asyncId);
    },
  }).enable();
}

/** Where a resource was created, and where what created it was created (a few levels up). */
function origin(t: Traced): string {
  const r = t.resource.deref() as { _idleTimeout?: number; _repeat?: number | null; _onTimeout?: () => void };
  const what =
    t.type === 'Timeout' && r !== undefined
      ? ` (${r._repeat ? 'interval' : 'timeout'} ${r._idleTimeout} ms, ${String(r._onTimeout).slice(0, 120)})`
      : '';
  const parts = [`${t.type}${what} created at\n${t.stack}`];
  for (let up = traced.get(t.trigger), depth = 0; up !== undefined && depth < 4; depth++) {
    parts.push(`  … in a ${up.type} created at\n${up.stack}`);
    up = traced.get(up.trigger);
  }
  return parts.join('\n');
}

interface NodeHandle {
  constructor: { name: string };
  fd?: number;
  _handle?: { fd?: number } | null;
  pid?: number;
  spawnargs?: string[];
  localAddress?: string;
  localPort?: number;
  remoteAddress?: string;
  remotePort?: number;
  address?: () => unknown;
  hasRef?: () => boolean;
}

/** `process._getActiveHandles` is undocumented but stable; it names what a resource type cannot. */
function activeHandles(): NodeHandle[] {
  const p = process as unknown as { _getActiveHandles?: () => NodeHandle[] };
  return p._getActiveHandles?.() ?? [];
}

function isStdio(h: NodeHandle): boolean {
  const fd = h.fd ?? h._handle?.fd;
  return fd === 0 || fd === 1 || fd === 2;
}

function describeHandle(h: NodeHandle): string {
  const name = h.constructor.name;
  if (h.pid !== undefined) return `${name} pid ${h.pid}: ${(h.spawnargs ?? []).join(' ').slice(0, 200)}`;
  if (h.remotePort !== undefined)
    return `${name} ${h.localAddress}:${h.localPort} -> ${h.remoteAddress}:${h.remotePort}`;
  if (typeof h.address === 'function') {
    try {
      return `${name} listening on ${JSON.stringify(h.address())}`;
    } catch {
      return name;
    }
  }
  return name;
}

/** What keeps the process alive besides stdio, or [] when nothing does. */
export function leftovers(): string[] {
  const handles = activeHandles()
    .filter((h) => !isStdio(h) && h.hasRef?.() !== false)
    .map(describeHandle);
  const timers = process.getActiveResourcesInfo().filter((t) => t === 'Timeout').length;
  const found = timers > 0 ? [...handles, `${timers} timer(s)`] : handles;
  if (found.length === 0 || traced.size === 0) return found;
  const stacks = [...traced.values()]
    .filter((t) => {
      if (!KEPT_TYPES.has(t.type)) return false;
      const r = t.resource.deref() as { hasRef?: () => boolean; _destroyed?: boolean } | undefined;
      return r !== undefined && r._destroyed !== true && r.hasRef?.() !== false;
    })
    .map(origin);
  return [...found, ...stacks];
}

export const mochaHooks = {
  async afterAll(this: Context): Promise<void> {
    // Mocha starts this hook's timeout timer once the hook returns its promise; that timer would
    // count as a leftover, so stop it (the wait below is bounded by SETTLE_MS anyway).
    const hook = this.test;
    await Promise.resolve();
    hook?.clearTimeout();
    let found = leftovers();
    for (let waited = 0; found.length > 0 && waited < SETTLE_MS; waited += 100) {
      await sleep(100);
      found = leftovers();
    }
    setTimeout(() => {
      console.error(
        `the test process is still alive ${HANG_MS} ms after the run:\n  ${leftovers().join('\n  ')}`,
      );
      process.exit(1);
    }, HANG_MS).unref();
    if (found.length > 0)
      throw new Error(`the tests left handles open (they keep the process alive):\n  ${found.join('\n  ')}`);
  },
};
