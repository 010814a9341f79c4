/**
 * `credbroker serve`: load the configuration, build the app, serve until SIGTERM/SIGINT, then
 * shut down gracefully and exit 0.
 */
import { createApp } from './app.js';
import { loadConfig, type Config } from './config/load.js';
import { createLogger, type Logger } from './logger.js';
import { routeGrpcLogs } from './server/grpc-logs.js';
import { BrokerServer, withPort } from './server/server.js';

export interface Running {
  readonly server: BrokerServer;
  readonly config: Config;
  readonly logger: Logger;
}

/** Starts the broker with an already-loaded configuration. */
export async function startBroker(config: Config, logger: Logger): Promise<Running> {
  routeGrpcLogs(logger);
  const app = await createApp(config, logger);
  const server = new BrokerServer({
    config,
    logger,
    api: app.api,
    observers: app.observers,
    ...(app.authorize ? { authorize: app.authorize } : {}),
    resources: app.resources,
  });
  const ports = await server.start();
  logger.info(
    {
      listen: withPort(config.listen, ports.api),
      healthListen: ports.health === undefined ? undefined : withPort(config.health_listen, ports.health),
      providers: config.providers.map((p) => p.id),
      reflection: config.reflection,
      configFile: config.source.file,
    },
    'credbroker serving',
  );
  return { server, config, logger };
}

/** The `serve` command: returns the exit code once the server has shut down. */
export async function serve(
  env: Readonly<Record<string, string | undefined>>,
  file?: string,
): Promise<number> {
  const config = loadConfig({ env, file });
  const logger = createLogger({ level: config.log_level, pretty: config.log_pretty });
  const { server } = await startBroker(config, logger);
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'signal received');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      void server.shutdown().then(resolve);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  return 0;
}
