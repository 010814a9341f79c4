/**
 * The `npm start` entry point. With no configuration at all (./unconfigured.ts) it starts dev
 * mode (./dev-mode.ts): a loopback broker with the memory store and a development OpenID
 * Provider. With any configuration it is exactly `credbroker` with the same arguments: that path
 * never loads dev mode or the development provider.
 */
import { isUnconfigured } from './unconfigured.js';

if (isUnconfigured(process.argv.slice(2), process.env)) {
  const { runDevMode } = await import('./dev-mode.js');
  try {
    process.exitCode = await runDevMode(process.env);
  } catch (err) {
    console.error(`credbroker dev mode: ${(err as Error).message}`);
    process.exitCode = 1;
  }
} else {
  await import('../cli.js'); // runs main(process.argv.slice(2)) on import
}
