/**
 * The benchmark baseline: a bare grpc-js server with the broker's server options that answers
 * credbroker.v1.CredentialBroker/GetValidSubjectToken with a constant response of the same size
 * as the broker's — no validation, no logging, no store. It measures what a unary call costs in
 * grpc-js on this machine: HTTP/2 framing, protobuf decode of the request, encode of the response.
 *
 * Usage: tsx bench/echo-server.ts <token-length> [encoded]   (prints {"port": N} once listening)
 *
 * `encoded`: the strictest baseline — the response is encoded once at start and every call
 * answers those bytes (src/server/encoded-response.ts), as the broker does for a stored record
 * it has answered before; without it, the response is encoded on every call.
 */
import {
  Server,
  ServerCredentials,
  status,
  type ChannelOptions,
  type sendUnaryData,
  type UntypedHandleCall,
} from '@grpc/grpc-js';
import {
  CredentialBrokerService,
  GetValidSubjectTokenResponse,
  TokenSource,
} from '../src/gen/credbroker/v1/broker.js';
import { DEFAULT_MAX_RECEIVE_MESSAGE_BYTES } from '../src/config/schema.js';
import { EncodedResponse, passEncoded } from '../src/server/encoded-response.js';

/** Copied from BrokerServer (src/server/server.ts): the same transport settings as the broker. */
const SERVER_OPTIONS: ChannelOptions = {
  'grpc.max_receive_message_length': DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
  'grpc.max_send_message_length': 1024 * 1024,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 10_000,
};

const tokenLength = Number(process.argv[2] ?? 800);
const preEncoded = process.argv[3] === 'encoded';
const accessToken = 'x'.repeat(tokenLength);
const expiresAt = new Date(Date.now() + 3600_000);
const response = (): GetValidSubjectTokenResponse => ({
  accessToken,
  tokenType: 'Bearer',
  expiresAt,
  scopes: ['openid', 'profile', 'email', 'offline_access'],
  source: TokenSource.TOKEN_SOURCE_STORED,
  issuedTokenType: 'urn:ietf:params:oauth:token-type:access_token',
  degraded: false,
});
const encoded = new EncodedResponse(Buffer.from(GetValidSubjectTokenResponse.encode(response()).finish()));

const unimplemented: UntypedHandleCall = (_call: unknown, callback: sendUnaryData<never>) =>
  callback({ code: status.UNIMPLEMENTED, details: 'echo server' });

const server = new Server(SERVER_OPTIONS);
server.addService(preEncoded ? passEncoded(CredentialBrokerService) : CredentialBrokerService, {
  startLogin: unimplemented,
  completeLogin: unimplemented,
  revokeSubjectToken: unimplemented,
  getValidSubjectToken: (
    _call: unknown,
    callback: (err: null, res: GetValidSubjectTokenResponse) => void,
  ): void => {
    // By default a fresh object per call: serialisation is part of the baseline.
    callback(null, preEncoded ? (encoded as unknown as GetValidSubjectTokenResponse) : response());
  },
});
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  console.log(JSON.stringify({ port }));
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
