import { randomBytes } from 'node:crypto';

/**
 * A new AES-256 key for the key ring, as `id:base64` — the format of CREDBROKER_KEYS entries.
 * The id is the date plus random hex, so ids sort by age and never collide.
 */
export function generateKey(now = new Date()): { id: string; key: string } {
  const date = now.toISOString().slice(0, 10).replace(/-/g, '');
  return { id: `k${date}${randomBytes(2).toString('hex')}`, key: randomBytes(32).toString('base64') };
}
