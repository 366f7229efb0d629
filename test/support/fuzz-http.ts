import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
} from 'aws-lambda';
import fc from 'fast-check';
import { type BrokerConfig, loadConfig } from '../../functions/broker/config.ts';
import { newConnectionId } from '../../functions/broker/connection.ts';
import { TokenVault } from '../../functions/broker/envelope.ts';
import { issueBrokerCode } from '../../functions/broker/handoff.ts';
import { codeChallengeS256, newCodeVerifier } from '../../functions/broker/pkce.ts';
import type {
  ClientCredentials,
  Log,
  SessionRecord,
  TokenSet,
} from '../../functions/broker/ports.ts';
import { newSessionHandle, sessionKeyOf } from '../../functions/broker/session-handle.ts';
import type { TokenResponse } from '../../functions/broker/upstream.ts';
import type { HttpHandler } from '../../functions/http/route.ts';
import { createCallbackHandler } from '../../functions/routes/callback.ts';
import { createLoginHandler } from '../../functions/routes/login.ts';
import { createLogoutHandler } from '../../functions/routes/logout.ts';
import { createRefreshHandler } from '../../functions/routes/refresh.ts';
import { createServiceHandler } from '../../functions/routes/service.ts';
import { createSessionHandler } from '../../functions/routes/session.ts';
import { createTokenHandler } from '../../functions/routes/token.ts';
import { SalesforceOAuthClient } from '../../functions/salesforce/oauth-client.ts';
import { findClientApp, isRegisteredRedirectUri } from '../../functions/shared/client-apps.ts';
import { SERVICE_ROUTE_KEYS } from '../../functions/shared/constants.ts';
import { CaptureLog, CaptureMetrics } from './capture-log.ts';
import { httpEvent } from './http-event.ts';
import { MemoryBrokerCodeStore } from './memory-code-store.ts';
import { MemoryDataKeys } from './memory-data-keys.ts';
import { MemoryLoginStore } from './memory-login-store.ts';
import { MemorySessionStore } from './memory-session-store.ts';

/**
 * Property-based fuzzing of the Lambda entry points with generated HTTP API v2 events,
 * run directly against in-memory ports (no network). Used by the vitest suite (a few
 * hundred runs) and by `bench/soak.ts` (ten thousand and more).
 *
 * Events carry placeholders that each run replaces with that run's secrets: a live
 * session handle, a login `state` and its login cookie, an authorization code. Those
 * values, the tokens and the client secret are canaries: no log entry may contain one.
 */

export const ALLOWED_ORIGIN = 'https://app.example.com';
const LOGIN_URL = 'https://login.salesforce.com';
const IDENTITY = `${LOGIN_URL}/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS`;
const CLIENT_SECRET = 'canary-client-secret-5f0c2a';

/** Placeholders in generated events, replaced per run. */
const HANDLE = '⟨H⟩';
const STATE = '⟨S⟩';
const LOGIN_COOKIE = '⟨L⟩';
const CODE = '⟨C⟩';
/** The handoff's: a live broker code, its PKCE verifier and challenge, an app's state. */
const BROKER_CODE = '⟨B⟩';
const VERIFIER = '⟨V⟩';
const CHALLENGE = '⟨X⟩';
const APP_STATE = '⟨A⟩';

/** The registered apps of every run (`CLIENT_APPS`). */
const APP_REDIRECT = 'com.example.app:/oauth2redirect';
const CLIENT_APPS = [
  { client_id: 'ios', redirect_uris: [APP_REDIRECT] },
  { client_id: 'desktop', redirect_uris: ['http://127.0.0.1/cb'] },
];

/** Counts what reaches "Salesforce"; answers like it with canary tokens. */
export class FuzzSalesforce {
  readonly calls = { refresh: 0, code: 0, revoke: 0 };
  readonly issued: string[] = [];
  readonly #urls = new SalesforceOAuthClient({
    loginUrl: new URL(LOGIN_URL),
    timeoutMs: 1000,
    fetch: () => Promise.reject(new Error('the fuzz Salesforce has no network')),
  });
  #counter = 0;

  authorizationUrl(parameters: Parameters<SalesforceOAuthClient['authorizationUrl']>[0]): URL {
    return this.#urls.authorizationUrl(parameters);
  }

  async refreshTokenGrant(_credentials: ClientCredentials, _refreshToken: string) {
    this.calls.refresh++;
    return this.#answer();
  }

  async authorizationCodeGrant(_credentials: ClientCredentials, _grant: { code: string }) {
    this.calls.code++;
    return this.#answer();
  }

  async revoke(_token: string): Promise<void> {
    this.calls.revoke++;
  }

  #answer(): TokenResponse {
    this.#counter++;
    const accessToken = `00Dxx0000001gPL!canary-access-${this.#counter}-${newSessionHandle()}`;
    const refreshToken = `canary-refresh-${this.#counter}-${newSessionHandle()}`;
    this.issued.push(accessToken, refreshToken);
    return {
      accessToken,
      refreshToken,
      instanceUrl: 'https://acme.my.salesforce.com',
      id: IDENTITY,
      orgId: '00Dxx0000001gPLEAY',
      userId: '005xx000001Sv6AAAS',
      issuedAt: '1800000000000',
      scope: 'api refresh_token',
      tokenType: 'Bearer',
    };
  }
}

/** In-memory ports shared by every entry point of one run. */
export interface FuzzPorts {
  config: BrokerConfig;
  store: MemorySessionStore;
  transactions: MemoryLoginStore;
  codes: MemoryBrokerCodeStore;
  vault: TokenVault;
  credentials: { get(): Promise<ClientCredentials>; reload(): Promise<ClientCredentials> };
  salesforce: FuzzSalesforce;
  clock: { now(): number };
  log: Log;
  metrics: CaptureMetrics;
  /** Handles minted by `/callback` (canaries too). */
  minted: string[];
}

/**
 * A valid request of a route, in placeholders: most generated events start from it and
 * change a few parts, so the fuzzing gets past the method and credential checks.
 */
export interface RequestTemplate {
  method: string;
  headers: readonly Record<string, string>[];
  cookies: readonly (string[] | undefined)[];
  queries: readonly string[];
  bodies: readonly (string | undefined)[];
}

export interface EntryPoint {
  name: string;
  path: string;
  build(ports: FuzzPorts): HttpHandler;
  template: RequestTemplate;
  /**
   * Route keys with a `{connection_id}` (the service API): each event names one, with a
   * path parameter and the IAM caller API Gateway adds once it verified the signature.
   */
  routeKeys?: readonly string[];
}

/** Stands for the run's seeded connection id in generated path parameters. */
const CONNECTION_ID = '__CONNECTION_ID__';

const CREDENTIALS: Pick<RequestTemplate, 'headers' | 'cookies'> = {
  headers: [
    { authorization: `Bearer ${HANDLE}` },
    { Authorization: `Bearer ${HANDLE}`, 'content-type': 'application/json' },
    { 'x-csrf': '1', origin: ALLOWED_ORIGIN },
    { 'x-csrf': '1' },
  ],
  cookies: [undefined, [`__Host-tb-session=${HANDLE}`]],
};

/** Handoff logins of a registered app (`/login?client_id=...`). */
const HANDOFF_QUERIES = [
  `client_id=ios&redirect_uri=${encodeURIComponent(APP_REDIRECT)}&state=${APP_STATE}&code_challenge=${CHALLENGE}&code_challenge_method=S256`,
  `client_id=desktop&redirect_uri=http%3A%2F%2F127.0.0.1%3A49152%2Fcb&state=${APP_STATE}&code_challenge=${CHALLENGE}&code_challenge_method=S256`,
  `client_id=ios&redirect_uri=${encodeURIComponent(APP_REDIRECT)}&state=${APP_STATE}&code_challenge=${CHALLENGE}`,
  `client_id=ios&redirect_uri=com.evil.app%3A%2Fcb&state=${APP_STATE}&code_challenge=${CHALLENGE}&code_challenge_method=S256`,
  `client_id=android&redirect_uri=${encodeURIComponent(APP_REDIRECT)}&state=${APP_STATE}&code_challenge=${CHALLENGE}&code_challenge_method=S256`,
  `client_id=ios&client_id=desktop&state=${APP_STATE}`,
  `client_id=ios&redirect_uri=${encodeURIComponent(APP_REDIRECT)}&state=${APP_STATE}&code_challenge=${CHALLENGE}&code_challenge_method=S256&return_to=/app`,
];

/** `POST /token` forms, with the run's live broker code and verifier. */
const TOKEN_FORM = `grant_type=authorization_code&code=${BROKER_CODE}&redirect_uri=${encodeURIComponent(APP_REDIRECT)}&client_id=ios&code_verifier=${VERIFIER}`;
const TOKEN_BODIES = [
  TOKEN_FORM,
  `${TOKEN_FORM}&code=${BROKER_CODE}`,
  TOKEN_FORM.replace('client_id=ios', 'client_id=desktop'),
  TOKEN_FORM.replace('client_id=ios', 'client_id=android'),
  TOKEN_FORM.replace(`code_verifier=${VERIFIER}`, `code_verifier=${'W'.repeat(43)}`),
  TOKEN_FORM.replace('authorization_code', 'refresh_token'),
  `grant_type=authorization_code&code=${BROKER_CODE}`,
  undefined,
];

/** Templates by method and route; a new route needs only its line in ENTRY_POINTS. */
export const TEMPLATES = {
  refresh: {
    method: 'POST',
    ...CREDENTIALS,
    queries: [''],
    bodies: [undefined, '{"version":1}', '{"version":0}', '{}'],
  },
  logout: { method: 'POST', ...CREDENTIALS, queries: [''], bodies: [undefined] },
  session: { method: 'GET', ...CREDENTIALS, queries: [''], bodies: [undefined] },
  login: {
    method: 'GET',
    headers: [{}],
    cookies: [undefined, [`__Host-tb-session=${HANDLE}`]],
    queries: [
      'return_to=%2Fapp%2Fx',
      '',
      'return_to=/app&prompt=login',
      'login_hint=a%40b.example',
      ...HANDOFF_QUERIES,
    ],
    bodies: [undefined],
  },
  token: {
    method: 'POST',
    headers: [
      { 'content-type': 'application/x-www-form-urlencoded' },
      { 'Content-Type': 'application/x-www-form-urlencoded; charset=UTF-8' },
    ] as Record<string, string>[],
    cookies: [undefined],
    queries: [''],
    bodies: TOKEN_BODIES,
  },
  service: {
    method: 'POST',
    headers: [{}, { 'content-type': 'application/json' }] as Record<string, string>[],
    cookies: [undefined],
    queries: [
      '',
      'organization_id=00Dxx0000001gPLEAY',
      'organization_id=00Dxx0000001gPL&user_id=005xx000001Sv6AAAS&limit=1',
      'organization_id=00Dxx0000001gPLEAY&cursor=1',
      'organization_id=00Dxx0000001gPLEAY&limit=100&cursor=0',
    ],
    bodies: [undefined, '{"version":1}', '{"version":0}', '{}'],
  },
  callback: {
    method: 'GET',
    headers: [{}],
    cookies: [
      [`__Host-tb-login=${LOGIN_COOKIE}`],
      [`__Host-tb-login=${LOGIN_COOKIE}`, `__Host-tb-session=${HANDLE}`],
    ],
    queries: [
      `state=${STATE}&code=${CODE}`,
      `code=${CODE}&state=${STATE}`,
      `state=${STATE}&error=access_denied`,
    ],
    bodies: [undefined],
  },
} satisfies Record<string, RequestTemplate>;

function withMintedHandles(ports: FuzzPorts): FuzzPorts & { newHandle: () => string } {
  return {
    ...ports,
    newHandle: () => {
      const handle = newSessionHandle();
      ports.minted.push(handle);
      return handle;
    },
  };
}

/**
 * Every Lambda entry point, one line each: a new route is fuzzed by adding its factory.
 * A factory that throws at construction (a missing setting) fails the suite.
 */
export const ENTRY_POINTS: readonly EntryPoint[] = [
  {
    name: 'refresh',
    path: '/refresh',
    build: (p) => createRefreshHandler(p),
    template: TEMPLATES.refresh,
  },
  {
    name: 'logout',
    path: '/logout',
    build: (p) => createLogoutHandler(p),
    template: TEMPLATES.logout,
  },
  {
    name: 'session',
    path: '/session',
    build: (p) => createSessionHandler(p),
    template: TEMPLATES.session,
  },
  { name: 'login', path: '/login', build: (p) => createLoginHandler(p), template: TEMPLATES.login },
  {
    name: 'callback',
    path: '/callback',
    build: (p) => createCallbackHandler(withMintedHandles(p)),
    template: TEMPLATES.callback,
  },
  { name: 'token', path: '/token', build: (p) => createTokenHandler(p), template: TEMPLATES.token },
  {
    name: 'service',
    path: '/connections',
    build: (p) => createServiceHandler(p),
    template: TEMPLATES.service,
    routeKeys: SERVICE_ROUTE_KEYS,
  },
];

export function buildPorts(log: Log = new CaptureLog()): FuzzPorts {
  const config = loadConfig({
    TABLE_NAME: 'fuzz',
    KMS_KEY_ID: 'alias/fuzz',
    CLIENT_SECRET_ID: 'fuzz',
    SALESFORCE_LOGIN_URL: LOGIN_URL,
    CALLBACK_URL: 'https://broker.example.com/callback',
    ALLOWED_ORIGINS: ALLOWED_ORIGIN,
    RETURN_TO_PREFIXES: '/app,/',
    CLIENT_APPS: JSON.stringify(CLIENT_APPS),
  });
  const credentials = { clientId: 'fuzz-client-id', clientSecret: CLIENT_SECRET };
  return {
    config,
    store: new MemorySessionStore(),
    transactions: new MemoryLoginStore(),
    codes: new MemoryBrokerCodeStore(),
    vault: new TokenVault(new MemoryDataKeys()),
    credentials: { get: async () => credentials, reload: async () => credentials },
    salesforce: new FuzzSalesforce(),
    clock: { now: () => Date.now() },
    log,
    metrics: new CaptureMetrics(),
    minted: [],
  };
}

/** The secrets of one run: a live session and a started login. */
export interface RunSecrets {
  handle: string;
  state: string;
  loginCookie: string;
  code: string;
  /** A live broker code for the seeded session, bound to `ios`, its redirect URI and `verifier`. */
  brokerCode: string;
  verifier: string;
  challenge: string;
  appState: string;
  /** The seeded session's connection (not a secret: service API calls name it). */
  connectionId: string;
  /** Every value that must never be logged. */
  canaries: string[];
}

export async function prepareRun(ports: FuzzPorts): Promise<RunSecrets> {
  const handle = newSessionHandle();
  const sessionKey = sessionKeyOf(handle);
  const now = ports.clock.now();
  const tokens: TokenSet = {
    accessToken: `00Dxx0000001gPL!canary-seeded-access-${newSessionHandle()}`,
    refreshToken: `canary-seeded-refresh-${newSessionHandle()}`,
    instanceUrl: 'https://acme.my.salesforce.com',
    issuedAt: String(now - 60_000),
    scope: 'api refresh_token',
    identityUrl: IDENTITY,
  };
  const dataKey = await ports.vault.generateDataKey(sessionKey);
  const record: SessionRecord = {
    sessionKey,
    version: 1,
    sealed: ports.vault.seal(dataKey, sessionKey, 1, tokens),
    committedAt: now - 60_000,
    createdAt: now - 60_000,
    absoluteExpiresAt: now + 86_400_000,
    idleExpiresAt: now + 86_400_000,
    orgId: '00Dxx0000001gPLEAY',
    userId: '005xx000001Sv6AAAS',
    connectionId: newConnectionId(),
    instanceUrl: tokens.instanceUrl,
    scope: tokens.scope,
  };
  await ports.store.create(record);
  const connectionId = record.connectionId ?? '';

  // A real /login, so /callback can meet a live transaction.
  const login = createLoginHandler(ports);
  const started = await login(
    event({ method: 'GET', path: '/login', rawQueryString: 'return_to=%2Fapp' }),
  );
  const location = new URL(String(started.headers?.location));
  const state = location.searchParams.get('state') ?? '';
  const loginCookie = /^__Host-tb-login=([^;]*)/.exec(started.cookies?.[0] ?? '')?.[1] ?? '';
  if (!state || !loginCookie) throw new Error('prepareRun: /login did not start a login');
  const code = `canary-code-${newSessionHandle()}`;

  // A broker code handing the seeded session to a registered app, as /callback stores it.
  const verifier = newCodeVerifier();
  const challenge = codeChallengeS256(verifier);
  const appState = `canary-app-state-${newSessionHandle()}`;
  const brokerCode = await issueBrokerCode(
    ports,
    {
      handoff: { clientId: 'ios', redirectUri: APP_REDIRECT, appState, codeChallenge: challenge },
      connectionId: 'con_fuzzfuzzfuzzfuzzfuzzfu',
      sessionKey,
      handle,
    },
    {},
  );
  if (!brokerCode) throw new Error('prepareRun: no broker code stored');
  return {
    handle,
    state,
    loginCookie,
    code,
    brokerCode,
    verifier,
    challenge,
    appState,
    connectionId,
    canaries: [
      handle,
      state,
      loginCookie,
      code,
      brokerCode,
      verifier,
      challenge,
      appState,
      tokens.accessToken,
      tokens.refreshToken,
      CLIENT_SECRET,
    ],
  };
}

/** A well-formed HTTP API v2 event. */
export const event = httpEvent;

// ---------------------------------------------------------------------------------------
// Generated events

const hostileText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom(
    '',
    ' ',
    '\r\n',
    'a\r\nSet-Cookie: x=1',
    '\u0000',
    '\uFEFF',
    'é€😀',
    '\uD800',
    '%',
    '%00',
    '{"level":"ERROR","message":"forged"}\n',
  ),
  fc.constant('x'.repeat(20_000)),
);

const headerName = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.constantFrom(
      'authorization',
      'Authorization',
      'AUTHORIZATION',
      'x-csrf',
      'X-CSRF',
      'origin',
      'Origin',
      'cookie',
      'Cookie',
      'content-type',
      'access-control-request-method',
      'host',
      'x-forwarded-for',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
);

const headerValue = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      `Bearer ${HANDLE}`,
      `bearer ${HANDLE}`,
      `Bearer   ${HANDLE}  `,
      `Bearer ${HANDLE}x`,
      `Bearer ${HANDLE}\r\nX-Evil: 1`,
      `Bearer ${HANDLE},Bearer ${HANDLE}`,
      `Basic ${HANDLE}`,
      `Bearer ${'A'.repeat(43)}`,
      'Bearer ',
      '1',
      ' 1',
      '1\r\n',
      '1,1',
      '0',
      ALLOWED_ORIGIN,
      `${ALLOWED_ORIGIN},${ALLOWED_ORIGIN}`,
      `${ALLOWED_ORIGIN}.evil.example`,
      'https://evil.example',
      'null',
      'POST',
      'application/json',
      'application/x-www-form-urlencoded',
      'text/plain; charset=utf-8',
      `__Host-tb-session=${HANDLE}`,
    ),
  },
  { weight: 2, arbitrary: hostileText },
);

const cookie = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.constantFrom(
      `__Host-tb-session=${HANDLE}`,
      `__Host-tb-login=${LOGIN_COOKIE}`,
      `__Host-tb-session=${HANDLE}; __Host-tb-login=${LOGIN_COOKIE}`,
      `__Host-tb-session=${HANDLE}; __Host-tb-session=${'B'.repeat(43)}`,
      `__Host-tb-session= ${HANDLE} `,
      `__Host-tb-session=${HANDLE}\r\n`,
      '__Host-tb-session=',
      '__Host-tb-session',
      '__Host-tb-login=garbage',
      'a=b',
      '=',
      ';;;',
    ),
  },
  { weight: 1, arbitrary: hostileText },
);

const rawQuery = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.constantFrom(
      '',
      `state=${STATE}&code=${CODE}`,
      `code=${CODE}&state=${STATE}&state=${STATE}`,
      `state=${STATE}&code=${CODE}&code=x`,
      `state=${STATE}`,
      `code=${CODE}`,
      `error=access_denied&error_description=no&state=${STATE}`,
      `error=%0d%0aforged&state=${STATE}`,
      `state=${STATE}%0d%0a&code=${CODE}`,
      'return_to=/app/x',
      'return_to=/application',
      'return_to=//evil.example',
      'return_to=%2F%2Fevil.example',
      'return_to=/%2e%2e/x',
      'return_to=/\\evil.example',
      'return_to=https://evil.example',
      'return_to=/app&return_to=/',
      'prompt=login&login_hint=someone@example.com',
      'prompt=none%0d%0a',
      'login_hint=%E2%82%AC',
      '%ZZ',
      'a=%00',
      '%C3%28',
      'x'.repeat(9000),
    ),
  },
  { weight: 1, arbitrary: fc.webQueryParameters() },
  { weight: 1, arbitrary: hostileText },
);

const body = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      '{"version":1}',
      '{"version":2}',
      '{"version":0}',
      '{"version":-1}',
      '{"version":1.5}',
      '{"version":1e308}',
      '{"version":"1"}',
      '{"version":null}',
      '{"__proto__":{"version":1}}',
      '{}',
      '[]',
      'null',
      '1',
      'version=1',
      `token=${HANDLE}`,
      ' ',
      `{"version":1,"pad":"${'x'.repeat(17_000)}"}`,
    ),
  },
  { weight: 1, arbitrary: fc.json({ maxDepth: 2 }) },
  {
    weight: 1,
    arbitrary: fc
      .uint8Array({ maxLength: 64 })
      .map((bytes) => Buffer.from(bytes).toString('base64')),
  },
  { weight: 1, arbitrary: hostileText },
);

const method = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      'GET',
      'POST',
      'OPTIONS',
      'PUT',
      'DELETE',
      'HEAD',
      'PATCH',
      'post',
      '',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
);

export interface GeneratedEvent {
  method: string;
  path: string | undefined;
  headers: Record<string, string>;
  cookies: string[] | undefined;
  rawQueryString: string;
  body: string | undefined;
  isBase64Encoded: boolean;
  requestId: string;
  /** `partial`: no `requestContext.http`; `bare`: no `requestContext` at all. */
  context: 'full' | 'partial' | 'bare';
  /** For entry points with `routeKeys`: the route key and `{connection_id}` of the event. */
  keyed?: { routeKey: string; connectionId: string } | undefined;
}

function keyedArbitrary(
  entry: EntryPoint,
): fc.Arbitrary<{ routeKey: string; connectionId: string } | undefined> {
  if (!entry.routeKeys) return fc.constant(undefined);
  return fc.record({
    routeKey: fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom(...entry.routeKeys) },
      { weight: 1, arbitrary: fc.constantFrom('$default', 'ANY /connections', '') },
    ),
    connectionId: fc.oneof(
      { weight: 4, arbitrary: fc.constant(CONNECTION_ID) },
      { weight: 1, arbitrary: fc.constant('con_AAAAAAAAAAAAAAAAAAAAAA') },
      { weight: 1, arbitrary: hostileText },
    ),
  });
}

export function eventArbitrary(entry: EntryPoint): fc.Arbitrary<GeneratedEvent> {
  return fc.oneof(
    { weight: 1, arbitrary: anyEvent(entry) },
    { weight: 3, arbitrary: nearlyValidEvent(entry) },
  );
}

/** A template request with some parts replaced or added. */
function nearlyValidEvent(entry: EntryPoint): fc.Arbitrary<GeneratedEvent> {
  const t = entry.template;
  const keep = <T>(values: readonly T[], other: fc.Arbitrary<T>) =>
    fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...values) }, { weight: 1, arbitrary: other });
  return fc.record({
    method: keep([t.method], method),
    path: keep<string | undefined>([entry.path], fc.webPath()),
    headers: fc
      .tuple(
        fc.constantFrom(...t.headers),
        fc.oneof(
          { weight: 2, arbitrary: fc.constant({}) },
          { weight: 1, arbitrary: fc.dictionary(headerName, headerValue, { maxKeys: 3 }) },
        ),
      )
      .map(([base, extra]) => ({ ...base, ...extra })),
    cookies: keep(t.cookies, fc.option(fc.array(cookie, { maxLength: 3 }), { nil: undefined })),
    rawQueryString: keep(t.queries, rawQuery),
    body: keep(t.bodies, body),
    isBase64Encoded: keep([false], fc.boolean()),
    requestId: fc.uuid(),
    context: fc.constant<GeneratedEvent['context']>('full'),
    keyed: keyedArbitrary(entry),
  });
}

function anyEvent(entry: EntryPoint): fc.Arbitrary<GeneratedEvent> {
  return fc.record({
    method,
    path: fc.oneof(
      { weight: 6, arbitrary: fc.constant(entry.path) },
      { weight: 1, arbitrary: fc.constantFrom(undefined, '/', '//', `${entry.path}/..`) },
      { weight: 1, arbitrary: fc.webPath() },
    ),
    headers: fc.dictionary(headerName, headerValue, { maxKeys: 6 }),
    cookies: fc.option(fc.array(cookie, { maxLength: 4 }), { nil: undefined }),
    rawQueryString: rawQuery,
    body,
    isBase64Encoded: fc.boolean(),
    requestId: fc.oneof({ weight: 5, arbitrary: fc.uuid() }, { weight: 1, arbitrary: hostileText }),
    context: fc.constantFrom<GeneratedEvent['context']>(
      'full',
      'full',
      'full',
      'full',
      'partial',
      'bare',
    ),
    keyed: keyedArbitrary(entry),
  });
}

function fill(text: string, secrets: RunSecrets): string {
  return text
    .replaceAll(HANDLE, secrets.handle)
    .replaceAll(STATE, secrets.state)
    .replaceAll(LOGIN_COOKIE, secrets.loginCookie)
    .replaceAll(CODE, secrets.code)
    .replaceAll(BROKER_CODE, secrets.brokerCode)
    .replaceAll(VERIFIER, secrets.verifier)
    .replaceAll(CHALLENGE, secrets.challenge)
    .replaceAll(APP_STATE, secrets.appState);
}

/** The generated event with this run's secrets in place of the placeholders. */
export function materialise(
  generated: GeneratedEvent,
  secrets: RunSecrets,
): APIGatewayProxyEventV2 {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(generated.headers)) {
    headers[name] = fill(value, secrets);
  }
  const built = event({
    method: generated.method,
    path: generated.path ?? '/',
    rawQueryString: fill(generated.rawQueryString, secrets),
    headers,
    ...(generated.cookies ? { cookies: generated.cookies.map((c) => fill(c, secrets)) } : {}),
    ...(generated.body !== undefined ? { body: fill(generated.body, secrets) } : {}),
    isBase64Encoded: generated.isBase64Encoded,
  });
  built.requestContext.requestId = generated.requestId;
  if (generated.keyed) {
    // What API Gateway adds on an AWS_IAM route once the SigV4 signature holds.
    const { routeKey, connectionId } = generated.keyed;
    built.routeKey = routeKey;
    built.requestContext.routeKey = routeKey;
    built.pathParameters = {
      connection_id: connectionId === CONNECTION_ID ? secrets.connectionId : connectionId,
    };
    Object.assign(built.requestContext, {
      authorizer: {
        iam: {
          accessKey: 'ASIAFUZZFUZZFUZZFUZZ',
          accountId: '123456789012',
          callerId: 'AROAFUZZ:job',
          userArn: 'arn:aws:sts::123456789012:assumed-role/fuzz-job/job',
          principalOrgId: null,
          cognitoIdentity: null,
        },
      },
    });
  }
  if (generated.path === undefined) Reflect.deleteProperty(built, 'rawPath');
  if (generated.context === 'partial') Reflect.deleteProperty(built.requestContext, 'http');
  if (generated.context === 'bare') Reflect.deleteProperty(built, 'requestContext');
  return built;
}

// ---------------------------------------------------------------------------------------
// Properties

/** Thrown when a property does not hold; carries what the reader needs to reproduce it. */
export class FuzzViolation extends Error {
  override readonly name = 'FuzzViolation';
}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new FuzzViolation(message);
}

/** The value of the last header whose name is `name` in any case (how parseHead reads it). */
function effectiveHeader(event: APIGatewayProxyEventV2, name: string): string | undefined {
  let value: string | undefined;
  for (const [key, raw] of Object.entries(event.headers ?? {})) {
    if (key.toLowerCase() === name && typeof raw === 'string') value = raw;
  }
  return value;
}

function mentions(event: APIGatewayProxyEventV2, secret: string): boolean {
  const places = [
    ...Object.values(event.headers ?? {}),
    ...(event.cookies ?? []),
    event.rawQueryString ?? '',
    event.body ?? '',
  ];
  return places.some((value) => typeof value === 'string' && value.includes(secret));
}

/**
 * Runs one generated event against one entry point and checks the contract:
 * no 5xx and no rejection for client input, the JSON error shape, no CR/LF in response
 * headers or cookies, no upstream call without valid credentials, no canary in any log
 * entry or any response body that must not carry it.
 */
export async function checkOneEvent(
  entry: EntryPoint,
  generated: GeneratedEvent,
  options: { context?: Context } = {},
): Promise<{ status: number }> {
  const log = new CaptureLog();
  const ports = buildPorts(log);
  const secrets = await prepareRun(ports);
  const handler = entry.build(ports);
  const input = materialise(generated, secrets);
  const described = `${entry.name} ${JSON.stringify(input).slice(0, 600)}`;

  let response: APIGatewayProxyStructuredResultV2;
  try {
    response = await handler(input, options.context);
  } catch (error) {
    throw new FuzzViolation(`handler rejected (${String(error)}) for ${described}`);
  }

  const status = response.statusCode ?? 200;
  check(
    Number.isInteger(status) && status >= 100 && status < 500,
    `status ${status} for ${described}`,
  );
  const headers = (response.headers ?? {}) as Record<string, unknown>;
  for (const [name, value] of Object.entries(headers)) {
    check(!/[\r\n]/.test(`${name}${String(value)}`), `CR/LF in header ${name} for ${described}`);
  }
  for (const setCookie of response.cookies ?? []) {
    check(!/[\r\n]/.test(setCookie), `CR/LF in Set-Cookie for ${described}`);
  }
  if (status >= 400) {
    check(
      String(headers['content-type'] ?? '').startsWith('application/json'),
      `error without JSON content type for ${described}`,
    );
    let parsed: unknown;
    try {
      parsed = JSON.parse(String(response.body));
    } catch {
      throw new FuzzViolation(`error body is not JSON for ${described}`);
    }
    const fields = parsed as Record<string, unknown>;
    check(
      typeof parsed === 'object' &&
        parsed !== null &&
        Object.keys(fields).sort().join(',') === 'error,error_description' &&
        typeof fields.error === 'string' &&
        /^[a-z_]+$/.test(fields.error) &&
        typeof fields.error_description === 'string',
      `error body ${String(response.body).slice(0, 200)} for ${described}`,
    );
    check(headers['cache-control'] === 'no-store', `error without no-store for ${described}`);
    if (status === 405)
      check(typeof headers.allow === 'string', `405 without Allow for ${described}`);
  }

  // The contract: a body over 16 KB is 413, checked right after the method.
  const method = (input.requestContext?.http?.method ?? '').toUpperCase();
  const bodyBytes =
    typeof input.body === 'string'
      ? input.isBase64Encoded
        ? Buffer.from(input.body, 'base64').length
        : Buffer.byteLength(input.body)
      : 0;
  if (method === entry.template.method && bodyBytes > 16 * 1024) {
    check(status === 413, `a ${bodyBytes}-byte body answered ${status} for ${described}`);
  }

  // No upstream call without the credential that allows it.
  const calls = ports.salesforce.calls;
  if (entry.name === 'token') {
    // No upstream call on /token, but the revocation of a replayed or refused code's grant.
    check(calls.refresh + calls.code === 0, `/token called Salesforce: ${described}`);
    if (calls.revoke > 0) {
      check(mentions(input, secrets.brokerCode), `/token revoked without the code: ${described}`);
    }
  } else if (entry.name === 'service') {
    // IAM is the credential (API Gateway verified it); a token or revocation needs the id.
    if (calls.refresh + calls.revoke > 0) {
      check(
        input.pathParameters?.connection_id === secrets.connectionId ||
          input.rawQueryString?.includes('organization_id') === true,
        `the service API called Salesforce for no connection: ${described}`,
      );
    }
    check(calls.code === 0, `the service API exchanged a code: ${described}`);
  } else if (entry.name === 'callback' && calls.revoke > 0) {
    // A completed login ends the session the browser held before: only after the login.
    check(calls.code > 0, `/callback revoked a session without a login for ${described}`);
    check(mentions(input, secrets.handle), `/callback revoked an unknown session: ${described}`);
  } else if (calls.refresh > 0 || calls.revoke > 0) {
    check(mentions(input, secrets.handle), `upstream call without the handle for ${described}`);
    const bearer = /^Bearer +(\S+)\s*$/i.exec(effectiveHeader(input, 'authorization') ?? '');
    if (bearer?.[1] !== secrets.handle) {
      // The cookie was the credential: it needs X-CSRF: 1 and no foreign Origin.
      check(
        effectiveHeader(input, 'x-csrf') === '1',
        `cookie used without X-CSRF for ${described}`,
      );
      const origin = effectiveHeader(input, 'origin');
      check(
        origin === undefined || origin === ALLOWED_ORIGIN,
        `cookie used from origin ${origin} for ${described}`,
      );
    }
  }
  if (calls.code > 0) {
    check(
      mentions(input, secrets.state) && mentions(input, secrets.loginCookie),
      `code exchange without the state and the login cookie for ${described}`,
    );
  }
  if (entry.name === 'login') {
    check(
      calls.refresh + calls.code + calls.revoke === 0,
      `/login called Salesforce: ${described}`,
    );
  }
  if (status === 302 && entry.name === 'callback') {
    const location = String(headers.location ?? '');
    check(/^\/(?![/\\])/.test(location), `callback redirect to ${location} for ${described}`);
  }
  for (const transaction of ports.transactions.items.values()) {
    // A registered app's login goes back to one of its redirect URIs; any other to a path.
    const app = transaction.handoff
      ? findClientApp(ports.config.clientApps, transaction.handoff.clientId)
      : undefined;
    check(
      transaction.handoff
        ? app !== undefined &&
            transaction.returnTo === transaction.handoff.redirectUri &&
            isRegisteredRedirectUri(app, transaction.returnTo)
        : /^\/(?![/\\])/.test(transaction.returnTo),
      `stored return_to ${transaction.returnTo} for ${described}`,
    );
  }
  if (status === 302 && entry.name === 'login') {
    const location = String(headers.location ?? '');
    check(location.startsWith(`${LOGIN_URL}/`), `login redirect to ${location}: ${described}`);
  }

  // Canaries: never in a log entry; refresh tokens and the secret never in a response.
  const logged = log.text();
  const canaries = [...secrets.canaries, ...ports.salesforce.issued, ...ports.minted];
  for (const canary of canaries) {
    check(!logged.includes(canary), `a secret reached the log for ${described}`);
  }
  const answered = `${response.body ?? ''}${JSON.stringify(headers)}`;
  for (const secret of [CLIENT_SECRET, ...canaries.filter((c) => c.includes('refresh'))]) {
    check(!answered.includes(secret), `a refresh token or the secret was answered: ${described}`);
  }
  return { status };
}

/** Statistics of a fuzz run, per entry point and status. */
export type FuzzStats = Record<string, Record<string, number>>;

/** The fuzz property over one entry point, for `fc.assert` or `fc.check`. */
export function fuzzProperty(entry: EntryPoint, stats?: FuzzStats) {
  return fc.asyncProperty(eventArbitrary(entry), async (generated) => {
    const { status } = await checkOneEvent(entry, generated);
    if (stats) {
      const perEntry = stats[entry.name] ?? {};
      perEntry[status] = (perEntry[status] ?? 0) + 1;
      stats[entry.name] = perEntry;
    }
  });
}
