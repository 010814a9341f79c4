/**
 * TLS and mutual TLS for the API port, with the key, certificate and client CA re-read from disk
 * while serving (cert-manager and Kubernetes secret mounts rotate them in place).
 *
 * Built on grpc-js's certificate-provider credentials (`experimental.
 * createCertificateProviderServerCredentials`): the server calls `setSecureContext` on every
 * update, so new connections use the new files and open ones are left alone. grpc-js's own
 * FileWatcherCertificateProvider reports a half-written rotation (new certificate, old key) as
 * "no credentials" and then drops every new connection until the next poll; this provider checks
 * that a new set loads (`tls.createSecureContext`, which also verifies key ↔ certificate) and
 * otherwise keeps serving the last good set and says so in the log.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { experimental, type ServerCredentials } from '@grpc/grpc-js';
import type { Config } from '../../config/load.js';
import type { Logger } from '../../logger.js';

type TlsConfig = NonNullable<Config['tls']>;
type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

interface FileSet {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | undefined;
}

/** Which configuration field a file came from, for error messages. */
const FIELDS = { cert: 'tls.cert_file', key: 'tls.key_file', ca: 'tls.client_ca_file' } as const;

function check(files: FileSet): void {
  const options: SecureContextOptions = { cert: files.cert, key: files.key };
  if (files.ca) options.ca = files.ca;
  createSecureContext(options);
}

function describe(cert: Buffer): { subject: string; notAfter: string; fingerprint256: string } | undefined {
  try {
    const x509 = new X509Certificate(cert);
    return {
      subject: x509.subject.replace(/\n/g, ','),
      notAfter: x509.validTo,
      fingerprint256: x509.fingerprint256,
    };
  } catch {
    return undefined;
  }
}

/**
 * A grpc-js CertificateProvider over the configured files, polled every `reloadIntervalMs`. The
 * first read happens in the constructor so a bad file is a startup error, not a silent outage.
 */
export class ReloadingCertificateProvider implements experimental.CertificateProvider {
  private current: FileSet;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private lastFailure: string | undefined;

  /** @throws Error naming the field when a file cannot be read or the set does not load. */
  constructor(
    private readonly tls: TlsConfig,
    private readonly logger: Logger,
  ) {
    const read = (field: keyof typeof FIELDS, path: string): Buffer => {
      try {
        return readFileSync(path);
      } catch (err) {
        throw new Error(
          `${FIELDS[field]}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
        );
      }
    };
    const files: FileSet = {
      cert: read('cert', tls.cert_file),
      key: read('key', tls.key_file),
      ca: tls.client_ca_file === undefined ? undefined : read('ca', tls.client_ca_file),
    };
    try {
      check(files);
    } catch (err) {
      throw new Error(
        `tls: the certificate, key and client CA do not load together (${(err as Error).message})`,
      );
    }
    this.current = files;
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    this.start();
    // Asynchronously, like grpc-js's own providers: the server registers its watcher only
    // after subscribing.
    if (this.current.ca) process.nextTick(listener, { caCertificate: this.current.ca });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
    this.stopIfUnused();
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    this.start();
    process.nextTick(listener, { certificate: this.current.cert, privateKey: this.current.key });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
    this.stopIfUnused();
  }

  /** Reads the files now; resolves once any change has been handed to the server. */
  async reload(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const [cert, key, ca] = await Promise.all([
        readFile(this.tls.cert_file),
        readFile(this.tls.key_file),
        this.tls.client_ca_file === undefined ? undefined : readFile(this.tls.client_ca_file),
      ]);
      const next: FileSet = { cert, key, ca };
      const identityChanged = !cert.equals(this.current.cert) || !key.equals(this.current.key);
      const caChanged = (ca && this.current.ca && !ca.equals(this.current.ca)) === true;
      if (!identityChanged && !caChanged) {
        this.lastFailure = undefined;
        return;
      }
      check(next);
      this.current = next;
      this.lastFailure = undefined;
      if (identityChanged) {
        for (const listener of this.identityListeners) listener({ certificate: cert, privateKey: key });
      }
      if (caChanged && ca) for (const listener of this.caListeners) listener({ caCertificate: ca });
      this.logger.info({ certificate: describe(cert), clientCaChanged: caChanged }, 'TLS files reloaded');
    } catch (err) {
      // Mid-rotation (one file written, the other not yet) or a broken file: keep serving the
      // last good set; warn once per distinct problem, not on every poll.
      const message = (err as Error).message;
      if (message !== this.lastFailure) {
        this.lastFailure = message;
        this.logger.warn(
          { err: { message } },
          'TLS files changed but do not load; still serving the previous ones',
        );
      }
    } finally {
      this.polling = false;
    }
  }

  private start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.reload(), this.tls.reload_interval);
    this.timer.unref();
  }

  private stopIfUnused(): void {
    if (this.caListeners.size === 0 && this.identityListeners.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}

/**
 * Server credentials for the API port from `tls`: TLS, or mutual TLS when `client_ca_file` is
 * set (client certificates required unless `require_client_cert: false`).
 * @throws Error naming the field when a file is missing or the set does not load.
 */
export function createTlsCredentials(tls: TlsConfig, logger: Logger): ServerCredentials {
  const provider = new ReloadingCertificateProvider(tls, logger);
  const mutual = tls.client_ca_file !== undefined;
  // grpc-js 1.14 names the parameters (ca, identity) but hands them on as (identity, ca); one
  // provider serving both roles makes the order irrelevant.
  return experimental.createCertificateProviderServerCredentials(
    provider,
    mutual ? provider : null,
    mutual && tls.require_client_cert,
  );
}
