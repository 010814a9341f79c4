/** The Redis store as the brokers configure it, for seeding users before a benchmark. */
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../src/config/load.js';
import type { NewTokenRecord, TokenStore } from '../../src/core/token-store.js';
import { createLogger } from '../../src/logger.js';
import { createStore, loadKeyRing } from '../../src/store/index.js';

/** Opens the store configured by `env` (CREDBROKER_*) and waits up to 10 s until it answers. */
export async function openSeedStore(env: Record<string, string>): Promise<TokenStore> {
  const config = loadConfig({ env });
  const store = createStore(config.store, loadKeyRing(config.store), createLogger({ level: 'warn' }));
  for (const until = Date.now() + 10_000; ;) {
    try {
      await store.ping(); // connects in the background; nothing is queued offline
      return store;
    } catch (err) {
      if (Date.now() > until) {
        await store.close();
        throw err;
      }
      await sleep(25);
    }
  }
}

/** A logged-in user's record, valid for an hour. */
export function seedRecord(
  userId: string,
  accessToken: string,
  refreshToken: string,
  now: number,
): NewTokenRecord {
  return {
    accessToken,
    refreshToken,
    tokenType: 'Bearer',
    expiresAt: now + 3600_000,
    refreshExpiresAt: undefined,
    scopes: ['openid', 'profile', 'email', 'offline_access'],
    idToken: undefined,
    obtainedVia: 'login',
    updatedAt: now,
    subject: userId,
  };
}

/** Lifetime of a seeded record in the store. */
export const SEED_TTL_MS = 24 * 3600_000;
