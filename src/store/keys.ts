/**
 * Store key names (docs/architecture.md §3). Every key comes from these helpers, never built inline.
 *
 *   credbroker:v1:{<provider>/<user>}:token   the sealed record (hash {g, v, p, u, e}: generation,
 *                                             envelope, provider and user id for rotate-keys,
 *                                             login epoch)
 *   credbroker:v1:{<provider>/<user>}:lock    the refresh lock (owner token, PX lease)
 *   credbroker:v1:{<provider>/<user>}:tomb    tombstone: the last generation of a deleted record
 *   credbroker:v1:{<provider>/<user>}:unlock  pub/sub channel notified on lock release
 *   credbroker:v1:{<provider>/<user>}:cause   why the record was deleted, for a short while: set
 *                                             when a refresh the IdP rejected deleted it, so that
 *                                             callers waiting on other replicas are told so
 *   credbroker:v1:login:<sha256 hex of state> sealed login state
 *
 * A downstream token of the user (SubjectRef.downstream set, GetDownstreamToken) has its own
 * record, lock, tombstone and channel under the same hash tag, suffixed with the downstream id:
 *   credbroker:v1:{<provider>/<user>}:dtoken:<downstream>   (and :dlock:, :dtomb:, :dunlock:, and
 *   :dcause:, which the shared DELETE script clears but nothing sets: downstream deletes give no cause)
 * Downstream ids are configuration ids ([a-z0-9_-]), so they need no escaping. They are not
 * matched by TOKEN_KEY_PATTERN: rotate-keys leaves these short-lived records to re-seal on read.
 *
 * The braces are a Redis Cluster hash tag: a user's record, lock and tombstone share one slot,
 * so the Lua scripts touching several of them are legal in Cluster.
 */
import { createHash } from 'node:crypto';
import type { SubjectRef } from '../core/errors.js';

export const KEY_PREFIX = 'credbroker:v1:';
/**
 * How long a tombstone outlives its record: longer than any refresh can hold a generation it
 * read (lock-lease renewals while an IdP call is in flight are bounded by the IdP timeout).
 */
export const TOMBSTONE_TTL_MS = 24 * 60 * 60 * 1000;
/** SCAN pattern matching every token record. */
export const TOKEN_KEY_PATTERN = `${KEY_PREFIX}{*}:token`;
/** Escaped user ids longer than this are hashed instead, bounding key length. */
const MAX_ESCAPED = 128;
const SAFE = /^[A-Za-z0-9._@-]$/;
const ALL_SAFE = /^[A-Za-z0-9._@-]*$/;

/**
 * A user id as a key fragment: bytes outside [A-Za-z0-9._@-] percent-encoded (so `{`, `}`, `:`,
 * `/` and `%` never appear raw), or `#` + SHA-256 hex when the escaped form is long. The mapping
 * is injective: escaping is reversible and never yields `#`, and hashes do not collide in practice.
 */
export function escapeUserId(userId: string): string {
  // Most ids need no escaping: the id itself, without the per-character walk (≈ 0.7 µs a call on
  // the hot path, docs/PERFORMANCE.md). The same result as the walk below.
  if (userId.length <= MAX_ESCAPED && ALL_SAFE.test(userId)) return userId;
  let out = '';
  for (const ch of userId) {
    if (SAFE.test(ch)) out += ch;
    else
      for (const byte of Buffer.from(ch, 'utf8'))
        out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    if (out.length > MAX_ESCAPED) break;
  }
  if (out.length > MAX_ESCAPED) return `#${createHash('sha256').update(userId, 'utf8').digest('hex')}`;
  return out;
}

/** The hash tag shared by one user's keys: `{provider/escaped-user}`. */
export function subjectTag(ref: SubjectRef): string {
  return `{${ref.provider}/${escapeUserId(ref.userId)}}`;
}

/** `<kind>` for the subject token, `d<kind>:<downstream>` for a downstream token of the user. */
function suffix(ref: SubjectRef, kind: string): string {
  return ref.downstream === undefined ? kind : `d${kind}:${ref.downstream}`;
}

export const tokenKey = (ref: SubjectRef): string =>
  `${KEY_PREFIX}${subjectTag(ref)}:${suffix(ref, 'token')}`;
export const lockKey = (ref: SubjectRef): string => `${KEY_PREFIX}${subjectTag(ref)}:${suffix(ref, 'lock')}`;
export const tombKey = (ref: SubjectRef): string => `${KEY_PREFIX}${subjectTag(ref)}:${suffix(ref, 'tomb')}`;
export const causeKey = (ref: SubjectRef): string =>
  `${KEY_PREFIX}${subjectTag(ref)}:${suffix(ref, 'cause')}`;
export const unlockChannel = (ref: SubjectRef): string =>
  `${KEY_PREFIX}${subjectTag(ref)}:${suffix(ref, 'unlock')}`;
export const loginKey = (stateId: string): string => `${KEY_PREFIX}login:${stateId}`;
