/**
 * `credbroker serve`: load the configuration, build the app, serve until SIGTERM/SIGINT, then
 * shut down gracefully and exit 0.
 */
import { createApp } from './app.js';
import { loadConfigIsolated } from './config/isolated.js';
import type { Config } from './config/load.js';
import { validateDeployment } from './deployment.js';
import { createLogger, flushStdout, type Logger } from './logger.js';
import { routeGrpcLogs } from './server/grpc-logs.js';
import { createMetrics, type MetricsHttpServer } from './server/metrics.js';
import { startReadiness, type Readiness } from './server/readiness.js';
import { BrokerServer, withPort } from './server/server.js';

export interface Running {
  readonly server: BrokerServer;
  readonly config: Config;
  readonly logger: Logger;
  /** The bound metrics port; undefined when metrics_listen is empty. */
  readonly metricsPort: number | undefined;
}

/**
 * Starts the broker with an already-loaded configuration.
 * @throws ConfigError (one line per problem, naming the field) when validateDeployment refuses the
 *   configuration: exposure without caller authentication, TLS files, key ring, Redis password
 *   files, a provider (src/deployment.ts) — the same checks `credbroker check-config` runs.
 */
export async function startBroker(config: Config, logger: Logger): Promise<Running> {
  const deployment = await validateDeployment(config, logger);
  if (deployment.insecure.length > 0) {
    logger.warn(
      { insecure: config.insecure, reasons: deployment.insecure },
      `RUNNING INSECURE: ${deployment.insecure.join('; ')}`,
    );
  }
  const { credentials } = deployment;
  routeGrpcLogs(logger);
  const metrics = createMetrics();
  const app = await createApp(config, logger, { metrics: metrics.brokerMetrics, validated: deployment });
  let readiness: Readiness | undefined;
  let metricsHttp: MetricsHttpServer | undefined;
  const server = new BrokerServer({
    config,
    logger,
    api: app.api,
    observers: [metrics.observer],
    audit: app.audit,
    ...(credentials ? { credentials } : {}),
    // Stop probing first (shutdown owns health now); keep /metrics up until the very end.
    resources: [{ close: () => readiness?.close() }, ...app.resources, { close: () => metricsHttp?.close() }],
  });
  if (app.probe) {
    // Bind once the store has answered (or the start-up window, one probe interval, is over),
    // so a fresh replica is ready when it first answers and readiness is honest from the start.
    readiness = startReadiness({
      probe: app.probe,
      health: server.health,
      intervalMs: config.store.probe_interval,
      logger,
      onResult: metrics.setStoreUp,
    });
    await readiness.started();
  }
  const ports = await server.start();
  try {
    if (config.metrics_listen !== '') metricsHttp = await metrics.startHttp(config.metrics_listen, logger);
  } catch (err) {
    await server.shutdown();
    throw err;
  }
  logger.info(
    {
      listen: withPort(config.listen, ports.api),
      healthListen: ports.health === undefined ? undefined : withPort(config.health_listen, ports.health),
      metricsListen: metricsHttp ? withPort(config.metrics_listen, metricsHttp.port) : undefined,
      providers: config.providers.map((p) => p.id),
      reflection: config.reflection,
      configFile: config.source.file,
    },
    'credbroker serving',
  );
  return { server, config, logger, metricsPort: metricsHttp?.port };
}

/** The `serve` command: returns the exit code once the server has shut down. */
export async function serve(
  env: Readonly<Record<string, string | undefined>>,
  file?: string,
): Promise<number> {
  const config = await loadConfigIsolated({ env, file });
  const logger = createLogger({ level: config.log_level, pretty: config.log_pretty });
  const { server } = await startBroker(config, logger);
  const signal = await shutdownSignal();
  logger.info({ signal }, 'signal received');
  await server.shutdown();
  return 0;
}

/**
 * Resolves at the first SIGTERM or SIGINT. A second one during a slow shutdown ends the process
 * the default way, after writing the log lines still batched (src/logger.ts).
 */
export function shutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSecond = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSecond);
      process.off('SIGINT', onSecond);
      flushStdout();
      process.kill(process.pid, signal);
    };
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      process.once('SIGTERM', onSecond);
      process.once('SIGINT', onSecond);
      resolve(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
