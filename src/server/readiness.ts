/**
 * Readiness that tells the truth (DESIGN §6): the store is probed every `intervalMs`; while it is
 * unreachable the API service `credbroker.v1.CredentialBroker` reports NOT_SERVING, so Kubernetes
 * takes the pod out of its Service endpoints, and it flips back to SERVING on the first probe
 * that succeeds. The overall service "" (liveness) is never touched here: a Redis outage must not
 * make the kubelet restart every replica. Only transitions are logged, not every probe.
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
}

export interface Readiness {
  /** The last probe's result (true before the first one ends). */
  readonly ready: boolean;
  /** Probes now, applies the result and resolves with it. */
  check(): Promise<boolean>;
  /** Stops probing; the health status is left as it is (shutdown marks NOT_SERVING itself). */
  close(): void;
}

class ProbeTimeout extends Error {}

/** Starts probing at once, then every `intervalMs`. */
export function startReadiness(options: ReadinessOptions): Readiness {
  const { probe, health, intervalMs, logger } = options;
  const timeoutMs = options.timeoutMs ?? intervalMs;
  let ready = true;
  let closed = false;
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
    if (now !== ready) {
      if (now) logger.info('store reachable again: readiness SERVING');
      else logger.warn({ err }, 'store unreachable: readiness NOT_SERVING');
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
      timer = setTimeout(loop, intervalMs);
      timer.unref();
    });
  };
  loop();

  return {
    get ready() {
      return ready;
    },
    check,
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
    },
  };
}
