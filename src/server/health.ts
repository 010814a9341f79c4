/**
 * grpc.health.v1 for the whole server ("") and for the API service. The overall service is
 * liveness (SERVING until shutdown); the API service is readiness (NOT_SERVING while the store
 * is unreachable or during shutdown). One instance can be added to several servers (the API port
 * and the plaintext health port) and answers the same on each.
 */
import { HealthImplementation } from 'grpc-health-check';

export const API_SERVICE_NAME = 'credbroker.v1.CredentialBroker';
export const OVERALL = '';

export interface Health {
  readonly implementation: HealthImplementation;
  /** Readiness of the API service (e.g. the store is reachable). Ignored once shutting down. */
  setReady(ready: boolean): void;
  /** Both services NOT_SERVING, for good. */
  markShuttingDown(): void;
  readonly shuttingDown: boolean;
}

export function createHealth(): Health {
  const implementation = new HealthImplementation({ [OVERALL]: 'SERVING', [API_SERVICE_NAME]: 'SERVING' });
  let shuttingDown = false;
  return {
    implementation,
    setReady(ready) {
      if (!shuttingDown) implementation.setStatus(API_SERVICE_NAME, ready ? 'SERVING' : 'NOT_SERVING');
    },
    markShuttingDown() {
      shuttingDown = true;
      implementation.setStatus(API_SERVICE_NAME, 'NOT_SERVING');
      implementation.setStatus(OVERALL, 'NOT_SERVING');
    },
    get shuttingDown() {
      return shuttingDown;
    },
  };
}
