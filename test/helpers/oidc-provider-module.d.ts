/**
 * The small part of panva's oidc-provider (a Koa application, untyped JavaScript) that the test
 * helper uses. Not a complete typing: just enough for strict TypeScript.
 */
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export interface KoaContext {
    path: string;
    method: string;
    status: number;
    body: unknown;
    set(name: string, value: string): void;
    oidc?: { params?: Record<string, unknown>; client?: { clientId: string } };
  }
  export type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;

  export class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    readonly issuer: string;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    use(middleware: Middleware): this;
    on(event: string, listener: (...args: unknown[]) => void): this;
    readonly IdToken: { prototype: { issue(options?: unknown): Promise<string> } };
    /** Access tokens this provider issued (opaque format), by value. */
    readonly AccessToken: {
      find(value: string): Promise<{ accountId: string; clientId: string; isExpired: boolean } | undefined>;
    };
    /** Adds a grant type to the token endpoint: `params` are accepted, `dupes` may repeat. */
    registerGrantType(
      name: string,
      handler: (ctx: KoaContext & { oidc: NonNullable<KoaContext['oidc']> }) => Promise<void>,
      params?: readonly string[],
      dupes?: readonly string[],
    ): void;
  }
  /** OAuth error responses (RFC 6749 §5.2, RFC 8707 §2): thrown from a grant handler. */
  export const errors: {
    InvalidGrant: new (detail?: string) => Error;
    InvalidRequest: new (description?: string) => Error;
    InvalidTarget: new (description?: string) => Error;
  };
  export default Provider;
}
