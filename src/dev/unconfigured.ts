/**
 * Whether `npm start` was given no broker configuration at all: no `--config`/`-c`, no
 * CREDBROKER_CONFIG and no CREDBROKER_* variable (the dev mode's own CREDBROKER_DEV_* aside),
 * and no command other than `serve`. Only then does it start dev mode.
 */
export function isUnconfigured(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): boolean {
  const command = argv[0];
  if (command !== undefined && command !== 'serve') return false; // keygen, check-config, --help…
  if (argv.some((a) => a === '--config' || a.startsWith('--config=') || a.startsWith('-c'))) return false;
  return !Object.keys(env).some(
    (name) =>
      name.startsWith('CREDBROKER_') && !name.startsWith('CREDBROKER_DEV_') && env[name] !== undefined,
  );
}
