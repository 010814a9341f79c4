/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time by area (a package under
 * node_modules, a directory of src/, node internals, GC) and the top functions, as percentages
 * of the busy (non-idle) samples.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  /** µs on the monotonic clock (CLOCK_MONOTONIC on Linux, the clock of process.hrtime). */
  readonly startTime: number;
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileSummary {
  readonly busyPercentOfWall: number;
  readonly byArea: { area: string; percent: number }[];
  readonly topFunctions: { name: string; location: string; percent: number }[];
}

function areaOf(url: string, name: string): string {
  if (url === '') return name.startsWith('(') ? name : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const src = /\/(src\/[^/]+)\//.exec(url) ?? /\/(src)\/[^/]+$/.exec(url);
  if (src) return src[1]!;
  if (url.startsWith('node:'))
    return url
      .replace(/^node:(internal\/)?/, 'node:')
      .split('/')
      .slice(0, 2)
      .join('/');
  return url;
}

/** A span of process.hrtime.bigint() values (ns) to count samples in. */
export interface ProfileWindow {
  readonly startNs: bigint;
  readonly endNs: bigint;
}

/**
 * @param windows when given, only samples taken inside them count (e.g. the measurement rounds,
 *   not start-up or the storm); V8's profile clock and process.hrtime are both CLOCK_MONOTONIC.
 */
export function summariseProfile(file: string, windows?: readonly ProfileWindow[]): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let total = 0;
  let idle = 0;
  const inside = (us: number) =>
    windows === undefined ||
    windows.some((w) => us * 1000 >= Number(w.startNs) && us * 1000 <= Number(w.endNs));
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    at += dt;
    if (!inside(at)) return;
    total += dt;
    if (byId.get(id)?.callFrame.functionName === '(idle)') idle += dt;
    else self.set(id, (self.get(id) ?? 0) + dt);
  });
  const busy = total - idle;
  const areas = new Map<string, number>();
  const functions = new Map<string, { name: string; location: string; time: number }>();
  for (const [id, time] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const area = areaOf(url, functionName);
    areas.set(area, (areas.get(area) ?? 0) + time);
    const location = url === '' ? '' : `${url.replace(/^.*\/(node_modules|src)\//, '$1/')}:${lineNumber + 1}`;
    const key = `${functionName}@${location}`;
    const entry = functions.get(key) ?? { name: functionName || '(anonymous)', location, time: 0 };
    entry.time += time;
    functions.set(key, entry);
  }
  const pct = (t: number) => Math.round((t / busy) * 1000) / 10;
  return {
    busyPercentOfWall: Math.round((busy / total) * 1000) / 10,
    byArea: [...areas.entries()]
      .map(([area, t]) => ({ area, percent: pct(t) }))
      .sort((a, b) => b.percent - a.percent)
      .slice(0, 20),
    topFunctions: [...functions.values()]
      .map((f) => ({ name: f.name, location: f.location, percent: pct(f.time) }))
      .sort((a, b) => b.percent - a.percent)
      .slice(0, 30),
  };
}
