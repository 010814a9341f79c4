/**
 * Secure by default (issue 6): before binding, decide whether this configuration may serve at
 * all. A broker that answers any connecting process with any user's token is a credential-theft
 * service, so without caller authentication the API port stays on loopback unless the operator
 * sets `insecure: true` on purpose — and then every start says so loudly.
 */
import type { Config } from '../../config/load.js';
import { parseSubject } from './peer-identity.js';

export interface Exposure {
  /** Reasons to refuse to start, each naming the field; empty when the server may start. */
  readonly problems: readonly string[];
  /** Reasons the running server is less than secure; logged at warn on every start. */
  readonly warnings: readonly string[];
}

/** Whether a `host:port` listen address binds loopback only. */
export function isLoopbackListen(listen: string): boolean {
  const host = listen
    .slice(0, listen.lastIndexOf(':'))
    .replace(/^\[(.*)\]$/, '$1')
    .toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Checks the `listen` / `tls` / `callers` / `insecure` combination. */
export function checkExposure(config: Config): Exposure {
  const problems: string[] = [];
  const warnings: string[] = [];
  const tls = config.tls;
  const mutualTls = tls?.client_ca_file !== undefined && tls.require_client_cert;
  const callerAuth = config.callers.length > 0 || mutualTls;
  const loopback = isLoopbackListen(config.listen);

  if (!loopback && !callerAuth && !config.insecure) {
    problems.push(
      `listen: ${config.listen} is reachable from other hosts but no caller authentication is ` +
        "configured, so anyone who can connect could fetch any user's token. Configure `callers` " +
        '(API keys or client certificates) or `tls` with `client_ca_file` (mutual TLS), listen on ' +
        '127.0.0.1, or set `insecure: true` (CREDBROKER_INSECURE=true) to accept the risk.',
    );
  }
  config.callers.forEach((caller, i) => {
    if (caller.api_key_sha256 !== undefined && tls === undefined && !config.insecure) {
      problems.push(
        `callers[${i}].api_key_sha256: API keys would cross the network in plaintext; configure ` +
          '`tls`, or set `insecure: true` to allow it',
      );
    }
    if (
      (caller.tls_subject !== undefined || caller.tls_san !== undefined) &&
      tls?.client_ca_file === undefined
    ) {
      problems.push(
        `callers[${i}]: tls_subject / tls_san need \`tls.client_ca_file\` (client certificates are ` +
          'only verified with mutual TLS)',
      );
    }
    if (caller.tls_subject !== undefined) {
      try {
        parseSubject(caller.tls_subject);
      } catch (err) {
        problems.push(`callers[${i}].tls_subject: ${(err as Error).message}`);
      }
    }
  });

  if (config.insecure) warnings.push('insecure: true is set');
  if (tls === undefined) warnings.push('the API port is plaintext (no tls configured)');
  if (config.callers.length === 0) {
    warnings.push(
      mutualTls
        ? 'no callers configured: every holder of a certificate from the client CA may call every RPC'
        : 'no callers configured: every client that can connect may call every RPC',
    );
  }
  return { problems, warnings };
}
