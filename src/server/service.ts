/**
 * The CredentialBroker service: wire messages ⇄ domain calls. Each handler validates its
 * request (./validation.ts), runs the domain operation and maps the result to the response.
 */
import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type {
  BrokerApi,
  GetTokenResult,
  IdpRevocationOutcome,
  StorageOutcome as DomainStorage,
} from '../broker/api.js';
import { BrokerError, ErrorReason } from '../core/errors.js';
import {
  CredentialBrokerService,
  DownstreamTokenSource,
  GetValidSubjectTokenResponse,
  IdpRevocation,
  StorageOutcome,
  TokenSource,
  type CredentialBrokerServer,
} from '../gen/credbroker/v1/broker.js';
import { isPromiseLike, UNDECODABLE, unary, type CallWrapperOptions } from './call.js';
import { EncodedResponses, passEncoded } from './encoded-response.js';
import {
  validateCompleteLogin,
  validateGetDownstreamToken,
  validateGetToken,
  validateRevoke,
  validateStartLogin,
  type ProviderResolver,
} from './validation.js';

/** RFC 8693 §3: the token type URI of an OAuth access token. */
export const ACCESS_TOKEN_TYPE_URI = 'urn:ietf:params:oauth:token-type:access_token';

const storageOutcome: Record<DomainStorage, StorageOutcome> = {
  STORED: StorageOutcome.STORAGE_OUTCOME_STORED,
  DISABLED: StorageOutcome.STORAGE_OUTCOME_DISABLED,
  FAILED: StorageOutcome.STORAGE_OUTCOME_FAILED,
};
const idpRevocation: Record<IdpRevocationOutcome, IdpRevocation> = {
  NOT_REQUESTED: IdpRevocation.IDP_REVOCATION_NOT_REQUESTED,
  REVOKED: IdpRevocation.IDP_REVOCATION_REVOKED,
  NOT_SUPPORTED: IdpRevocation.IDP_REVOCATION_NOT_SUPPORTED,
  FAILED: IdpRevocation.IDP_REVOCATION_FAILED,
};

export interface ServiceOptions extends CallWrapperOptions {
  readonly api: BrokerApi;
  readonly providers: ProviderResolver;
}

function getTokenResponse(token: GetTokenResult): GetValidSubjectTokenResponse {
  return {
    accessToken: token.accessToken,
    tokenType: token.tokenType,
    expiresAt: token.expiresAt,
    scopes: [...token.scopes],
    source: token.source === 'STORED' ? TokenSource.TOKEN_SOURCE_STORED : TokenSource.TOKEN_SOURCE_REFRESHED,
    issuedTokenType: ACCESS_TOKEN_TYPE_URI,
    degraded: token.degraded,
  };
}

/**
 * grpc-js answers a request it cannot decode with a bare INTERNAL before any handler runs: no
 * ErrorInfo, no call log line, no audit entry, and INTERNAL blames the server for the client's
 * bytes. Decode failures go to the call wrapper as UNDECODABLE instead (./call.ts).
 */
function tolerantDecoding<T extends ServiceDefinition>(definition: T): T {
  const methods = Object.entries(definition).map(([name, method]) => [
    name,
    {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return method.requestDeserialize(bytes);
        } catch {
          return UNDECODABLE;
        }
      },
    },
  ]);
  return Object.fromEntries(methods) as T;
}

/**
 * The service definition to register the handlers with: requests that do not decode reach the
 * call wrapper (tolerantDecoding), and GetValidSubjectToken's EncodedResponse answers pass
 * through the serializer (./encoded-response.ts).
 */
export const credentialBrokerDefinition: typeof CredentialBrokerService = passEncoded(
  tolerantDecoding(CredentialBrokerService),
);

/** The service's handlers; register them with `credentialBrokerDefinition`. */
export function createCredentialBrokerService(
  options: ServiceOptions,
): CredentialBrokerServer & UntypedServiceImplementation {
  const { api, providers } = options;
  // A stored token's response, encoded once per stored record (GetTokenResult.served).
  const storedResponses = new EncodedResponses<GetValidSubjectTokenResponse>((message) =>
    GetValidSubjectTokenResponse.encode(message).finish(),
  );
  const tokenResponse = (token: GetTokenResult): GetValidSubjectTokenResponse => {
    if (token.served === undefined || token.source !== 'STORED' || token.degraded)
      return getTokenResponse(token);
    // Same record, same bytes: the response holds nothing of the request.
    return storedResponses.of(
      token.served,
      token,
      getTokenResponse,
    ) as unknown as GetValidSubjectTokenResponse;
  };
  return {
    startLogin: unary(
      'StartLogin',
      options,
      (req) => validateStartLogin(req, providers),
      async (input, ctx) => {
        const result = await api.startLogin(input, ctx);
        return {
          authorizationUrl: result.authorizationUrl,
          state: result.state,
          expiresAt: result.expiresAt,
        };
      },
    ),
    completeLogin: unary(
      'CompleteLogin',
      options,
      (req) => validateCompleteLogin(req, providers),
      async (input, ctx) => {
        const result = await api.completeLogin(input, ctx);
        const { identity } = result;
        return {
          userId: result.userId,
          identity: {
            issuer: identity.issuer,
            subject: identity.subject,
            email: identity.email ?? '',
            emailVerified: identity.emailVerified,
            name: identity.name ?? '',
            // JSON round trip: Struct holds only JSON values (no undefined, no Dates).
            claims: JSON.parse(JSON.stringify(identity.claims)) as Record<string, unknown>,
          },
          storage: storageOutcome[result.storage],
          accessTokenExpiresAt: result.accessTokenExpiresAt,
          scopes: [...result.scopes],
        };
      },
    ),
    getValidSubjectToken: unary(
      'GetValidSubjectToken',
      options,
      (req) => validateGetToken(req, providers),
      // Answered without a promise when the domain answers without one (a stored token).
      (input, ctx) => {
        const token = api.getValidSubjectToken(input, ctx);
        return isPromiseLike(token) ? Promise.resolve(token).then(tokenResponse) : tokenResponse(token);
      },
    ),
    revokeSubjectToken: unary(
      'RevokeSubjectToken',
      options,
      (req) => validateRevoke(req, providers),
      async (input, ctx) => {
        const result = await api.revokeSubjectToken(input, ctx);
        return { deleted: result.deleted, idpRevocation: idpRevocation[result.idpRevocation] };
      },
    ),
    getDownstreamToken: unary(
      'GetDownstreamToken',
      options,
      (req) => validateGetDownstreamToken(req, providers),
      async (input, ctx) => {
        if (!api.getDownstreamToken) {
          throw new BrokerError(
            ErrorReason.NOT_IMPLEMENTED,
            'GetDownstreamToken is not available in this build',
          );
        }
        const token = await api.getDownstreamToken(input, ctx);
        return {
          accessToken: token.accessToken,
          tokenType: token.tokenType,
          expiresAt: token.expiresAt,
          scopes: [...token.scopes],
          source:
            token.source === 'CACHED'
              ? DownstreamTokenSource.DOWNSTREAM_TOKEN_SOURCE_CACHED
              : DownstreamTokenSource.DOWNSTREAM_TOKEN_SOURCE_EXCHANGED,
          issuedTokenType: token.issuedTokenType,
          degraded: token.degraded,
        };
      },
    ),
  };
}
