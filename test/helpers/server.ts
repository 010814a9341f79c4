/**
 * Starts the real BrokerServer in-process on 127.0.0.1:0 with a test configuration, a captured
 * logger and a generated client. `stop()` shuts the server down and closes the client.
 */
import { readFileSync } from 'node:fs';
import type { BrokerApi } from '../../src/broker/api.js';
import { notImplementedApi } from './not-implemented.js';
import { loadConfig, type Config } from '../../src/config/load.js';
import type { CredentialBrokerClient } from '../../src/gen/credbroker/v1/broker.js';
import type { Authorizer, CallObserver } from '../../src/server/call.js';
import { BrokerServer } from '../../src/server/server.js';
import { brokerClient } from './grpc.js';
import { captureLogs, type CapturedLogs } from './log-capture.js';

export interface TestServer {
  readonly server: BrokerServer;
  readonly config: Config;
  readonly client: CredentialBrokerClient;
  readonly address: string;
  readonly healthAddress: string | undefined;
  readonly logs: CapturedLogs;
  stop(): Promise<void>;
}

export interface TestServerOptions {
  /** Extra configuration as YAML text, merged under the test defaults. */
  readonly yaml?: string;
  readonly env?: Record<string, string>;
  readonly api?: BrokerApi;
  readonly observers?: readonly CallObserver[];
  readonly authorize?: Authorizer;
  readonly config?: Config;
}

/** One provider `corp`, for tests that never reach an IdP. */
export const CORP_PROVIDER_YAML = `providers:
  - id: corp
    issuer: https://login.example.com
    client_id: c
    client_secret: s
    redirect_uris: [https://app.example.com/cb]
`;

/** Loads a configuration from YAML text and env, with loopback ports chosen by the OS. */
export function testConfig(yaml = '', env: Record<string, string> = {}): Config {
  return loadConfig({
    env: {
      CREDBROKER_LISTEN: '127.0.0.1:0',
      CREDBROKER_HEALTH_LISTEN: '127.0.0.1:0',
      CREDBROKER_METRICS_LISTEN: '',
      ...env,
    },
    file: 'test.yaml',
    readFile: (path) => (path === 'test.yaml' ? yaml : readFileSync(path, 'utf8')),
  });
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const config = options.config ?? testConfig(options.yaml, options.env);
  const logs = captureLogs();
  const server = new BrokerServer({
    config,
    logger: logs.logger,
    api: options.api ?? notImplementedApi,
    observers: options.observers ?? [],
    ...(options.authorize ? { authorize: options.authorize } : {}),
  });
  const ports = await server.start();
  const address = `127.0.0.1:${ports.api}`;
  const client = brokerClient(address);
  return {
    server,
    config,
    client,
    address,
    healthAddress: ports.health === undefined ? undefined : `127.0.0.1:${ports.health}`,
    logs,
    stop: async () => {
      client.close();
      await server.shutdown();
    },
  };
}
