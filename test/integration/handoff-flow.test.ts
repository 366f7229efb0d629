import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { brokerCodeKeyOf } from '../../functions/broker/broker-code.ts';
import { codeChallengeS256, newCodeVerifier } from '../../functions/broker/pkce.ts';
import { sessionKeyOf } from '../../functions/broker/session-handle.ts';
import type { HttpHandler } from '../../functions/http/route.ts';
import { createCallbackHandler } from '../../functions/routes/callback.ts';
import { createLoginHandler } from '../../functions/routes/login.ts';
import { createLogoutHandler } from '../../functions/routes/logout.ts';
import { createRefreshHandler } from '../../functions/routes/refresh.ts';
import { createSessionHandler } from '../../functions/routes/session.ts';
import { createTokenHandler } from '../../functions/routes/token.ts';
import { buildRuntime, type Runtime } from '../../functions/runtime.ts';
import type { FakeSalesforce } from '../../local/fake-salesforce.ts';
import { type LocalServer, startLocalServer } from '../../local/lambda-http.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { CaptureLog, CaptureMetrics } from '../support/capture-log.ts';
import { openApiProblems } from '../support/openapi.ts';

/**
 * The one-time handoff of a registered app (README "Native, desktop and server-side
 * apps") over real HTTP on loopback: `/login?client_id=...` in the system browser ->
 * Salesforce (the fake) -> `/callback` -> `302 <redirect_uri>?code&state` -> `POST /token`
 * -> the bearer handle on `/refresh`, `/session` and `/logout`; against dynalite and the
 * KMS / Secrets Manager emulators.
 */

const CLIENT_SECRET = 'canary-client-secret-a91c3e';
const IOS_REDIRECT = 'com.example.app:/oauth2redirect';
const CLIENT_APPS = [
  { client_id: 'ios', redirect_uris: [IOS_REDIRECT] },
  { client_id: 'desktop', redirect_uris: ['http://127.0.0.1/callback', 'http://[::1]/callback'] },
  { client_id: 'server', redirect_uris: ['https://jobs.example.com/oauth/done'] },
];
/** A state with the characters an app may use, echoed exactly. */
const APP_STATE = 'st:1 /?&=+%~"<>{}';

let stack: LocalStack;
let server: LocalServer;
let runtime: Runtime;
let fake: FakeSalesforce;
const log = new CaptureLog();
/** A clock the tests move (expiry of broker codes); every route uses it. */
const clock = { offsetMs: 0, now: () => Date.now() + clock.offsetMs };
const routes: Record<string, HttpHandler> = {};
/** Every secret value a test saw: none may appear in the captured log. */
const canaries = new Set<string>([CLIENT_SECRET]);
let userCounter = 0;

beforeAll(async () => {
  stack = await startLocalStack({
    clientSecret: CLIENT_SECRET,
    salesforce: { rotation: true, reuseDetection: true },
  });
  if (!stack.salesforce) throw new Error('the handoff needs the fake Salesforce');
  fake = stack.salesforce;
  Object.assign(process.env, stack.env);
  server = await startLocalServer({ routes });
  runtime = buildRuntime(
    {
      ...stack.env,
      CALLBACK_URL: `${server.url}/callback`,
      ALLOWED_ORIGINS: server.url,
      CLIENT_APPS: JSON.stringify(CLIENT_APPS),
      LEASE_MS: '3000',
      UPSTREAM_TIMEOUT_MS: '1500',
      WAIT_BUDGET_MS: '2500',
    },
    { log, clock, metrics: new CaptureMetrics() },
  );
  Object.assign(routes, {
    '/login': createLoginHandler(runtime),
    '/callback': createCallbackHandler(runtime),
    '/token': createTokenHandler(runtime),
    '/refresh': createRefreshHandler(runtime),
    '/session': createSessionHandler(runtime),
    '/logout': createLogoutHandler(runtime),
  });
});

afterAll(async () => {
  await server?.close();
  await stack?.close();
});

beforeEach(() => {
  fake.clearFaults();
  fake.resetCalls();
});

afterEach(() => {
  clock.offsetMs = 0;
});

// ---------------------------------------------------------------------------------------
// an app and the system browser, by hand

interface AppLogin {
  clientId: string;
  redirectUri: string;
  verifier: string;
  state: string;
}

function newAppLogin(clientId: string, redirectUri: string, state = APP_STATE): AppLogin {
  const verifier = newCodeVerifier();
  canaries.add(verifier);
  return { clientId, redirectUri, verifier, state };
}

function loginQuery(login: AppLogin): string {
  return new URLSearchParams({
    client_id: login.clientId,
    redirect_uri: login.redirectUri,
    state: login.state,
    code_challenge: codeChallengeS256(login.verifier),
    code_challenge_method: 'S256',
  }).toString();
}

/**
 * The system browser: `/login`, the fake's login page (Allow or Deny), `/callback` with
 * the login cookie. Returns the callback's answer (the redirect to the app).
 */
async function browse(login: AppLogin, decision: 'allow' | 'deny' = 'allow'): Promise<Response> {
  const started = await fetch(`${server.url}/login?${loginQuery(login)}`, { redirect: 'manual' });
  expect(started.status, await started.clone().text()).toBe(302);
  const loginCookie = started.headers.getSetCookie()[0]?.split(';')[0] ?? '';
  canaries.add(loginCookie.split('=')[1] ?? '');
  const authorize = new URL(started.headers.get('location') ?? '');
  canaries.add(authorize.searchParams.get('state') ?? '');
  const form = new URLSearchParams(authorize.searchParams);
  form.set('username', `handoff-user${++userCounter}@example.com`);
  form.set('decision', decision);
  const approved = await fetch(new URL(authorize.pathname, fake.url), {
    method: 'POST',
    body: form,
    redirect: 'manual',
  });
  expect(approved.status).toBe(302);
  const callback = new URL(approved.headers.get('location') ?? '');
  canaries.add(callback.searchParams.get('code') ?? '');
  return fetch(callback, { headers: { cookie: loginCookie }, redirect: 'manual' });
}

/** The broker code from the callback's redirect to the app, checked for shape and state. */
function codeFrom(callback: Response, login: AppLogin): string {
  expect(callback.status).toBe(302);
  const location = callback.headers.get('location') ?? '';
  expect(location.startsWith(`${login.redirectUri}?`)).toBe(true);
  const query = new URLSearchParams(location.slice(location.indexOf('?') + 1));
  expect([...query.keys()].sort()).toEqual(['code', 'state']);
  expect(query.get('state')).toBe(login.state);
  const code = query.get('code') ?? '';
  expect(code).toMatch(/^[A-Za-z0-9_-]{43}$/);
  canaries.add(code);
  return code;
}

function redeem(
  fields: Record<string, string>,
  contentType = 'application/x-www-form-urlencoded',
): Promise<Response> {
  return fetch(`${server.url}/token`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    body: new URLSearchParams(fields).toString(),
  });
}

function tokenFields(login: AppLogin, code: string): Record<string, string> {
  return {
    grant_type: 'authorization_code',
    code,
    redirect_uri: login.redirectUri,
    client_id: login.clientId,
    code_verifier: login.verifier,
  };
}

/** A whole handoff: returns the session handle and connection id the app holds. */
async function handoff(login: AppLogin): Promise<{ handle: string; connectionId: string }> {
  const code = codeFrom(await browse(login), login);
  const answer = await redeem(tokenFields(login, code));
  expect(answer.status, await answer.clone().text()).toBe(200);
  const body = (await answer.json()) as Record<string, string>;
  canaries.add(body.session_handle ?? '');
  return { handle: body.session_handle ?? '', connectionId: body.connection_id ?? '' };
}

async function expectTokenError(response: Response, status: number, error: string) {
  expect(response.status).toBe(status);
  expect(response.headers.get('cache-control')).toBe('no-store');
  expect(await openApiProblems('POST', '/token', response)).toEqual([]);
  const body = (await response.json()) as Record<string, unknown>;
  expect(body.error).toBe(error);
  expect(typeof body.error_description).toBe('string');
}

/** The refresh token the broker holds for a handle (decrypted, for assertions at the fake). */
async function refreshTokenOf(handle: string): Promise<string> {
  const record = await runtime.store.get(sessionKeyOf(handle));
  if (!record) throw new Error('no session');
  const tokens = await runtime.vault.open(record.sealed, record.sessionKey, record.version);
  canaries.add(tokens.refreshToken);
  canaries.add(tokens.accessToken);
  return tokens.refreshToken;
}

function bearer(handle: string, path: string, method = 'POST'): Promise<Response> {
  return fetch(`${server.url}${path}`, { method, headers: { authorization: `Bearer ${handle}` } });
}

/** That a connection is gone from the broker (session and pointer) and its grant from the fake. */
async function expectEnded(handle: string, connectionId: string, refreshToken: string) {
  expect(await runtime.store.get(sessionKeyOf(handle))).toBeUndefined();
  expect(await runtime.store.findConnection(connectionId)).toBeUndefined();
  expect(fake.isRefreshTokenActive(refreshToken)).toBe(false);
  expect((await bearer(handle, '/refresh')).status).toBe(401);
}

// ---------------------------------------------------------------------------------------

describe('Handoff: a registered app gets a bearer handle through a one-time code', () => {
  it('works end to end for a custom-scheme app, with no token upstream call on /token', async () => {
    // Prepare
    const login = newAppLogin('ios', IOS_REDIRECT);

    // Act 1: the system browser's login
    const callback = await browse(login);

    // Assert 1: back to the app's redirect URI with the code and its state; no cookie
    // for the session (only the login cookie cleared), nothing secret in the table
    const code = codeFrom(callback, login);
    expect(callback.headers.getSetCookie()).toEqual([
      '__Host-tb-login=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax',
    ]);
    const item = await runtime.codes.get(brokerCodeKeyOf(code));
    expect(item).toMatchObject({ clientId: 'ios', redirectUri: IOS_REDIRECT });
    expect((item?.expiresAt ?? 0) - (item?.createdAt ?? 0)).toBe(60_000);
    expect(JSON.stringify(item)).not.toContain(code);

    // Act 2: the app redeems the code
    const before = { ...fake.calls };
    const answer = await redeem(tokenFields(login, code));

    // Assert 2: the handle and the connection, no-store, and no call to Salesforce
    expect(answer.status).toBe(200);
    expect(answer.headers.get('cache-control')).toBe('no-store');
    expect(answer.headers.get('access-control-allow-origin')).toBeNull();
    expect(await openApiProblems('POST', '/token', answer)).toEqual([]);
    const body = (await answer.json()) as Record<string, string>;
    canaries.add(body.session_handle ?? '');
    expect(Object.keys(body).sort()).toEqual(['connection_id', 'session_handle', 'token_type']);
    expect(body.token_type).toBe('Bearer');
    expect(body.session_handle).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(body.connection_id).toMatch(/^con_[A-Za-z0-9_-]{22,}$/);
    expect(fake.calls).toEqual(before);

    // Act 3: the app uses the bearer handle
    const handle = body.session_handle ?? '';
    const refreshed = await bearer(handle, '/refresh');
    const described = await bearer(handle, '/session', 'GET');

    // Assert 3
    expect(refreshed.status).toBe(200);
    expect(((await refreshed.json()) as Record<string, unknown>).access_token).toBeTruthy();
    expect(described.status).toBe(200);
    expect(((await described.json()) as Record<string, unknown>).connection_id).toBe(
      body.connection_id,
    );
    const loggedOut = await bearer(handle, '/logout');
    expect(loggedOut.status).toBe(204);
    expect((await bearer(handle, '/refresh')).status).toBe(401);
  });

  it.each([
    ['127.0.0.1', 'http://127.0.0.1:49152/callback'],
    ['[::1]', 'http://[::1]:61000/callback'],
    ['127.0.0.1 without a port', 'http://127.0.0.1/callback'],
  ])('works for a loopback desktop app on any port (%s)', async (_name, redirectUri) => {
    // Prepare
    const login = newAppLogin('desktop', redirectUri);

    // Act
    const { handle, connectionId } = await handoff(login);

    // Assert
    expect(connectionId).toMatch(/^con_/);
    expect((await bearer(handle, '/refresh')).status).toBe(200);
  });

  it('works for a server-side app on https, echoing a 512-character state', async () => {
    // Prepare
    const login = newAppLogin(
      'server',
      'https://jobs.example.com/oauth/done',
      `${'x'.repeat(511)}~`,
    );

    // Act
    const { handle } = await handoff(login);

    // Assert
    expect((await bearer(handle, '/refresh')).status).toBe(200);
  });
});

describe('Handoff: a code works once, for its own client, redirect URI and verifier', () => {
  it('a second redemption fails and ends the connection the first created', async () => {
    // Prepare
    const login = newAppLogin('ios', IOS_REDIRECT);
    const code = codeFrom(await browse(login), login);
    const first = await redeem(tokenFields(login, code));
    expect(first.status).toBe(200);
    const { session_handle: handle = '', connection_id: connectionId = '' } =
      (await first.json()) as Record<string, string>;
    canaries.add(handle);
    const refreshToken = await refreshTokenOf(handle);
    expect(fake.isRefreshTokenActive(refreshToken)).toBe(true);

    // Act
    const second = await redeem(tokenFields(login, code));

    // Assert: invalid_grant; session and pointer deleted, grant revoked at the fake
    await expectTokenError(second, 400, 'invalid_grant');
    await expectEnded(handle, connectionId, refreshToken);
    expect(fake.calls.revoke).toBe(1);
    const replay = log.entries.find((entry) => entry.attributes.event === 'code_replayed');
    expect(replay?.attributes.connection).toBe(connectionId);
  });

  it.each([
    ['a wrong verifier', { code_verifier: 'W'.repeat(43) }],
    ['another registered client', { client_id: 'desktop' }],
    ['another redirect URI', { redirect_uri: 'com.example.app:/other' }],
  ])('%s: invalid_grant, the code is spent and its connection ended', async (_name, change) => {
    // Prepare
    const login = newAppLogin('ios', IOS_REDIRECT);
    const code = codeFrom(await browse(login), login);
    const stored = await runtime.codes.get(brokerCodeKeyOf(code));
    if (!stored) throw new Error('no code stored');
    const record = await runtime.store.get(stored.sessionKey);
    if (!record) throw new Error('no session');
    const tokens = await runtime.vault.open(record.sealed, record.sessionKey, record.version);
    canaries.add(tokens.refreshToken);

    // Act
    const refused = await redeem({ ...tokenFields(login, code), ...change });
    const retried = await redeem(tokenFields(login, code));

    // Assert: both refused; nobody can ever be handed the session, so it is gone
    await expectTokenError(refused, 400, 'invalid_grant');
    await expectTokenError(retried, 400, 'invalid_grant');
    expect(await runtime.store.get(stored.sessionKey)).toBeUndefined();
    expect(await runtime.store.findConnection(stored.connectionId)).toBeUndefined();
    expect(fake.isRefreshTokenActive(tokens.refreshToken)).toBe(false);
  });

  it('an expired code (after 60 s): invalid_grant, connection ended', async () => {
    // Prepare
    const login = newAppLogin('desktop', 'http://127.0.0.1:50000/callback');
    const code = codeFrom(await browse(login), login);
    const stored = await runtime.codes.get(brokerCodeKeyOf(code));
    clock.offsetMs = 60_000;

    // Act
    const expired = await redeem(tokenFields(login, code));

    // Assert
    await expectTokenError(expired, 400, 'invalid_grant');
    expect(await runtime.store.get(stored?.sessionKey ?? '')).toBeUndefined();
  });

  it('an unknown or malformed code: invalid_grant, nothing else touched', async () => {
    const login = newAppLogin('ios', IOS_REDIRECT);

    await expectTokenError(await redeem(tokenFields(login, 'A'.repeat(43))), 400, 'invalid_grant');
    await expectTokenError(await redeem(tokenFields(login, 'short')), 400, 'invalid_grant');
  });
});

describe('Handoff: /login refuses what it cannot send back, and never redirects there', () => {
  const get = (query: string, accept = 'application/json') =>
    fetch(`${server.url}/login?${query}`, { headers: { accept }, redirect: 'manual' });
  const login = () => newAppLogin('ios', IOS_REDIRECT);
  const query = (change: Record<string, string | undefined>) => {
    const parameters = new URLSearchParams(loginQuery(login()));
    for (const [name, value] of Object.entries(change)) {
      if (value === undefined) parameters.delete(name);
      else parameters.set(name, value);
    }
    return parameters.toString();
  };

  it.each([
    ['an unknown client_id', { client_id: 'android' }],
    ['an unregistered redirect_uri', { redirect_uri: 'com.evil.app:/oauth2redirect' }],
    ['localhost instead of a loopback IP', { redirect_uri: 'http://localhost:8080/callback' }],
    ['no redirect_uri', { redirect_uri: undefined }],
    ['no state', { state: undefined }],
    ['a state over 512 characters', { state: 'x'.repeat(513) }],
    ['no code_challenge', { code_challenge: undefined }],
    ['a malformed code_challenge', { code_challenge: 'abc' }],
    ['the plain method', { code_challenge_method: 'plain' }],
    ['no method', { code_challenge_method: undefined }],
    ['a return_to besides', { return_to: '/app' }],
  ])('%s: 400 invalid_request, no redirect', async (_name, change) => {
    // Act
    const jsonAnswer = await get(query(change));
    const page = await get(query(change), 'text/html,application/xhtml+xml');

    // Assert
    expect(jsonAnswer.status).toBe(400);
    expect(jsonAnswer.headers.get('location')).toBeNull();
    expect(jsonAnswer.headers.getSetCookie()).toEqual([]);
    expect(await openApiProblems('GET', '/login', jsonAnswer)).toEqual([]);
    expect(((await jsonAnswer.json()) as Record<string, unknown>).error).toBe('invalid_request');
    expect(page.status).toBe(400);
    expect(page.headers.get('location')).toBeNull();
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toContain('This app cannot sign in here');
  });

  it.each([
    ['a duplicated client_id', `${loginQuery(newAppLogin('ios', IOS_REDIRECT))}&client_id=ios`],
    ['a state with a control character', query({ state: 'a\nb' })],
  ])('%s: 400 invalid_request, no redirect', async (_name, raw) => {
    const answer = await get(raw, 'text/html');

    expect(answer.status).toBe(400);
    expect(answer.headers.get('location')).toBeNull();
    expect(answer.headers.getSetCookie()).toEqual([]);
  });
});

describe('Handoff: failures after the login began go back to the app with its state', () => {
  it('Deny at Salesforce: error=access_denied with the state, no code, no session', async () => {
    // Prepare
    const login = newAppLogin('ios', IOS_REDIRECT);
    const before = fake.calls.tokenCode;

    // Act
    const callback = await browse(login, 'deny');

    // Assert
    expect(callback.status).toBe(302);
    const location = callback.headers.get('location') ?? '';
    expect(location.startsWith(`${IOS_REDIRECT}?`)).toBe(true);
    const query = new URLSearchParams(location.slice(location.indexOf('?') + 1));
    expect(query.get('error')).toBe('access_denied');
    expect(query.get('error_description')).toBeTruthy();
    expect(query.get('state')).toBe(APP_STATE);
    expect(query.get('code')).toBeNull();
    expect(fake.calls.tokenCode).toBe(before);
  });

  it('a failed code exchange: error=login_failed with the state', async () => {
    // Prepare
    const login = newAppLogin('desktop', 'http://127.0.0.1:51000/callback');
    fake.inject({ endpoint: 'token', kind: 'error', error: 'invalid_grant', description: 'x' });

    // Act
    const callback = await browse(login);

    // Assert
    expect(callback.status).toBe(302);
    const location = new URL(callback.headers.get('location') ?? '');
    expect(`${location.origin}${location.pathname}`).toBe('http://127.0.0.1:51000/callback');
    expect(location.searchParams.get('error')).toBe('login_failed');
    expect(location.searchParams.get('state')).toBe(APP_STATE);
  });
});

describe('Handoff: POST /token answers bad input with its RFC 6749 s5.2 error', () => {
  const good = () => tokenFields(newAppLogin('ios', IOS_REDIRECT), 'A'.repeat(43));
  const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
  const post = (body: string, headers: Record<string, string>) =>
    fetch(`${server.url}/token`, { method: 'POST', headers, body });

  it.each([
    ['a JSON body', 'application/json', JSON.stringify({ grant_type: 'authorization_code' })],
    ['no content type', '', 'grant_type=authorization_code'],
    ['another charset', 'application/x-www-form-urlencoded; charset=iso-8859-1', 'x=1'],
    ['a missing code', 'application/x-www-form-urlencoded', 'grant_type=authorization_code'],
    [
      'a duplicated code',
      'application/x-www-form-urlencoded',
      `${new URLSearchParams(good()).toString()}&code=${'B'.repeat(43)}`,
    ],
    [
      'a bad percent-encoding',
      'application/x-www-form-urlencoded',
      `${new URLSearchParams(good()).toString()}&x=%zz`,
    ],
    [
      'a malformed verifier',
      'application/x-www-form-urlencoded',
      form({ ...good(), code_verifier: 'short' }),
    ],
  ])('%s: 400 invalid_request', async (_name, contentType, body) => {
    const answer = await post(body, contentType ? { 'content-type': contentType } : {});

    await expectTokenError(answer, 400, 'invalid_request');
  });

  it('another grant type: 400 unsupported_grant_type', async () => {
    const answer = await redeem({ ...good(), grant_type: 'refresh_token' });

    await expectTokenError(answer, 400, 'unsupported_grant_type');
  });

  it('an unknown client: 401 invalid_client', async () => {
    const answer = await redeem({ ...good(), client_id: 'android' });

    await expectTokenError(answer, 401, 'invalid_client');
  });

  it('accepts a charset=UTF-8 parameter', async () => {
    const answer = await redeem(good(), 'application/x-www-form-urlencoded; charset=UTF-8');

    await expectTokenError(answer, 400, 'invalid_grant');
  });

  it('a GET: 405 with Allow: POST; an oversized body: 413', async () => {
    const get = await fetch(`${server.url}/token`);
    const big = await post('x'.repeat(17_000), {
      'content-type': 'application/x-www-form-urlencoded',
    });

    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    expect(big.status).toBe(413);
  });
});

describe('Handoff: logs', () => {
  it('carry no broker code, state, verifier, challenge, token, cookie or handle', () => {
    // Prepare
    const values = [...canaries].filter((value) => value.length >= 16);
    values.push(APP_STATE);
    expect(values.length).toBeGreaterThan(40);

    // Act
    const text = log.text();

    // Assert
    for (const value of values) expect(text).not.toContain(value);
    for (const value of values) {
      expect(text).not.toContain(codeChallengeS256(value));
    }
  });
});
