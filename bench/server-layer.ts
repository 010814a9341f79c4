/**
 * A benchmark diagnostic between the echo baseline and the full broker: the broker's real gRPC
 * layer — BrokerServer (src/server: validation, the call wrapper with deadline, request id, call
 * line, error mapping, metrics observer, health, reflection) with the production logger on
 * stdout — over a domain API that answers GetValidSubjectToken with a constant token, no store,
 * as the broker's hot path does (synchronously, encoded once). The difference to echo is the
 * cost of the server layer; the difference to the broker is the cost of the record-cache peek
 * and the domain.
 *
 * Usage: tsx bench/server-layer.ts <token-length>   (prints {"port": N} on stderr once listening)
 */
import type { BrokerApi } from '../src/broker/api.js';
import { BrokerError, ErrorReason } from '../src/core/errors.js';
import { loadConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/server/metrics.js';
import { BrokerServer } from '../src/server/server.js';

const tokenLength = Number(process.argv[2] ?? 800);
const config = loadConfig({
  env: {
    CREDBROKER_LISTEN: '127.0.0.1:0',
    CREDBROKER_HEALTH_LISTEN: '',
    CREDBROKER_METRICS_LISTEN: '',
  },
  file: 'server-layer.yaml',
  readFile: () => `providers:
  - id: corp
    authorization_endpoint: https://login.example.com/authorize
    token_endpoint: https://login.example.com/token
    client_id: bench
    client_secret: bench-secret
    redirect_uris: [https://app.example.com/cb]
`,
});
const logger = createLogger({ level: 'info' });
const expiresAt = new Date(Date.now() + 3600_000);
const accessToken = 'x'.repeat(tokenLength);
/** The one stored record every call is answered from. */
const record = {};
/** The other RPCs are not part of this diagnostic: UNIMPLEMENTED, as an unbuilt operation answers. */
const notBenchmarked = () =>
  Promise.reject(new BrokerError(ErrorReason.NOT_IMPLEMENTED, 'not part of the server-layer benchmark'));
const api: BrokerApi = {
  startLogin: notBenchmarked,
  completeLogin: notBenchmarked,
  revokeSubjectToken: notBenchmarked,
  // As the broker answers a stored record: without a promise, `served` by one record (so its
  // response is encoded once, src/server/encoded-response.ts).
  getValidSubjectToken: () => ({
    accessToken,
    tokenType: 'Bearer',
    expiresAt,
    scopes: ['openid', 'profile', 'email', 'offline_access'],
    source: 'STORED',
    degraded: false,
    served: record,
  }),
};
const server = new BrokerServer({ config, logger, api, observers: [createMetrics().observer] });
const { api: port } = await server.start();
// stdout carries the call log lines; the port goes to stderr.
console.error(JSON.stringify({ port }));
process.on('SIGTERM', () => void server.shutdown().then(() => process.exit(0)));
