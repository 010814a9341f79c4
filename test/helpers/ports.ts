/** Shared with the benchmarks, which do not import test helpers. */
export { freePort } from '../../bench/lib/net.js';
