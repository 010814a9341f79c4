/**
 * The caller policy (docs/architecture.md §1, §6a `callers`): who is calling — a verified client certificate
 * matched by `tls_subject` / `tls_san`, or an API key matched by its SHA-256 — and whether that
 * caller may call this RPC for this provider. Runs in the call wrapper (src/server/call.ts)
 * before any handler.
 *
 * - No credentials, a malformed `authorization` value or an unknown API key → UNAUTHENTICATED
 *   (CALLER_UNAUTHENTICATED).
 * - A trusted certificate no caller claims, an RPC not in `allow`, or a provider not in
 *   `providers` → PERMISSION_DENIED (CALLER_FORBIDDEN).
 * - A `authorization` header, when present, decides: a bad key is never overlooked because a
 *   certificate happens to be valid too.
 * - With no callers configured the policy is open: every call is allowed. src/server/security/
 *   exposure.ts makes sure that only happens on loopback, behind required mutual TLS, or with
 *   `insecure: true` set on purpose.
 */
import type { ServerUnaryCall } from '@grpc/grpc-js';
import type { PeerCertificate } from 'node:tls';
import { BrokerError, ErrorReason } from '../../core/errors.js';
import { deepFreeze } from '../../core/freeze.js';
import type { Config } from '../../config/load.js';
import type { Authorizer } from '../call.js';
import { hashApiKey, presentedApiKey } from './api-keys.js';
import {
  describeSubject,
  parseSubject,
  parseSubjectAltNames,
  sanMatches,
  subjectMatches,
  type Rdn,
} from './peer-identity.js';

/** ErrorInfo metadata.cause of a denial (audit and clients switch on these). */
export const DenialCause = {
  /** Neither a client certificate nor an API key was presented. */
  NO_CREDENTIALS: 'NO_CREDENTIALS',
  /** `authorization` is not `Bearer <key>`, or appears more than once. */
  MALFORMED_CREDENTIALS: 'MALFORMED_CREDENTIALS',
  /** The API key matches no caller. */
  INVALID_API_KEY: 'INVALID_API_KEY',
  /** An API key over a plaintext port without `insecure: true`. */
  API_KEY_OVER_PLAINTEXT: 'API_KEY_OVER_PLAINTEXT',
  /** A trusted client certificate that no caller's tls_subject / tls_san matches. */
  UNKNOWN_CALLER: 'UNKNOWN_CALLER',
  /** The caller may not call this RPC. */
  RPC_NOT_ALLOWED: 'RPC_NOT_ALLOWED',
  /** The caller may not touch this provider. */
  PROVIDER_NOT_ALLOWED: 'PROVIDER_NOT_ALLOWED',
  /** The caller may not ask GetDownstreamToken for this downstream (`callers[].downstreams`). */
  DOWNSTREAM_NOT_ALLOWED: 'DOWNSTREAM_NOT_ALLOWED',
} as const;
export type DenialCause = (typeof DenialCause)[keyof typeof DenialCause];

export interface AuthorizerOptions {
  readonly callers: Config['callers'];
  /** API keys travel in the clear without TLS: accepted then only when this is set. */
  readonly insecure: boolean;
  /** Whether the API port speaks TLS. */
  readonly tls: boolean;
}

interface Compiled {
  readonly name: string;
  readonly subject: readonly Rdn[] | undefined;
  readonly san: string | undefined;
  readonly allow: ReadonlySet<string>;
  readonly providers: ReadonlySet<string> | undefined;
  /**
   * GetDownstreamToken: the downstreams allowed, as configured — `<provider>/<downstream>` for
   * one provider's, a bare id under every provider; undefined: every one.
   */
  readonly downstreams: ReadonlySet<string> | undefined;
  /** What the authorizer returns for this caller: made once, not per call. */
  readonly result: { readonly caller: string };
}

function unauthenticated(cause: DenialCause, message: string): BrokerError {
  return new BrokerError(ErrorReason.CALLER_UNAUTHENTICATED, message, { metadata: { cause } });
}

function forbidden(cause: DenialCause, caller: string, message: string, provider?: string): BrokerError {
  return new BrokerError(ErrorReason.CALLER_FORBIDDEN, message, {
    metadata: { cause, caller, ...(provider === undefined ? {} : { provider }) },
  });
}

type CallerConfig = Config['callers'][number];

function compile(caller: CallerConfig, index: number): Compiled {
  let subject: Rdn[] | undefined;
  if (caller.tls_subject !== undefined) {
    try {
      subject = parseSubject(caller.tls_subject);
    } catch (err) {
      throw new Error(`callers[${index}].tls_subject: ${(err as Error).message}`);
    }
  }
  return {
    name: caller.name,
    subject,
    san: caller.tls_san,
    allow: new Set(caller.allow),
    providers: caller.providers === undefined ? undefined : new Set(caller.providers),
    downstreams: caller.downstreams === undefined ? undefined : new Set(caller.downstreams),
    result: Object.freeze({ caller: caller.name }),
  };
}

/** Certificates seen recently, by SHA-256 fingerprint: a backend reuses its certificate. */
const MAX_CACHED_CERTIFICATES = 1024;

function certificateMatches(caller: Compiled, cert: PeerCertificate): boolean {
  if (caller.subject === undefined && caller.san === undefined) return false;
  if (caller.subject !== undefined && !subjectMatches(caller.subject, cert.subject)) return false;
  if (caller.san !== undefined && !sanMatches(caller.san, parseSubjectAltNames(cert.subjectaltname))) {
    return false;
  }
  return true;
}

/**
 * grpc-js's per-call objects, down to the HTTP/2 session the call arrived on (not public API:
 * `ServerUnaryCallImpl.call` is the `BaseServerInterceptingCall` when the server has no
 * interceptors, and its `stream` the Node Http2Stream).
 */
interface CallInternals {
  readonly call?: { readonly stream?: { readonly session?: unknown } };
}

/** The call's HTTP/2 session; undefined when grpc-js's internals are not as expected. */
function sessionOf(call: ServerUnaryCall<unknown, unknown>): object | undefined {
  const session = (call as CallInternals).call?.stream?.session;
  return typeof session === 'object' && session !== null && session.constructor.name === 'ServerHttp2Session'
    ? session
    : undefined;
}

/** Each connection's verified client certificate (null: none), read on its first call. */
const certificateBySession = new WeakMap<object, PeerCertificate | null>();

/**
 * The verified client certificate of the call's connection. grpc-js's getAuthContext() asks
 * the TLS socket for it on every call, and Node builds the whole certificate object each time
 * (≈ 21 µs here, a fifth of a stored-token call). The certificate cannot change during a
 * connection — Node's HTTP/2 server disables TLS renegotiation on every socket (RFC 9113 §9.2.1:
 * a renegotiation ends the connection) — so it is read once per HTTP/2 session and kept with it
 * (a WeakMap: it goes with the session). When the session cannot be found (another grpc-js),
 * it is read per call as before: slower, never wrong.
 */
function peerCertificate(call: ServerUnaryCall<unknown, unknown>): PeerCertificate | undefined {
  const session = sessionOf(call);
  if (session === undefined) return call.getAuthContext().sslPeerCertificate;
  let cert = certificateBySession.get(session);
  if (cert === undefined) {
    const read = call.getAuthContext().sslPeerCertificate;
    // Shared by every call of the connection from now on: nobody may change it.
    cert = read === undefined ? null : deepFreeze(read);
    certificateBySession.set(session, cert);
  }
  return cert ?? undefined;
}

/**
 * Builds the policy from `callers`. A caller with both a certificate rule (tls_subject and/or
 * tls_san, all of which must match) and an API key is identified by either. The first caller in
 * configuration order that matches a certificate wins.
 * @throws Error naming the field when a tls_subject cannot be parsed.
 */
export function createAuthorizer(options: AuthorizerOptions): Authorizer {
  const callers = options.callers.map(compile);
  if (callers.length === 0) {
    const anonymous = Object.freeze({ caller: undefined });
    // Certificates are shared per connection (peerCertificate): so is the description of one.
    const described = new WeakMap<PeerCertificate, { readonly caller: string }>();
    return (_rpc, call) => {
      const cert = peerCertificate(call);
      if (!cert) return anonymous;
      let result = described.get(cert);
      if (result === undefined) {
        result = Object.freeze({ caller: describeSubject(cert.subject) });
        described.set(cert, result);
      }
      return result;
    };
  }
  // API keys by the hex SHA-256 the configuration holds: the presented key is hashed and looked
  // up, one Map lookup instead of a comparison per configured key. The lookup's timing can only
  // depend on the digest of what the client sent, which tells nothing about a configured key
  // (finding a key from it would need a SHA-256 preimage). First caller in order wins a duplicate.
  const byKeyHash = new Map<string, Compiled>();
  options.callers.forEach((c, i) => {
    if (c.api_key_sha256 !== undefined && !byKeyHash.has(c.api_key_sha256)) {
      byKeyHash.set(c.api_key_sha256, callers[i]!);
    }
  });
  const byCertificate = callers.filter((c) => c.subject !== undefined || c.san !== undefined);
  // The caller a certificate maps to depends only on the certificate (its subject and SANs), so
  // the first match is remembered by fingerprint; `null`: no caller matches it. Bounded.
  const byFingerprint = new Map<string, Compiled | null>();
  const matchCertificate = (cert: PeerCertificate): Compiled | undefined => {
    const fingerprint = cert.fingerprint256;
    if (typeof fingerprint !== 'string' || fingerprint === '') {
      return byCertificate.find((c) => certificateMatches(c, cert));
    }
    let caller = byFingerprint.get(fingerprint);
    if (caller === undefined) {
      caller = byCertificate.find((c) => certificateMatches(c, cert)) ?? null;
      if (byFingerprint.size >= MAX_CACHED_CERTIFICATES) byFingerprint.clear();
      byFingerprint.set(fingerprint, caller);
    }
    return caller ?? undefined;
  };
  const keysAccepted = options.tls || options.insecure;

  const identify = (call: ServerUnaryCall<unknown, unknown>): Compiled => {
    const presented = presentedApiKey(call.metadata);
    if (presented.kind === 'malformed') {
      throw unauthenticated(
        DenialCause.MALFORMED_CREDENTIALS,
        'caller not authenticated: the authorization metadata must be "Bearer <api key>"',
      );
    }
    if (presented.kind === 'bearer') {
      if (!keysAccepted) {
        throw unauthenticated(
          DenialCause.API_KEY_OVER_PLAINTEXT,
          'caller not authenticated: API keys are accepted only over TLS',
        );
      }
      const caller = byKeyHash.get(hashApiKey(presented.key));
      if (!caller)
        throw unauthenticated(DenialCause.INVALID_API_KEY, 'caller not authenticated: unknown API key');
      return caller;
    }
    const cert = peerCertificate(call);
    if (!cert) {
      throw unauthenticated(
        DenialCause.NO_CREDENTIALS,
        'caller not authenticated: present a trusted client certificate or an API key',
      );
    }
    const caller = matchCertificate(cert);
    if (!caller) {
      throw forbidden(
        DenialCause.UNKNOWN_CALLER,
        describeSubject(cert.subject),
        'caller not allowed: no configured caller matches this client certificate',
      );
    }
    return caller;
  };

  return (rpc, call, provider) => {
    const caller = identify(call);
    if (!caller.allow.has(rpc)) {
      throw forbidden(
        DenialCause.RPC_NOT_ALLOWED,
        caller.name,
        `caller "${caller.name}" may not call ${rpc}`,
      );
    }
    // The provider is undefined only while the request is still invalid (see call.ts); the
    // validation error then follows, and nothing reaches a handler.
    if (provider !== undefined && caller.providers !== undefined && !caller.providers.has(provider)) {
      throw forbidden(
        DenialCause.PROVIDER_NOT_ALLOWED,
        caller.name,
        `caller "${caller.name}" may not use provider "${provider}"`,
        provider,
      );
    }
    // A downstream is allowed separately from the raw subject token: a caller may hold
    // GetDownstreamToken for one downstream without GetValidSubjectToken. The provider is set
    // only once the request validated, so `downstream` is then a configured id.
    if (provider !== undefined && rpc === 'GetDownstreamToken' && caller.downstreams !== undefined) {
      const downstream = (call.request as { downstream?: unknown } | undefined)?.downstream;
      if (
        typeof downstream !== 'string' ||
        !(caller.downstreams.has(downstream) || caller.downstreams.has(`${provider}/${downstream}`))
      ) {
        throw forbidden(
          DenialCause.DOWNSTREAM_NOT_ALLOWED,
          caller.name,
          `caller "${caller.name}" may not use downstream ${JSON.stringify(String(downstream).slice(0, 64))}`,
          provider,
        );
      }
    }
    return caller.result;
  };
}
