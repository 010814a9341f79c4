/**
 * Matching a verified client certificate against `callers[].tls_subject` / `tls_san`. Only
 * certificates that chained to the configured client CA reach this code (grpc-js reports no peer
 * certificate for an unauthorized TLS socket), so the CA decides who may hold which subject.
 */
import type { PeerCertificate } from 'node:tls';

/** One `ATTR=value` of a distinguished name. */
export interface Rdn {
  readonly attr: string;
  readonly value: string;
}

/**
 * Parses `CN=orders.prod.svc, O=Acme` (RFC 4514 order-free subset: `,` separates, `\,` escapes a
 * comma). @throws Error naming the bad part.
 */
export function parseSubject(text: string): Rdn[] {
  const parts = text.split(/(?<!\\),/).map((p) => p.trim().replace(/\\,/g, ','));
  return parts.map((part) => {
    const eq = part.indexOf('=');
    if (eq <= 0 || eq === part.length - 1) {
      throw new Error(`expected ATTR=value pairs like CN=orders.prod.svc, got "${part}"`);
    }
    return { attr: part.slice(0, eq).trim(), value: part.slice(eq + 1).trim() };
  });
}

/** Every configured attribute must be present in the certificate's subject with that value. */
export function subjectMatches(
  rdns: readonly Rdn[],
  subject: PeerCertificate['subject'] | undefined,
): boolean {
  if (!subject) return false;
  const attrs = subject as unknown as Record<string, string | string[] | undefined>;
  return rdns.every(({ attr, value }) => {
    const actual = attrs[attr];
    return Array.isArray(actual) ? actual.includes(value) : actual === value;
  });
}

/** A subject alternative name: type as Node prints it (`DNS`, `URI`, `IP Address`, `email`) and value. */
export interface San {
  readonly type: string;
  readonly value: string;
}

/**
 * Parses Node's `subjectaltname` string (`DNS:a, URI:spiffe://x, IP Address:10.0.0.1`); values
 * with special characters come JSON-quoted since Node 17.3.1 (CVE-2021-44532).
 */
export function parseSubjectAltNames(text: string | undefined): San[] {
  const out: San[] = [];
  if (!text) return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon).trim();
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      let end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      } catch {
        value = text.slice(colon + 2, end);
      }
      next = text.indexOf(',', end + 1);
    } else {
      next = text.indexOf(',', colon + 1);
      value = text.slice(colon + 1, next < 0 ? undefined : next);
    }
    out.push({ type, value: value.trim() });
    if (next < 0) break;
    i = next + 1;
  }
  return out;
}

const SAN_TYPES: Record<string, string> = { DNS: 'DNS', URI: 'URI', IP: 'IP Address', EMAIL: 'email' };

/**
 * `tls_san` is `DNS:orders.prod.svc`, `URI:spiffe://prod/orders`, `IP:10.0.0.7`,
 * `email:ops@example.com`, or a bare value matching a SAN of any type. DNS names compare
 * case-insensitively (RFC 4343).
 */
export function sanMatches(wanted: string, sans: readonly San[]): boolean {
  const colon = wanted.indexOf(':');
  const prefix = colon > 0 ? SAN_TYPES[wanted.slice(0, colon).toUpperCase()] : undefined;
  const type = prefix;
  const value = prefix === undefined ? wanted : wanted.slice(colon + 1);
  return sans.some(
    (san) =>
      (type === undefined || san.type === type) &&
      (san.type === 'DNS' ? san.value.toLowerCase() === value.toLowerCase() : san.value === value),
  );
}

/** A printable identity for a certificate no caller matched (audit only): its subject. */
export function describeSubject(subject: PeerCertificate['subject'] | undefined): string {
  if (!subject) return 'unknown certificate';
  return Object.entries(subject as unknown as Record<string, string | string[]>)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`)
    .join(',');
}
