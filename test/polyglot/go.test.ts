import { clientSuite } from './client-suite.js';
import { buildGoClient, runClient } from './toolchain.js';

describe('Go client (examples/go, GOPATH build against Debian grpc-go, stubs from protoc-gen-go)', function () {
  // A cold build of grpc-go takes ~30 s on 2 cores; .tmp/go-cache makes reruns take seconds.
  this.timeout(180_000);
  clientSuite(async () => {
    const binary = await buildGoClient();
    return (a) =>
      runClient(
        binary,
        [
          ...['-target', a.target, '-user-id', a.userId, '-provider', a.provider],
          ...(a.attempts === undefined ? [] : ['-attempts', String(a.attempts)]),
          ...(a.downstream === undefined ? [] : ['-downstream', a.downstream]),
        ],
        a.apiKey === undefined ? {} : { CREDBROKER_API_KEY: a.apiKey },
      );
  });
});
