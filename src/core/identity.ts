/** Who logged in, as verified from the IdP's answer (ID token or user API). */
export interface Identity {
  readonly issuer: string;
  readonly subject: string;
  readonly email: string | undefined;
  readonly emailVerified: boolean;
  readonly name: string | undefined;
  /** Every verified ID-token claim (or the user API's fields for non-OIDC providers). */
  readonly claims: Readonly<Record<string, unknown>>;
}
