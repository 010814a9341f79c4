/**
 * Test PKI generated at test time with the `openssl` command line: certificate authorities and
 * server / client certificates (ECDSA P-256, valid one day) in a temporary directory that
 * `cleanup()` removes. No key is ever committed.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Issued {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export interface TestCa extends Issued {
  /** Issues a certificate signed by this CA. */
  issue(name: string, options: IssueOptions): Issued;
}

export interface IssueOptions {
  /** Subject, e.g. `/CN=orders.prod.svc/O=Acme` (openssl -subj syntax). */
  readonly subject: string;
  /** subjectAltName entries, e.g. `DNS:localhost`, `IP:127.0.0.1`, `URI:spiffe://prod/orders`. */
  readonly sans?: readonly string[];
  readonly usage: 'server' | 'client';
}

export interface TestPki {
  readonly dir: string;
  /** Creates a self-signed CA. */
  ca(name: string): TestCa;
  cleanup(): void;
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export function createPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'credbroker-pki-'));
  const ca = (name: string): TestCa => {
    const certFile = join(dir, `${name}.crt`);
    const keyFile = join(dir, `${name}.key`);
    openssl(
      [
        'req',
        '-x509',
        ...EC,
        '-keyout',
        keyFile,
        '-out',
        certFile,
        '-days',
        '1',
        '-subj',
        `/CN=${name}`,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    );
    const issue = (leaf: string, options: IssueOptions): Issued => {
      const leafCert = join(dir, `${leaf}.crt`);
      const leafKey = join(dir, `${leaf}.key`);
      const csr = join(dir, `${leaf}.csr`);
      const ext = join(dir, `${leaf}.ext`);
      const lines = [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        `extendedKeyUsage=${options.usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
      ];
      if (options.sans?.length) lines.push(`subjectAltName=${options.sans.join(',')}`);
      writeFileSync(ext, `${lines.join('\n')}\n`);
      openssl(['req', ...EC, '-keyout', leafKey, '-out', csr, '-subj', options.subject], dir);
      openssl(
        [
          'x509',
          '-req',
          '-in',
          csr,
          '-CA',
          certFile,
          '-CAkey',
          keyFile,
          '-CAcreateserial',
          '-days',
          '1',
          '-extfile',
          ext,
          '-out',
          leafCert,
        ],
        dir,
      );
      return {
        certFile: leafCert,
        keyFile: leafKey,
        cert: readFileSync(leafCert),
        key: readFileSync(leafKey),
      };
    };
    return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile), issue };
  };
  return { dir, ca, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
