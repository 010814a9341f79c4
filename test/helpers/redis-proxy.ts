/**
 * A loopback TCP proxy in front of a Redis server, whose upstream can be switched: connections
 * through it are cut and come back (on their client's reconnect) to the new upstream. Simulates
 * one connection being moved to another server (a failover seen by one client and not another).
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface RedisProxy {
  readonly port: number;
  readonly url: string;
  /** Connections made from now on go to `upstreamPort`; the current ones are cut. */
  switchTo(upstreamPort: number): void;
  close(): Promise<void>;
}

export async function startRedisProxy(upstreamPort: number): Promise<RedisProxy> {
  let upstream = upstreamPort;
  const sockets = new Set<Socket>();
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const server: Server = createServer((client) => {
    track(client);
    const to = createConnection({ host: '127.0.0.1', port: upstream });
    track(to);
    client.pipe(to);
    to.pipe(client);
    client.once('close', () => to.destroy());
    to.once('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('the proxy has no port');
  const cut = (): void => {
    for (const socket of sockets) socket.destroy();
  };
  return {
    port: address.port,
    url: `redis://127.0.0.1:${address.port}`,
    switchTo: (port) => {
      upstream = port;
      cut();
    },
    close: async () => {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
