/**
 * Client authentication at the token, revocation and user endpoints (RFC 6749 §2.3, OIDC Core
 * §9): client_secret_basic, client_secret_post, private_key_jwt (RFC 7523) and none (a public
 * client, protected by PKCE alone). openid-client builds and signs everything; this file only
 * turns configuration into its ClientAuth, loading the private key once at startup.
 */
import { createPrivateKey, webcrypto, type KeyObject } from 'node:crypto';
import { ClientSecretBasic, ClientSecretPost, None, PrivateKeyJwt, type ClientAuth } from 'openid-client';
import type { ProviderConfig } from '../config/load.js';

/** The WebCrypto import parameters (and JWS alg) for a PKCS#8 private key. */
function signingAlgorithm(
  key: KeyObject,
): webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams | { name: 'Ed25519' } {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }; // RS256
    case 'rsa-pss':
      return { name: 'RSA-PSS', hash: 'SHA-256' }; // PS256
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return { name: 'ECDSA', namedCurve: 'P-256' }; // ES256
      if (curve === 'secp384r1') return { name: 'ECDSA', namedCurve: 'P-384' }; // ES384
      if (curve === 'secp521r1') return { name: 'ECDSA', namedCurve: 'P-521' }; // ES512
      throw new Error(`unsupported EC curve ${curve ?? 'unknown'} (use P-256, P-384 or P-521)`);
    }
    case 'ed25519':
      return { name: 'Ed25519' }; // EdDSA
    default:
      throw new Error(`unsupported key type ${key.asymmetricKeyType ?? 'unknown'} (use RSA, EC or Ed25519)`);
  }
}

/**
 * Loads a private_key_jwt signing key from PEM (PKCS#8, PKCS#1 or SEC1) text.
 * @throws Error without the key material in its message
 */
export async function loadSigningKey(pem: string): Promise<webcrypto.CryptoKey> {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new Error('not a PEM private key');
  }
  const der = key.export({ format: 'der', type: 'pkcs8' });
  return webcrypto.subtle.importKey('pkcs8', der, signingAlgorithm(key), false, ['sign']);
}

/**
 * The ClientAuth for a provider. Secrets were read from `*_file` by loadConfig; the private key
 * file is read here.
 * @param readFile reads private_key_file (tests pass their own)
 * @throws Error naming the field when a secret or key is missing or unusable
 */
export async function createClientAuth(
  p: Pick<ProviderConfig, 'id' | 'client_auth' | 'client_secret' | 'private_key_file' | 'private_key_id'>,
  readFile: (path: string) => string,
): Promise<ClientAuth> {
  switch (p.client_auth) {
    case 'client_secret_basic':
    case 'client_secret_post': {
      if (p.client_secret === undefined || p.client_secret === '') {
        throw new Error(`providers.${p.id}.client_secret: required for ${p.client_auth}`);
      }
      return p.client_auth === 'client_secret_basic'
        ? ClientSecretBasic(p.client_secret)
        : ClientSecretPost(p.client_secret);
    }
    case 'private_key_jwt': {
      if (p.private_key_file === undefined) {
        throw new Error(`providers.${p.id}.private_key_file: required for private_key_jwt`);
      }
      let pem: string;
      try {
        pem = readFile(p.private_key_file);
      } catch (err) {
        throw new Error(
          `providers.${p.id}.private_key_file: cannot read ${p.private_key_file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
        );
      }
      let key: webcrypto.CryptoKey;
      try {
        key = await loadSigningKey(pem);
      } catch (err) {
        throw new Error(`providers.${p.id}.private_key_file: ${(err as Error).message}`);
      }
      return PrivateKeyJwt(p.private_key_id === undefined ? key : { key, kid: p.private_key_id });
    }
    case 'none':
      return None();
  }
}
