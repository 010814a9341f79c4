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
  }
  export default Provider;
}
