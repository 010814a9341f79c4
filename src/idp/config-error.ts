/**
 * IdpConfigError, on its own so that the CLI can recognise it without loading the IdP client
 * (openid-client) for every command.
 */

/** A provider configuration that cannot work. The message names the field, never a secret. */
export class IdpConfigError extends Error {
  override readonly name = 'IdpConfigError';
}
