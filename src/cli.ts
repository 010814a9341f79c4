#!/usr/bin/env node
/**
 * The `credbroker` command line: serve (default), check-config, keygen, rotate-keys, healthcheck.
 * Exit codes: 0 success, 1 failure, 2 usage or configuration error.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseDuration } from './config/duration.js';
import { ConfigError } from './config/error.js';
import { IdpConfigError } from './idp/config-error.js';

// Each command imports what it needs when it runs: `serve` must not keep the YAML parser, the
// configuration schema or the other commands on its heap (src/config/isolated.ts).

interface Command {
  readonly summary: string;
  readonly usage: string;
  readonly options: NonNullable<ParseArgsConfig['options']>;
  run(values: Record<string, string | boolean | undefined>): Promise<number>;
}

const configOption = { config: { type: 'string', short: 'c' } } as const;
const env = process.env;

const commands: Record<string, Command> = {
  serve: {
    summary: 'run the broker (the default command)',
    usage: `credbroker serve [--config FILE]

  Serves credbroker.v1.CredentialBroker, grpc.health.v1 and reflection on \`listen\`, and
  plaintext grpc.health.v1 on \`health_listen\`. Configuration: the YAML file (--config or
  CREDBROKER_CONFIG) plus CREDBROKER_* variables; see docs/configuration.md.
  SIGTERM/SIGINT: NOT_SERVING, drain in-flight calls for shutdown_grace, exit 0.`,
    options: configOption,
    run: async (values) => {
      const { serve } = await import('./main.js');
      return serve(env, values.config as string | undefined);
    },
  },
  'check-config': {
    summary: 'validate the configuration and print it, secrets masked',
    usage: `credbroker check-config [--config FILE]

  Loads the configuration and runs every check \`serve\` runs before it listens (exposure, TLS
  files, key ring, Redis password files, providers: src/deployment.ts), prints the effective
  settings as YAML with every secret replaced by *** and any warning on stderr, and exits 0;
  exits 2 naming every invalid field. Reads local files only: it contacts neither Redis nor an
  identity provider.`,
    options: configOption,
    run: async (values) => {
      const [{ loadConfig, maskConfig }, { validateDeployment }, { stringify }] = await Promise.all([
        import('./config/load.js'),
        import('./deployment.js'),
        import('yaml'),
      ]);
      const config = loadConfig({ env, file: values.config as string | undefined });
      const deployment = await validateDeployment(config);
      process.stdout.write(stringify(maskConfig(config)));
      for (const warning of deployment.insecure) {
        process.stderr.write(`credbroker check-config: warning: RUNNING INSECURE: ${warning}\n`);
      }
      for (const warning of deployment.warnings) {
        process.stderr.write(`credbroker check-config: warning: ${warning}\n`);
      }
      return 0;
    },
  },
  keygen: {
    summary: 'print a new key id and base64 32-byte AES-256 key',
    usage: `credbroker keygen

  Prints \`id:base64key\`: append it to CREDBROKER_KEYS (or write it to a file in keys_file)
  and set active_key to the id to start sealing new records with it.`,
    options: {},
    run: async () => {
      const { generateKey } = await import('./cli/keygen.js');
      const { id, key } = generateKey();
      process.stdout.write(`${id}:${key}\n`);
      return 0;
    },
  },
  'rotate-keys': {
    summary: 're-seal every stored token record under the active key',
    usage: `credbroker rotate-keys [--config FILE] [--resume NODE:CURSOR]

  Scans every Redis master (each Cluster master in turn) and re-seals each token record that is
  not yet under store.active_key, keeping its generation and TTL; a record the broker rewrites
  meanwhile is left to that write. Idempotent: safe to re-run. Prints progress after every batch
  with the position to --resume from, then a summary (re-sealed, already current,
  undecryptable). Exit 0 done, 1 Redis failed mid-way, 2 configuration error.`,
    options: { ...configOption, resume: { type: 'string' } },
    run: async (values) => {
      const { runRotateKeys } = await import('./cli/rotate-keys.js');
      return runRotateKeys({
        env,
        configFile: values.config as string | undefined,
        resume: values.resume as string | undefined,
        out: (line) => process.stdout.write(`${line}\n`),
      });
    },
  },
  'hash-user-id': {
    summary: "print a user id's handle in log and audit lines",
    usage: `credbroker hash-user-id --user USER_ID|- [--config FILE]

  Log and audit lines name a user by a handle, never by the id: 16 hex digits of an HMAC under
  log_user_hash_key, or else under a key derived from each store key (see docs/configuration.md,
  "User ids in logs"). Prints USER_ID's handle under each, the one this configuration writes
  with first, one \`HANDLE  SOURCE\` line each (with log_user_hash_key set, the store keys'
  handles follow: lines written before it was set). \`--user -\` reads the id from standard
  input, or asks for it on a terminal: it stays out of the process list and the shell history.
  Reads the configuration only: contacts neither Redis nor an identity provider.`,
    options: { ...configOption, user: { type: 'string' } },
    run: async (values) => {
      let userId = values.user as string | undefined;
      if (userId === '-') userId = await readUserId();
      if (userId === undefined || userId === '')
        throw new UsageError('--user: the user id to hash is required');
      const [{ loadConfig }, { loadKeyRing }, { userHashKeys }, { userIdHash }] = await Promise.all([
        import('./config/load.js'),
        import('./store/key-ring.js'),
        import('./log-keys.js'),
        import('./logger.js'),
      ]);
      const config = loadConfig({ env, file: values.config as string | undefined });
      const ring = loadKeyRing(config.store);
      const keys = userHashKeys(config, ring);
      // Lines written before log_user_hash_key was set carry the store keys' handles.
      if (config.log_user_hash_key !== undefined && ring !== undefined) {
        for (const k of userHashKeys({ log_user_hash_key: undefined }, ring)) {
          keys.push({ name: `${k.name}, without log_user_hash_key`, key: k.key });
        }
      }
      for (const { name, key } of keys) process.stdout.write(`${userIdHash(userId, key)}  ${name}\n`);
      return 0;
    },
  },
  healthcheck: {
    summary: 'call grpc.health.v1 Check; exit 0 only when SERVING',
    usage: `credbroker healthcheck [--address HOST:PORT] [--service NAME] [--timeout 3s] [--config FILE]

  Default address: the configured health_listen (a wildcard host becomes 127.0.0.1).
  Default service: "" (the whole server). Prints the status; exit 0 only when SERVING.`,
    options: {
      ...configOption,
      address: { type: 'string' },
      service: { type: 'string', default: '' },
      timeout: { type: 'string', default: '3s' },
    },
    run: async (values) => {
      const timeoutMs = parseDuration(values.timeout as string);
      if (timeoutMs === undefined) throw new UsageError('--timeout: expected a duration like 3s');
      const { checkHealth, localAddress } = await import('./cli/healthcheck.js');
      let address = values.address as string | undefined;
      if (address === undefined) {
        const { loadConfig } = await import('./config/load.js');
        const config = loadConfig({ env, file: values.config as string | undefined });
        address = localAddress(config.health_listen !== '' ? config.health_listen : config.listen);
      }
      try {
        const status = await checkHealth({ address, service: values.service as string, timeoutMs });
        process.stdout.write(`${status}\n`);
        return status === 'SERVING' ? 0 : 1;
      } catch (err) {
        process.stderr.write(`healthcheck: ${(err as Error).message}\n`);
        return 1;
      }
    },
  },
};

class UsageError extends Error {}

/** The user id from standard input: one line, prompted for on a terminal. */
async function readUserId(): Promise<string> {
  if (process.stdin.isTTY) {
    const { createInterface } = await import('node:readline/promises');
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return (await rl.question('user id: ')).trim();
    } finally {
      rl.close();
    }
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/[\r\n]+$/, '');
}

/** One problem: one line. Several: one line each under a heading. */
function configErrorText(problems: readonly string[]): string {
  return problems.length === 1
    ? `invalid configuration: ${problems[0]}`
    : `invalid configuration:\n  - ${problems.join('\n  - ')}`;
}

function mainUsage(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `credbroker — brokers users' identity-provider tokens over gRPC

Usage: credbroker [COMMAND] [OPTIONS]

Commands:
${lines.join('\n')}

Run \`credbroker COMMAND --help\` for a command's options.`;
}

export async function main(argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h' || first === 'help') {
    process.stdout.write(`${mainUsage()}\n`);
    return 0;
  }
  const name = first === undefined || first.startsWith('-') ? 'serve' : first;
  const args = name === first ? rest : argv;
  const command = commands[name];
  if (!command) {
    process.stderr.write(`credbroker: unknown command "${name}"\n\n${mainUsage()}\n`);
    return 2;
  }
  try {
    const { values } = parseArgs({
      args: [...args],
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: false,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(`${command.usage}\n`);
      return 0;
    }
    return await command.run(values);
  } catch (err) {
    // KeyRingError is a ConfigError; IdpConfigError only escapes a path that skipped
    // validateDeployment. Either way: exit 2 naming the field, never a stack.
    if (err instanceof ConfigError) {
      process.stderr.write(`credbroker ${name}: ${configErrorText(err.problems)}\n`);
      return 2;
    }
    if (err instanceof IdpConfigError) {
      process.stderr.write(`credbroker ${name}: ${configErrorText([err.message])}\n`);
      return 2;
    }
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`credbroker ${name}: ${(err as Error).message}\n\n${command.usage}\n`);
      return 2;
    }
    process.stderr.write(`credbroker ${name}: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`credbroker: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
