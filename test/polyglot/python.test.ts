import { join } from 'node:path';
import { clientSuite } from './client-suite.js';
import { DEBIAN_PYTHON, generatePython, ROOT, runClient } from './toolchain.js';

describe('Python client (examples/python, stubs from Debian protoc + grpc_python_plugin)', function () {
  this.timeout(60_000);
  clientSuite(async () => {
    const pythonPath = await generatePython();
    return (a) =>
      runClient(
        DEBIAN_PYTHON,
        [
          join(ROOT, 'examples/python/client.py'),
          ...['--target', a.target, '--user-id', a.userId, '--provider', a.provider],
          ...(a.attempts === undefined ? [] : ['--attempts', String(a.attempts)]),
          ...(a.downstream === undefined ? [] : ['--downstream', a.downstream]),
        ],
        { PYTHONPATH: pythonPath, ...(a.apiKey === undefined ? {} : { CREDBROKER_API_KEY: a.apiKey }) },
      );
  });
});
