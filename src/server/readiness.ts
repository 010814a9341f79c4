/**
 * Readiness that tells the truth (docs/architecture.md §6): the store is probed every `intervalMs`; while it is
 * unreachable the API service `credbroker.v1.CredentialBroker` reports NOT_SERVING, so Kubernetes
 * takes the pod out of its Service endpoints, and it flips back to SERVING on the first probe
 * that succeeds. The overall service "" (liveness) is never touched here: a Redis outage must not
 * make the kubelet restart every replica. Only transitions are logged, not every probe.
 *
 * Start-up: a store client is still connecting when the first probe runs, and fails fast instead
 * of queueing. So for `startupMs` after start, failures before the first success are reported to
 * health (honestly NOT_SERVING) but not logged, and probes repeat every STARTUP_RETRY_MS; only a
 * store still unreachable after that window is logged as unreachable.
 */
import type { Logger } from '../logger.js';
import type { Health } from './health.js';

export interface ReadinessOptions {
  /**
   * One round trip to the store (production: `() => store.ping()`). Ready when it resolves to
   * anything but `false`; not ready when it rejects, resolves `false` or outlasts `timeoutMs`.
   */
  readonly probe: () => Promise<unknown>;
  readonly health: Pick<Health, 'setReady'>;
  /** Time between the end of one probe and the start of the next, in ms. */
  readonly intervalMs: number;
  /** A probe taking longer counts as a failure; default `intervalMs`. */
  readonly timeoutMs?: number;
  readonly logger: Logger;
  /** Told every probe result (metrics: credbroker_store_up). */
  readonly onResult?: (ready: boolean) => void;
  /** Start-up window in ms (see above); default `intervalMs`. */
  readonly startupMs?: number;
}

export interface Readiness {
  /** The last probe's result (true before the first one ends). */
  readonly ready: boolean;
  /** Probes now, applies the result and resolves with it. */
  check(): Promise<boolean>;
  /**
   * Resolves true at the first successful probe, or false when the start-up window ends first:
   * the entry point awaits it before binding, so a fresh replica is ready when it first answers.
   */
  started(): Promise<boolean>;
  /** Stops probing; the health status is left as it is (shutdown marks NOT_SERVING itself). */
  close(): void;
}

class ProbeTimeout extends Error {}

/** Probe period until the store first answers (bounded by `intervalMs`). */
const STARTUP_RETRY_MS = 100;

/** Starts probing at once, then every `intervalMs`. */
export function startReadiness(options: ReadinessOptions): Readiness {
  const { probe, health, intervalMs, logger } = options;
  const timeoutMs = options.timeoutMs ?? intervalMs;
  const startupMs = options.startupMs ?? intervalMs;
  const startedAt = Date.now();
  let ready = true;
  /** The state last logged (the health service starts SERVING). */
  let reported = true;
  let everReady = false;
  let closed = false;
  let resolveStarted: (ready: boolean) => void = () => {};
  const startedPromise = new Promise<boolean>((resolve) => {
    resolveStarted = resolve;
  });
  const inStartup = () => !everReady && Date.now() - startedAt < startupMs;
  const startupTimer = setTimeout(() => resolveStarted(ready && everReady), startupMs);
  startupTimer.unref();
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<boolean> | undefined;

  const runProbe = async (): Promise<boolean> => {
    let timeout: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        probe(),
        new Promise<never>((_, reject) => {
          timeout = setTimeout(() => reject(new ProbeTimeout(`no answer within ${timeoutMs} ms`)), timeoutMs);
          timeout.unref();
        }),
      ]);
      return apply(result !== false, undefined);
    } catch (err) {
      return apply(false, err);
    } finally {
      clearTimeout(timeout);
    }
  };

  const apply = (now: boolean, err: unknown): boolean => {
    if (closed) return now;
    if (now) {
      everReady = true;
      clearTimeout(startupTimer);
      resolveStarted(true);
    }
    if (now !== reported && !(inStartup() && !now)) {
      if (now) logger.info('store reachable again: readiness SERVING');
      else logger.warn({ err }, 'store unreachable: readiness NOT_SERVING');
      reported = now;
    }
    ready = now;
    health.setReady(now);
    options.onResult?.(now);
    return now;
  };

  const check = (): Promise<boolean> => {
    inFlight ??= runProbe().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };

  const loop = (): void => {
    if (closed) return;
    void check().then(() => {
      if (closed) return;
      timer = setTimeout(loop, inStartup() ? Math.min(STARTUP_RETRY_MS, intervalMs) : intervalMs);
      timer.unref();
    });
  };
  loop();

  return {
    get ready() {
      return ready;
    },
    check,
    started: () => startedPromise,
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      clearTimeout(startupTimer);
      resolveStarted(ready && everReady);
    },
  };
}
