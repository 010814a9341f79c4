/**
 * Builds the polyglot example clients from proto/ with the Debian toolchain, the way a backend
 * team would: `protoc` + `grpc_python_plugin` for Python, `protoc-gen-go(-grpc)` and Go in GOPATH
 * mode (offline, against Debian's /usr/share/gocode) for Go. Generated code goes to
 * test/polyglot/.gen/ (gitignored); the Go build cache to .tmp/go-cache so reruns take seconds.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROTO = join(ROOT, 'proto');
const GEN = join(ROOT, 'test/polyglot/.gen');
/** Debian's interpreter: it has python3-grpcio and python3-protobuf (pyenv's python3 may not). */
export const DEBIAN_PYTHON = '/usr/bin/python3';
const DEBIAN_GOPATH = '/usr/share/gocode';

const BROKER_PROTOS = ['credbroker/v1/broker.proto', 'credbroker/v1/errors.proto'];
const STATUS_PROTOS = ['google/rpc/status.proto', 'google/rpc/error_details.proto'];

function which(command: string): string | undefined {
  const found = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() : undefined;
}

/** Throws naming the missing Debian package (.ci/run installs them all). */
export function requireTools(tools: Readonly<Record<string, string>>): void {
  const missing = Object.entries(tools).filter(([path]) =>
    path.startsWith('/') ? !existsSync(path) : which(path) === undefined,
  );
  if (missing.length > 0) {
    throw new Error(
      `missing ${missing.map(([t]) => t).join(', ')}: apt-get install -y ${[...new Set(missing.map(([, p]) => p))].join(' ')} (.ci/run does)`,
    );
  }
}

function freshDir(path: string): string {
  rmSync(path, { recursive: true, force: true });
  mkdirSync(path, { recursive: true });
  return path;
}

/** Generates the Python stubs; returns the directory to put on PYTHONPATH. */
export async function generatePython(): Promise<string> {
  requireTools({
    protoc: 'protobuf-compiler',
    grpc_python_plugin: 'protobuf-compiler-grpc',
    [DEBIAN_PYTHON]: 'python3',
  });
  const check = spawnSync(DEBIAN_PYTHON, ['-c', 'import grpc, google.protobuf'], { encoding: 'utf8' });
  if (check.status !== 0) {
    throw new Error(
      `${DEBIAN_PYTHON} lacks grpc/protobuf: apt-get install -y python3-grpcio python3-protobuf`,
    );
  }
  const out = freshDir(join(GEN, 'python'));
  await run('protoc', [
    `-I${PROTO}`,
    `--python_out=${out}`,
    `--grpc_python_out=${out}`,
    `--plugin=protoc-gen-grpc_python=${which('grpc_python_plugin')}`,
    ...BROKER_PROTOS,
    ...STATUS_PROTOS,
  ]);
  return out;
}

/**
 * Generates the Go stubs into a GOPATH (package path = the protos' go_package,
 * credbroker/gen/credbroker/v1) and builds examples/go. google.rpc ErrorInfo/RetryInfo come from
 * Debian's golang-google-genproto-dev (google.golang.org/genproto/googleapis/rpc/errdetails).
 * @returns the client binary
 */
export async function buildGoClient(): Promise<string> {
  requireTools({
    protoc: 'protobuf-compiler',
    'protoc-gen-go': 'protoc-gen-go',
    'protoc-gen-go-grpc': 'protoc-gen-go-grpc',
    go: 'golang-go',
    [`${DEBIAN_GOPATH}/src/google.golang.org/grpc`]: 'golang-google-grpc-dev',
    [`${DEBIAN_GOPATH}/src/google.golang.org/protobuf`]: 'golang-github-golang-protobuf-1-5-dev',
    [`${DEBIAN_GOPATH}/src/google.golang.org/genproto/googleapis/rpc/errdetails`]:
      'golang-google-genproto-dev',
  });
  const gopath = freshDir(join(GEN, 'go'));
  const src = join(gopath, 'src');
  mkdirSync(src);
  await run('protoc', [`-I${PROTO}`, `--go_out=${src}`, `--go-grpc_out=${src}`, ...BROKER_PROTOS]);
  const binary = join(gopath, 'bin', 'credbroker-client');
  await run('go', ['build', '-o', binary, 'main.go'], {
    cwd: join(ROOT, 'examples/go'),
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      GO111MODULE: 'off',
      GOPATH: `${gopath}:${DEBIAN_GOPATH}`,
      GOPROXY: 'off',
      GOFLAGS: '',
      GOTOOLCHAIN: 'local',
      GOCACHE: join(ROOT, '.tmp/go-cache'),
    },
  });
  return binary;
}

export interface ClientRun {
  readonly exitCode: number;
  readonly output: Record<string, unknown>;
  readonly stderr: string;
}

/** Runs a client (asynchronously: the broker under test runs in this process) and parses its JSON line. */
export async function runClient(
  file: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<ClientRun> {
  let exitCode = 0;
  let stdout: string;
  let stderr: string;
  try {
    ({ stdout, stderr } = await run(file, args, {
      env: { PATH: process.env.PATH ?? '', ...env },
      timeout: 30_000,
    }));
  } catch (err) {
    const failed = err as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failed.code !== 'number') throw err;
    exitCode = failed.code;
    stdout = failed.stdout ?? '';
    stderr = failed.stderr ?? '';
  }
  const line = stdout.trim().split('\n').at(-1) ?? '';
  let output: Record<string, unknown>;
  try {
    output = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`client printed no JSON line (exit ${exitCode}): ${stdout}\n${stderr}`);
  }
  return { exitCode, output, stderr };
}
