/** `credbroker healthcheck`: grpc.health.v1 Check; exit 0 only when SERVING (Docker, exec probes). */
import { credentials, makeGenericClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

export interface HealthCheckOptions {
  readonly address: string;
  readonly service: string;
  readonly timeoutMs: number;
}

/** Resolves to the serving status name, or rejects with the call's error. */
export function checkHealth(options: HealthCheckOptions): Promise<string> {
  const HealthClient = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');
  const client = new HealthClient(options.address, credentials.createInsecure());
  return new Promise<string>((resolve, reject) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      (value: { service: string }) => healthService.Check!.requestSerialize(value),
      (buffer: Buffer) => healthService.Check!.responseDeserialize(buffer) as { status: string },
      { service: options.service },
      { deadline: Date.now() + options.timeoutMs },
      (err: ServiceError | null, response?: { status: string }) => {
        client.close();
        if (err) reject(err);
        else resolve(String(response?.status ?? 'UNKNOWN'));
      },
    );
  });
}

/** The local address to probe for a listen address: a wildcard host becomes loopback. */
export function localAddress(listen: string): string {
  const at = listen.lastIndexOf(':');
  const host = listen.slice(0, at);
  const port = listen.slice(at + 1);
  if (host === '0.0.0.0' || host === '') return `127.0.0.1:${port}`;
  if (host === '[::]' || host === '::') return `[::1]:${port}`;
  return listen;
}
