/**
 * `npm run demo`: a complete walkthrough against a running dev broker (`npm start` with no
 * configuration), printing each step: StartLogin → sign in at the dev OpenID Provider →
 * CompleteLogin → GetValidSubjectToken (STORED) → a margin larger than the token has left →
 * REFRESHED with a rotated refresh token → the grant revoked at the provider →
 * REAUTH_REQUIRED / REFRESH_REJECTED. Tokens are shown only as SHA-256 fingerprints.
 *
 * Exit code 0 when every step behaved as described, 1 otherwise (the failing step says why).
 * The dev broker's session file (`$TMPDIR/credbroker-dev.json`) says where everything runs.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import type { DevSession } from '../src/dev/dev-mode.js';
import { devSessionFile } from '../src/dev/dev-mode.js';
import { signInAtDevProvider } from '../src/dev/sign-in.js';
import {
  CredentialBrokerClient,
  StorageOutcome,
  storageOutcomeToJSON,
  TokenSource,
  tokenSourceToJSON,
  type CompleteLoginRequest,
  type CompleteLoginResponse,
  type GetValidSubjectTokenResponse,
  type StartLoginRequest,
  type StartLoginResponse,
} from '../src/gen/credbroker/v1/broker.js';
import { ErrorInfo } from '../src/gen/google/rpc/error_details.js';
import { Status } from '../src/gen/google/rpc/status.js';

class StepFailed extends Error {}

const fingerprint = (token: string) =>
  `sha256:${createHash('sha256').update(token).digest('hex').slice(0, 12)}`;
const secondsUntil = (date: Date | undefined) => Math.round(((date?.getTime() ?? 0) - Date.now()) / 1000);

function expect(condition: boolean, what: string): void {
  if (!condition) throw new StepFailed(what);
}

function readSession(): DevSession {
  const file = devSessionFile();
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as DevSession;
  } catch {
    throw new StepFailed(`no dev broker session at ${file}: start the dev broker first with \`npm start\``);
  }
}

/** The four RPCs as promises (the generated client is callback-based). */
function brokerCalls(client: CredentialBrokerClient) {
  const settle =
    <Res>(resolve: (r: Res) => void, reject: (e: ServiceError) => void) =>
    (err: ServiceError | null, res: Res) =>
      err ? reject(err) : resolve(res);
  return {
    startLogin: (req: StartLoginRequest) =>
      new Promise<StartLoginResponse>((resolve, reject) => client.startLogin(req, settle(resolve, reject))),
    completeLogin: (req: CompleteLoginRequest) =>
      new Promise<CompleteLoginResponse>((resolve, reject) =>
        client.completeLogin(req, settle(resolve, reject)),
      ),
    getToken: (userId: string, provider: string, minValidForSeconds: number) =>
      new Promise<GetValidSubjectTokenResponse>((resolve, reject) =>
        client.getValidSubjectToken(
          { userId, provider, minValidFor: { seconds: minValidForSeconds, nanos: 0 } },
          settle(resolve, reject),
        ),
      ),
  };
}

function errorInfo(err: ServiceError): ErrorInfo | undefined {
  const raw = err.metadata?.get('grpc-status-details-bin')[0];
  if (!(raw instanceof Buffer)) return undefined;
  const detail = Status.decode(raw).details.find((d) => d.typeUrl.endsWith('google.rpc.ErrorInfo'));
  return detail ? ErrorInfo.decode(detail.value) : undefined;
}

async function expectReauth(promise: Promise<unknown>, cause: string): Promise<ErrorInfo> {
  try {
    await promise;
  } catch (err) {
    const info = errorInfo(err as ServiceError);
    expect(
      info?.reason === 'REAUTH_REQUIRED' && info.metadata.cause === cause,
      `expected REAUTH_REQUIRED / ${cause}, got ${(err as ServiceError).code} ${info?.reason ?? ''} ${info?.metadata.cause ?? ''}`,
    );
    console.log(
      `   → FAILED_PRECONDITION ${info!.reason}, cause ${cause}: "${(err as ServiceError).details}"`,
    );
    return info!;
  }
  throw new StepFailed(`expected REAUTH_REQUIRED / ${cause}, the call succeeded`);
}

async function providerStatus(
  session: DevSession,
): Promise<{ refreshGrants: number; refreshTokensRotated: number }> {
  const res = await fetch(session.statusUrl);
  return (await res.json()) as { refreshGrants: number; refreshTokensRotated: number };
}

async function demo(): Promise<void> {
  const session = readSession();
  const client = new CredentialBrokerClient(session.broker, credentials.createInsecure());
  const broker = brokerCalls(client);
  let step = 0;
  const title = (text: string) => console.log(`\n${++step}. ${text}`);
  try {
    console.log(
      `credbroker demo — broker ${session.broker}, provider "${session.provider}" (${session.issuer}), user "${session.user}"`,
    );

    title('StartLogin: the login front end asks the broker where to send the browser');
    const started = await broker.startLogin({
      provider: session.provider,
      redirectUri: session.redirectUri,
      scopes: [],
      loginHint: '',
    });
    const authUrl = new URL(started.authorizationUrl);
    expect(
      authUrl.searchParams.get('code_challenge_method') === 'S256',
      'the authorization URL uses PKCE S256',
    );
    console.log(`   → authorization URL ${authUrl.origin}${authUrl.pathname}?…`);
    console.log(
      `     scope "${authUrl.searchParams.get('scope')}", PKCE S256, nonce and state kept by the broker (single use, until ${started.expiresAt?.toISOString()})`,
    );

    title(`Sign in at the dev OpenID Provider as "${session.user}" (what the user does in the browser)`);
    const response = await signInAtDevProvider(started.authorizationUrl, session.user);
    expect(
      response.code !== undefined && response.error === undefined,
      `the provider returned a code (error: ${response.error})`,
    );
    expect(response.state === started.state, 'the provider returned the same state');
    console.log(`   → redirected to ${session.redirectUri} with an authorization code and the state`);

    title('CompleteLogin: the front end hands the code to the broker, which exchanges it at the IdP');
    const completed = await broker.completeLogin({
      provider: session.provider,
      code: response.code!,
      redirectUri: session.redirectUri,
      state: started.state,
      codeVerifier: '',
      nonce: '',
      userId: '',
    });
    const id = completed.identity;
    console.log(
      `   → identity: ${id?.name} <${id?.email}>, subject "${id?.subject}", issuer ${id?.issuer} (ID token verified)`,
    );
    console.log(
      `   → user_id "${completed.userId}", storage ${storageOutcomeToJSON(completed.storage).replace('STORAGE_OUTCOME_', '')}, access token valid for ${secondsUntil(completed.accessTokenExpiresAt)} s`,
    );
    expect(completed.storage === StorageOutcome.STORAGE_OUTCOME_STORED, 'storage is STORED');
    const userId = completed.userId;

    title("GetValidSubjectToken (min_valid_for 60 s): a backend asks for the user's token");
    const first = await broker.getToken(userId, session.provider, 60);
    const firstLeft = secondsUntil(first.expiresAt);
    console.log(
      `   → ${tokenSourceToJSON(first.source).replace('TOKEN_SOURCE_', '')}: ${first.tokenType} ${fingerprint(first.accessToken)}, ${firstLeft} s left`,
    );
    expect(first.source === TokenSource.TOKEN_SOURCE_STORED, 'served from the store');

    const margin = session.accessTokenTtlSeconds + 300;
    title(
      `GetValidSubjectToken (min_valid_for ${margin} s): more than the ${firstLeft} s left, so the broker must refresh`,
    );
    const before = await providerStatus(session);
    const second = await broker.getToken(userId, session.provider, margin);
    const after = await providerStatus(session);
    console.log(
      `   → ${tokenSourceToJSON(second.source).replace('TOKEN_SOURCE_', '')}: ${second.tokenType} ${fingerprint(second.accessToken)}, ${secondsUntil(second.expiresAt)} s left (a new token)`,
    );
    expect(second.source === TokenSource.TOKEN_SOURCE_REFRESHED, 'refreshed');
    expect(second.accessToken !== first.accessToken, 'a different access token');
    const refreshes = after.refreshGrants - before.refreshGrants;
    const rotated = after.refreshTokensRotated - before.refreshTokensRotated;
    console.log(
      `   → at the provider: ${refreshes} refresh grant; the refresh token was rotated (old one consumed, new one stored encrypted)`,
    );
    expect(
      refreshes === 1 && rotated === 1,
      `one refresh with rotation at the provider (refreshes ${refreshes}, rotated ${rotated})`,
    );

    title(`Revoke ${session.user}'s grant at the provider (an admin, or the user in their account settings)`);
    const revoked = await fetch(session.revokeUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ login: session.user }).toString(),
    });
    const { revoked: count } = (await revoked.json()) as { revoked: number };
    expect(count >= 1, 'the provider revoked a grant');
    console.log(`   → ${count} grant revoked: the stored refresh token is dead`);

    title(`GetValidSubjectToken (min_valid_for ${margin} s): the refresh is rejected`);
    await expectReauth(broker.getToken(userId, session.provider, margin), 'REFRESH_REJECTED');
    console.log('   → the broker dropped the dead record; the user must sign in again');

    title('GetValidSubjectToken again');
    await expectReauth(broker.getToken(userId, session.provider, 60), 'NO_TOKEN');

    console.log(
      `\nDemo complete: ${step} steps as expected.${session.metrics ? ` Metrics: ${session.metrics}` : ''}`,
    );
  } finally {
    client.close();
  }
}

demo().then(
  () => {
    process.exitCode = 0;
  },
  (err: unknown) => {
    const message =
      err instanceof StepFailed
        ? err.message
        : err instanceof Error
          ? (err.stack ?? err.message)
          : String(err);
    console.error(`\ndemo failed: ${message}`);
    process.exitCode = 1;
  },
);
