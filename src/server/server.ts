/**
 * The broker's gRPC server: the CredentialBroker API, grpc.health.v1 and (optionally) reflection
 * on the API port, plus a plaintext port that serves nothing but grpc.health.v1 for the kubelet's
 * gRPC probe (which cannot speak TLS). Owns the shutdown sequence: NOT_SERVING (calls are still
 * served), stop accepting, drain in-flight calls up to the grace period, answer those left
 * SHUTTING_DOWN, force, then close resources.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Server, ServerCredentials, type ChannelOptions } from '@grpc/grpc-js';
import type { BrokerApi } from '../broker/api.js';
import type { AuditLog } from '../broker/audit.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../logger.js';
import { BrokerError, ErrorReason } from '../core/errors.js';
import { InFlightCalls, type Authorizer, type CallObserver } from './call.js';
import { createHealth, type Health } from './health.js';
import { createReflection } from './reflection.js';
import { auditObserver, createAuditLog } from './security/audit.js';
import { createAuthorizer } from './security/authorize.js';
import { createTlsCredentials } from './security/tls.js';
import { createCredentialBrokerService, credentialBrokerDefinition } from './service.js';

export interface BrokerServerOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly api: BrokerApi;
  readonly observers?: readonly CallObserver[];
  /** Default: the `callers` policy of src/server/security/authorize.ts. */
  readonly authorize?: Authorizer;
  /** Credentials of the API port; default: from `tls` (reloading), else plaintext. */
  readonly credentials?: ServerCredentials;
  /** Where call outcomes are audited; default: a logger named `audit` beside `logger`. */
  readonly audit?: AuditLog;
  /** Closed, in order, at the end of shutdown (store connections, IdP clients, timers). */
  readonly resources?: readonly { close(): Promise<void> | void }[];
}

export interface BoundPorts {
  readonly api: number;
  /** Undefined when health_listen is empty. */
  readonly health: number | undefined;
}

function splitHostPort(address: string): { host: string; port: string } {
  const at = address.lastIndexOf(':');
  return { host: address.slice(0, at), port: address.slice(at + 1) };
}

/** Replaces the port of `host:port` (for logs: the bound port, not `:0`). */
export function withPort(address: string, port: number): string {
  return `${splitHostPort(address).host}:${port}`;
}

/**
 * What a call still in flight when `shutdown_grace` expires is answered (UNAVAILABLE, ErrorInfo
 * SHUTTING_DOWN, RetryInfo from ./errors.ts) instead of the bare CANCELLED of forceShutdown,
 * which most clients do not retry: this tells them to retry on another replica.
 */
const shuttingDown = new BrokerError(
  ErrorReason.SHUTTING_DOWN,
  'the broker is shutting down: retry the call (another replica will answer it)',
);

/** After the grace period: how long the SHUTTING_DOWN answers get to be written before forcing. */
const FLUSH_MS = 1000;

export class BrokerServer {
  readonly health: Health;
  private readonly api: Server;
  private readonly healthServer: Server | undefined;
  private readonly credentials: ServerCredentials;
  private readonly options: BrokerServerOptions;
  private closing: Promise<void> | undefined;
  private bound: BoundPorts | undefined;
  private readonly inFlight = new InFlightCalls();

  constructor(options: BrokerServerOptions) {
    this.options = options;
    const { config, logger } = options;
    this.health = createHealth();
    const serverOptions: ChannelOptions = {
      'grpc.max_receive_message_length': config.max_receive_message_bytes,
      'grpc.max_send_message_length': 1024 * 1024,
      // Let clients keep idle channels open with keepalive pings (backends call us constantly).
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    };
    this.api = new Server(serverOptions);
    this.credentials =
      options.credentials ??
      (config.tls ? createTlsCredentials(config.tls, logger) : ServerCredentials.createInsecure());
    this.api.addService(
      credentialBrokerDefinition,
      createCredentialBrokerService({
        api: options.api,
        providers: {
          ids: config.providers.map((p) => p.id),
          downstreams: Object.fromEntries(
            config.providers.map((p) => [p.id, p.downstreams.map((d) => d.id)]),
          ),
        },
        logger,
        observers: [...(options.observers ?? []), auditObserver(options.audit ?? createAuditLog(logger))],
        authorize:
          options.authorize ??
          createAuthorizer({
            callers: config.callers,
            insecure: config.insecure,
            tls: config.tls !== undefined,
          }),
        inFlight: this.inFlight,
      }),
    );
    this.health.implementation.addToServer(this.api);
    if (config.reflection) createReflection().addToServer(this.api);
    if (config.health_listen !== '') {
      this.healthServer = new Server({ 'grpc.max_receive_message_length': 4096 });
      this.health.implementation.addToServer(this.healthServer);
    }
  }

  /** Binds the ports. @throws when an address cannot be bound. */
  async start(): Promise<BoundPorts> {
    const { config } = this.options;
    const bind = (server: Server, address: string, credentials: ServerCredentials) =>
      new Promise<number>((resolve, reject) =>
        server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port))),
      );
    const api = await bind(this.api, config.listen, this.credentials);
    const health = this.healthServer
      ? await bind(this.healthServer, config.health_listen, ServerCredentials.createInsecure())
      : undefined;
    this.bound = { api, health };
    return this.bound;
  }

  get ports(): BoundPorts | undefined {
    return this.bound;
  }

  /**
   * Graceful shutdown; idempotent. Health goes NOT_SERVING at once, but calls are served as
   * usual during `shutdown_delay` (endpoint removal reaches kube-proxy, ingresses and client-side
   * resolvers late, so calls keep arriving); then the server stops accepting calls and in-flight
   * calls may finish until `shutdown_grace`, after which those left are answered UNAVAILABLE /
   * SHUTTING_DOWN with RetryInfo and the connections are closed. Resources are closed last.
   */
  shutdown(): Promise<void> {
    this.closing ??= this.runShutdown();
    return this.closing;
  }

  private async runShutdown(): Promise<void> {
    const { config, logger } = this.options;
    this.health.markShuttingDown();
    logger.info({ delayMs: config.shutdown_delay, graceMs: config.shutdown_grace }, 'shutting down');
    if (config.shutdown_delay > 0) await sleep(config.shutdown_delay);
    const drained = new Promise<boolean>((resolve) => this.api.tryShutdown(() => resolve(true)));
    const grace = sleep(config.shutdown_grace, false, { ref: false });
    if (!(await Promise.race([drained, grace]))) {
      const ended = this.inFlight.endAll(shuttingDown);
      logger.warn({ calls: ended }, 'grace period over: answering the calls still in flight SHUTTING_DOWN');
      // Let those answers reach the wire (the drain ends once their streams close; a health
      // Watch stream may keep a connection open), then cut what is left.
      const flushed = sleep(FLUSH_MS, false, { ref: false });
      if (!(await Promise.race([drained, flushed]))) this.api.forceShutdown();
    }
    this.healthServer?.forceShutdown();
    for (const resource of this.options.resources ?? []) {
      try {
        await resource.close();
      } catch (err) {
        logger.error({ err }, 'closing a resource failed');
      }
    }
    logger.info('shut down');
  }
}
