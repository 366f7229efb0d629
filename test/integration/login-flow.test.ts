import { type AttributeValue, ScanCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/broker/config.ts';
import { openVerifier, stateKeyOf } from '../../functions/broker/login-transaction.ts';
import { codeChallengeS256 } from '../../functions/broker/pkce.ts';
import { sessionKeyOf } from '../../functions/broker/session-handle.ts';
import type { HttpHandler } from '../../functions/http/route.ts';
import { createCallbackHandler } from '../../functions/routes/callback.ts';
import { createLoginHandler } from '../../functions/routes/login.ts';
import { createLogoutHandler } from '../../functions/routes/logout.ts';
import { createRefreshHandler } from '../../functions/routes/refresh.ts';
import { createSessionHandler } from '../../functions/routes/session.ts';
import { buildRuntime, type Runtime } from '../../functions/runtime.ts';
import type { FakeSalesforce } from '../../local/fake-salesforce.ts';
import { type LocalServer, startLocalServer } from '../../local/lambda-http.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { CaptureLog, CaptureMetrics } from '../support/capture-log.ts';
import { httpEvent } from '../support/http-event.ts';
import { openApiProblems } from '../support/openapi.ts';

/**
 * `/login` -> Salesforce (the fake) -> `/callback` -> `/refresh` -> `/logout` over real
 * HTTP on loopback, against dynalite and the KMS / Secrets Manager emulators. The server
 * is plain http but the cookies are `__Host-` / `Secure`, so each test "browser" keeps its
 * cookies by hand: it parses `Set-Cookie` and sends `Cookie`.
 */

const CLIENT_SECRET = 'canary-client-secret-5b7e1f';
const TEN_MINUTES = 600_000;
/** A browser app on its own origin (allowed), served from somewhere else than the broker. */
const APP_ORIGIN = 'https://app.example.com';

let stack: LocalStack;
let server: LocalServer;
let runtime: Runtime;
let fake: FakeSalesforce;
const log = new CaptureLog();
/** A clock the tests move (expiry of login transactions); every route uses it. */
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
  if (!stack.salesforce) throw new Error('the login flow needs the fake Salesforce');
  fake = stack.salesforce;
  // The SDK clients read AWS_ENDPOINT_URL_<SERVICE> and credentials from process.env.
  Object.assign(process.env, stack.env);
  // The routes object is read per request: fill it once the server's URL (the callback
  // URL the runtime needs) is known.
  server = await startLocalServer({ routes });
  runtime = buildRuntime(
    {
      ...stack.env,
      CALLBACK_URL: `${server.url}/callback`,
      ALLOWED_ORIGINS: `${server.url},${APP_ORIGIN}`,
      RETURN_TO_PREFIXES: '/app,/docs',
      LEASE_MS: '3000',
      UPSTREAM_TIMEOUT_MS: '1500',
      WAIT_BUDGET_MS: '2500',
    },
    { log, clock, metrics: new CaptureMetrics() },
  );
  Object.assign(routes, {
    '/login': createLoginHandler(runtime),
    '/callback': createCallbackHandler(runtime),
    '/refresh': createRefreshHandler(runtime),
    '/logout': createLogoutHandler(runtime),
    '/session': createSessionHandler(runtime),
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
// a browser, by hand

interface SetCookie {
  name: string;
  value: string;
  attributes: Record<string, string>;
  raw: string;
}

function parseSetCookie(raw: string): SetCookie {
  const [pair = '', ...attributes] = raw.split(';').map((part) => part.trim());
  const index = pair.indexOf('=');
  return {
    name: pair.slice(0, index),
    value: pair.slice(index + 1),
    attributes: Object.fromEntries(
      attributes.map((attribute) => {
        const [key = '', value = ''] = attribute.split('=');
        return [key.toLowerCase(), value];
      }),
    ),
    raw,
  };
}

/** A cookie jar for one host, applying `Set-Cookie` (including `Max-Age=0`) by hand. */
class Browser {
  readonly jar = new Map<string, string>();
  /** A distinct Salesforce user per browser unless given: the fake keeps 5 grants per user. */
  constructor(readonly username = `user${++userCounter}@example.com`) {}

  absorb(response: Response): SetCookie[] {
    const cookies = response.headers.getSetCookie().map(parseSetCookie);
    for (const cookie of cookies) {
      if (cookie.attributes['max-age'] === '0') this.jar.delete(cookie.name);
      else this.jar.set(cookie.name, cookie.value);
      if (cookie.value) canaries.add(cookie.value);
    }
    return cookies;
  }

  cookieHeader(): Record<string, string> {
    if (this.jar.size === 0) return {};
    return { cookie: [...this.jar].map(([name, value]) => `${name}=${value}`).join('; ') };
  }

  get session(): string | undefined {
    return this.jar.get('__Host-tb-session');
  }

  async get(url: string): Promise<Response> {
    const response = await fetch(url, { headers: this.cookieHeader(), redirect: 'manual' });
    this.absorb(response);
    return response;
  }

  /** `POST` from the app page: the session cookie, `X-CSRF: 1` and the app's Origin. */
  async post(path: string, body?: unknown): Promise<Response> {
    const response = await fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: {
        ...this.cookieHeader(),
        'x-csrf': '1',
        origin: server.url,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      redirect: 'manual',
    });
    this.absorb(response);
    return response;
  }

  /** `GET /login`; returns the authorize URL it redirects to. */
  async login(query = ''): Promise<URL> {
    const response = await this.get(`${server.url}/login${query}`);
    expect(response.status).toBe(302);
    const location = new URL(response.headers.get('location') ?? '');
    canaries.add(location.searchParams.get('state') ?? '');
    return location;
  }

  /** The user presses Allow (or Deny) on the fake's login page; returns the callback URL. */
  async authorize(authorizeUrl: URL, decision: 'allow' | 'deny' = 'allow'): Promise<URL> {
    const form = new URLSearchParams(authorizeUrl.searchParams);
    form.set('username', this.username);
    form.set('decision', decision);
    const response = await fetch(new URL(authorizeUrl.pathname, fake.url), {
      method: 'POST',
      body: form,
      redirect: 'manual',
    });
    expect(response.status).toBe(302);
    const callback = new URL(response.headers.get('location') ?? '');
    const code = callback.searchParams.get('code');
    if (code) canaries.add(code);
    return callback;
  }

  /** The whole flow: `/login`, Allow, `/callback`. Returns the callback response. */
  async logIn(query = ''): Promise<Response> {
    return this.get((await this.authorize(await this.login(query))).toString());
  }
}

function json(response: Response): Promise<Record<string, unknown>> {
  return response.json() as Promise<Record<string, unknown>>;
}

async function items(prefix: 'session#' | 'login#'): Promise<Record<string, AttributeValue>[]> {
  const result = await stack.dynamodb.send(
    new ScanCommand({ TableName: stack.tableName, ConsistentRead: true }),
  );
  return (result.Items ?? []).filter((item) => item.pk?.S?.startsWith(prefix));
}

async function sessionCount(): Promise<number> {
  return (await items('session#')).length;
}

/** Decrypts the stored session of a handle (to learn its refresh token for assertions). */
async function storedTokens(handle: string) {
  const record = await runtime.store.get(sessionKeyOf(handle));
  if (!record) return undefined;
  const tokens = await runtime.vault.open(record.sealed, record.sessionKey, record.version);
  canaries.add(tokens.refreshToken);
  canaries.add(tokens.accessToken);
  return tokens;
}

async function expectError(response: Response, status: number, error: string): Promise<void> {
  expect(response.status).toBe(status);
  expect(response.headers.get('cache-control')).toBe('no-store');
  const body = await json(response);
  expect(body.error).toBe(error);
  expect(typeof body.error_description).toBe('string');
}

/**
 * A `/callback` failure after the transaction was found: `302` back to `return_to` with
 * the contract's `error` and a safe `error_description`, the login cookie cleared and no
 * session cookie set.
 */
function expectLoginRedirect(
  response: Response,
  error: string,
  description: RegExp,
): URLSearchParams {
  expect(response.status).toBe(302);
  expect(response.headers.get('cache-control')).toBe('no-store');
  const location = new URL(response.headers.get('location') ?? '', 'https://app.invalid');
  expect(location.origin).toBe('https://app.invalid');
  expect(location.searchParams.get('error')).toBe(error);
  expect(location.searchParams.get('error_description')).toMatch(description);
  expect(response.headers.getSetCookie()).toEqual([
    '__Host-tb-login=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax',
  ]);
  return location.searchParams;
}

// ---------------------------------------------------------------------------------------

describe('Login flow: /login -> Salesforce -> /callback -> /refresh -> /logout', () => {
  it('works end to end, header by header, with no secret in any URL', async () => {
    // Prepare
    const browser = new Browser();

    // Act 1: /login
    const login = await browser.get(`${server.url}/login?return_to=%2Fapp%2Fhome`);

    // Assert 1: 302 to the authorize endpoint with PKCE S256; the login cookie
    expect(login.status).toBe(302);
    expect(login.headers.get('cache-control')).toBe('no-store');
    expect(login.headers.get('referrer-policy')).toBe('no-referrer');
    const authorize = new URL(login.headers.get('location') ?? '');
    expect(`${authorize.origin}${authorize.pathname}`).toBe(
      `${fake.url}/services/oauth2/authorize`,
    );
    const params = Object.fromEntries(authorize.searchParams);
    expect(Object.keys(params)).toEqual([
      'response_type',
      'client_id',
      'redirect_uri',
      'scope',
      'state',
      'code_challenge',
      'code_challenge_method',
    ]);
    expect(params).toMatchObject({
      response_type: 'code',
      client_id: 'fake-client-id',
      redirect_uri: `${server.url}/callback`,
      scope: 'api refresh_token',
      code_challenge_method: 'S256',
    });
    const state = params.state ?? '';
    canaries.add(state);
    expect(state).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(params.code_challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const [loginCookie, ...otherCookies] = login.headers.getSetCookie().map(parseSetCookie);
    expect(otherCookies).toEqual([]);
    expect(loginCookie?.name).toBe('__Host-tb-login');
    expect(loginCookie?.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(loginCookie?.attributes).toEqual({
      'max-age': '600',
      path: '/',
      secure: '',
      httponly: '',
      samesite: 'Lax',
    });

    // The transaction: under login#sha256(state), 10 minutes, nothing in clear.
    const [transaction, ...others] = (await items('login#')).filter(
      (item) => item.pk?.S === `login#${stateKeyOf(state)}`,
    );
    expect(others).toEqual([]);
    if (!transaction) throw new Error('no login transaction stored');
    const expiresAt = Number(transaction.expiresAt?.N);
    expect(expiresAt - Number(transaction.createdAt?.N)).toBe(TEN_MINUTES);
    expect(Number(transaction.ttl?.N)).toBe(Math.ceil(expiresAt / 1000));
    expect(transaction.returnTo?.S).toBe('/app/home');
    const verifier = openVerifier(state, transaction.sealedVerifier?.B ?? new Uint8Array());
    canaries.add(verifier);
    expect(codeChallengeS256(verifier)).toBe(params.code_challenge);
    const stored = JSON.stringify(transaction, (_key, value) =>
      value instanceof Uint8Array ? Buffer.from(value).toString('latin1') : value,
    );
    for (const value of [state, loginCookie?.value ?? '', verifier]) {
      expect(stored).not.toContain(value);
    }

    // Act 2: the fake's login page, then Allow
    const page = await fetch(authorize, { redirect: 'manual' });
    expect(page.status).toBe(200);
    await page.text();
    const callbackUrl = await browser.authorize(authorize);

    // Assert 2: Salesforce sends the browser back with a code and the same state
    expect(`${callbackUrl.origin}${callbackUrl.pathname}`).toBe(`${server.url}/callback`);
    expect(callbackUrl.searchParams.get('state')).toBe(state);
    const code = callbackUrl.searchParams.get('code') ?? '';
    expect(code.length).toBeGreaterThan(10);

    // Act 3: /callback
    const callback = await fetch(callbackUrl, {
      headers: browser.cookieHeader(),
      redirect: 'manual',
    });
    const callbackCookies = browser.absorb(callback);

    // Assert 3: 302 to return_to; the session cookie; the login cookie cleared
    expect(callback.status).toBe(302);
    expect(callback.headers.get('location')).toBe('/app/home');
    expect(callback.headers.get('cache-control')).toBe('no-store');
    expect(callback.headers.get('referrer-policy')).toBe('no-referrer');
    expect(await callback.text()).toBe('');
    expect(callbackCookies.map((cookie) => cookie.raw)).toEqual([
      expect.stringMatching(
        /^__Host-tb-session=[A-Za-z0-9_-]{43}; Path=\/; Secure; HttpOnly; SameSite=Strict$/,
      ),
      '__Host-tb-login=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax',
    ]);
    const handle = browser.session ?? '';
    expect(browser.jar.has('__Host-tb-login')).toBe(false);
    expect(fake.calls.tokenCode).toBe(1);
    // Consumed: marked by the one callback that took it, left to its TTL (10 minutes).
    expect(await items('login#')).toContainEqual(
      expect.objectContaining({
        pk: { S: `login#${stateKeyOf(state)}` },
        consumedBy: { S: expect.any(String) },
      }),
    );
    for (const location of [authorize.toString(), callback.headers.get('location') ?? '']) {
      expect(location).not.toContain(handle);
      expect(location).not.toContain(verifier);
      expect(location).not.toContain(CLIENT_SECRET);
    }
    expect(callback.headers.get('location')).not.toContain(code);
    const tokens = await storedTokens(handle);
    expect(tokens?.refreshToken).toMatch(/^5Aep861/);
    expect(tokens?.instanceUrl).toBe(fake.url);

    // Act 4: /refresh right after the callback (cookie + X-CSRF + Origin)
    const refresh = await browser.post('/refresh');

    // Assert 4: the token of the callback, within the reuse window: no upstream call
    expect(refresh.status).toBe(200);
    const body = await json(refresh);
    expect(body).toEqual({
      access_token: tokens?.accessToken,
      instance_url: fake.url,
      token_type: 'Bearer',
      issued_at: tokens?.issuedAt,
      version: 1,
      // The login's introspection (README "Access token expiry"), in whole seconds.
      expires_at: expect.any(Number),
    });
    expect(fake.calls.tokenRefresh).toBe(0);

    // Act 5: /logout
    const logout = await browser.post('/logout');

    // Assert 5: 204, the cookie cleared, the session gone, the refresh token revoked
    expect(logout.status).toBe(204);
    expect(logout.headers.get('cache-control')).toBe('no-store');
    expect(logout.headers.getSetCookie()).toEqual([
      '__Host-tb-session=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict',
    ]);
    expect(browser.session).toBeUndefined();
    expect(fake.calls.revoke).toBe(1);
    expect(fake.isRefreshTokenActive(tokens?.refreshToken ?? '')).toBe(false);
    expect(await runtime.store.get(sessionKeyOf(handle))).toBeUndefined();

    // Act 6: the revoked session
    const after = await fetch(`${server.url}/refresh`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}` },
    });
    await expectError(after, 401, 'invalid_session');
    const again = await fetch(`${server.url}/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}` },
    });
    expect(again.status).toBe(204);
    expect(fake.calls.revoke).toBe(1);
  });

  it('works with the fake auto-approving, a prompt and a login_hint passed through', async () => {
    const browser = new Browser();

    const authorize = await browser.login(
      '?return_to=%2Fdocs%2Fa%3Fx%3D1&prompt=login%20consent&login_hint=user%40example.com',
    );
    const response = await browser.get((await browser.authorize(authorize)).toString());

    expect(authorize.searchParams.get('prompt')).toBe('login consent');
    expect(authorize.searchParams.get('login_hint')).toBe('user@example.com');
    expect(response.status).toBe(302);
    expect(response.headers.get('location')).toBe('/docs/a?x=1');
  });

  it('replaces the session of a browser that logs in again: old one deleted and revoked', async () => {
    // Prepare
    const browser = new Browser();
    await browser.logIn('?return_to=/app');
    const oldHandle = browser.session ?? '';
    const oldTokens = await storedTokens(oldHandle);
    fake.resetCalls();

    // Act: /login sends the SameSite=Strict cookie (same site); /callback will not get it
    const authorize = await browser.login('?return_to=/app');
    const callbackUrl = await browser.authorize(authorize);
    const response = await fetch(callbackUrl, {
      headers: { cookie: `__Host-tb-login=${browser.jar.get('__Host-tb-login')}` },
      redirect: 'manual',
    });
    browser.absorb(response);

    // Assert
    expect(response.status).toBe(302);
    expect(browser.session).not.toBe(oldHandle);
    expect(await runtime.store.get(sessionKeyOf(oldHandle))).toBeUndefined();
    expect(fake.calls.revoke).toBe(1);
    expect(fake.isRefreshTokenActive(oldTokens?.refreshToken ?? '')).toBe(false);
    await expectError(
      await fetch(`${server.url}/refresh`, {
        method: 'POST',
        headers: { authorization: `Bearer ${oldHandle}` },
      }),
      401,
      'invalid_session',
    );
    expect((await browser.post('/refresh')).status).toBe(200);
  });

  it('gives two parallel logins of the same user two independent sessions', async () => {
    // Prepare: two browsers, one Salesforce user
    const first = new Browser('same-user@example.com');
    const second = new Browser('same-user@example.com');

    // Act
    const responses = await Promise.all([
      first.logIn('?return_to=/app'),
      second.logIn('?return_to=/docs'),
    ]);

    // Assert
    expect(responses.map((response) => response.status)).toEqual([302, 302]);
    expect(responses.map((r) => r.headers.get('location'))).toEqual(['/app', '/docs']);
    expect(first.session).toBeDefined();
    expect(first.session).not.toBe(second.session);
    const [a, b] = await Promise.all([
      storedTokens(first.session ?? ''),
      storedTokens(second.session ?? ''),
    ]);
    expect(a?.refreshToken).not.toBe(b?.refreshToken);
    const items = await Promise.all(
      [first, second].map((browser) => runtime.store.get(sessionKeyOf(browser.session ?? ''))),
    );
    expect(items.map((item) => item?.userId)).toEqual([items[0]?.userId, items[0]?.userId]);

    // Each refreshes on its own (version 1 is dead: a real upstream call each)
    const refreshed = await Promise.all([
      first.post('/refresh', { version: 1 }),
      second.post('/refresh', { version: 1 }),
    ]);
    const bodies = await Promise.all(refreshed.map(json));
    expect(refreshed.map((response) => response.status)).toEqual([200, 200]);
    expect(bodies.map((body) => body.version)).toEqual([2, 2]);
    expect(bodies[0]?.access_token).not.toBe(bodies[1]?.access_token);
    for (const body of bodies) canaries.add(String(body.access_token));
    expect(fake.calls.tokenRefresh).toBe(2);
    expect(fake.reuseRevocations).toBe(0);

    // Logging one out leaves the other working
    expect((await first.post('/logout')).status).toBe(204);
    expect((await second.post('/refresh', { version: 2 })).status).toBe(200);
    expect((await first.post('/refresh')).status).toBe(401);
  });
});

describe('Login flow: /callback rejects', () => {
  it('a replay of the same callback: 400 invalid_state, one code exchange', async () => {
    // Prepare
    const browser = new Browser();
    const callbackUrl = await browser.authorize(await browser.login());
    const loginCookie = browser.cookieHeader();
    expect((await browser.get(callbackUrl.toString())).status).toBe(302);
    const sessions = await sessionCount();

    // Act: the same URL with the same (old) login cookie, as an attacker or a reload would
    const replay = await fetch(callbackUrl, { headers: loginCookie, redirect: 'manual' });

    // Assert
    await expectError(replay, 400, 'invalid_state');
    expect(replay.headers.getSetCookie()).toEqual([
      '__Host-tb-login=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax',
    ]);
    expect(fake.calls.tokenCode).toBe(1);
    expect(await sessionCount()).toBe(sessions);
  });

  it('concurrent copies of one callback: exactly one session', async () => {
    const browser = new Browser();
    const callbackUrl = await browser.authorize(await browser.login());
    const sessions = await sessionCount();

    const responses = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(callbackUrl, { headers: browser.cookieHeader(), redirect: 'manual' }),
      ),
    );

    const statuses = responses.map((response) => response.status).sort();
    expect(statuses).toEqual([...Array(19).fill(400), 302].sort());
    expect(fake.calls.tokenCode).toBe(1);
    expect(await sessionCount()).toBe(sessions + 1);
    for (const response of responses) {
      for (const cookie of response.headers.getSetCookie()) {
        canaries.add(parseSetCookie(cookie).value);
      }
    }
  });

  it("another browser's state: 400 invalid_state, and the victim's login is burnt", async () => {
    const victim = new Browser();
    const attacker = new Browser();
    const victimCallback = await victim.authorize(await victim.login());
    await attacker.login();
    const sessions = await sessionCount();

    // The attacker's browser (its own login cookie) lands on the victim's callback URL.
    const response = await attacker.get(victimCallback.toString());

    await expectError(response, 400, 'invalid_state');
    expect(fake.calls.tokenCode).toBe(0);
    expect(await sessionCount()).toBe(sessions);
    await expectError(await victim.get(victimCallback.toString()), 400, 'invalid_state');
  });

  it('a swapped state (two logins in one browser, the first one finishing late)', async () => {
    const browser = new Browser();
    const firstAuthorize = await browser.login();
    const secondAuthorize = await browser.login(); // overwrites the login cookie
    const firstCallback = await browser.authorize(firstAuthorize);
    const secondCallback = await browser.authorize(secondAuthorize);
    const sessions = await sessionCount();

    const first = await fetch(firstCallback, {
      headers: browser.cookieHeader(),
      redirect: 'manual',
    });
    const second = await browser.get(secondCallback.toString());

    await expectError(first, 400, 'invalid_state');
    expect(second.status).toBe(302);
    expect(await sessionCount()).toBe(sessions + 1);
  });

  it('a missing login cookie: 400 invalid_state', async () => {
    const browser = new Browser();
    const callbackUrl = await browser.authorize(await browser.login());
    const sessions = await sessionCount();

    const response = await fetch(callbackUrl, { redirect: 'manual' });

    await expectError(response, 400, 'invalid_state');
    expect(fake.calls.tokenCode).toBe(0);
    expect(await sessionCount()).toBe(sessions);
  });

  it('an expired transaction (the clock moved past 10 minutes): 400 invalid_state', async () => {
    const browser = new Browser();
    const callbackUrl = await browser.authorize(await browser.login());
    const sessions = await sessionCount();
    clock.offsetMs = TEN_MINUTES + 1000;

    const response = await browser.get(callbackUrl.toString());

    await expectError(response, 400, 'invalid_state');
    expect(fake.calls.tokenCode).toBe(0);
    expect(await sessionCount()).toBe(sessions);
    expect(log.entries.some((entry) => entry.attributes.reason === 'expired')).toBe(true);
  });

  it.each([
    ['a duplicated code', (url: URL) => `${url}&code=other`],
    ['a duplicated state', (url: URL) => `${url}&state=${url.searchParams.get('state')}`],
    ['a 3 KB code', (url: URL) => withCode(url, 'a'.repeat(3 * 1024))],
    ['CR/LF in the code', (url: URL) => withCode(url, 'a%0D%0ASet-Cookie:%20x=1')],
    ['NUL in the code', (url: URL) => withCode(url, 'a%00b')],
    ['invalid UTF-8 in the code', (url: URL) => withCode(url, '%C3%28')],
    ['a lone UTF-8 continuation byte', (url: URL) => withCode(url, '%80')],
    ['bad percent-encoding', (url: URL) => withCode(url, '%G1')],
    ['invalid UTF-8 in the state', (url: URL) => `${url}`.replace(/state=[^&]+/, 'state=%FF')],
  ])('%s: 400 invalid_request, no session', async (_why, mangle) => {
    const browser = new Browser();
    const callbackUrl = await browser.authorize(await browser.login());
    const sessions = await sessionCount();

    const response = await browser.get(mangle(callbackUrl));

    await expectError(response, 400, 'invalid_request');
    expect(fake.calls.tokenCode).toBe(0);
    expect(await sessionCount()).toBe(sessions);
  });

  it('a 100 KB parameter: refused before the function over HTTP, 400 invalid_request in it', async () => {
    const browser = new Browser();
    const callbackUrl = await browser.authorize(await browser.login());
    const sessions = await sessionCount();
    const huge = withCode(callbackUrl, 'a'.repeat(100 * 1024));

    // Over HTTP, Node's 16 KB header limit (API Gateway: a 10 KB request line) answers first.
    const overHttp = await fetch(huge, { headers: browser.cookieHeader(), redirect: 'manual' });
    // The function itself, given such an event, refuses it too.
    const direct = await routes['/callback']?.(
      httpEvent({
        method: 'GET',
        path: '/callback',
        rawQueryString: new URL(huge).search.slice(1),
        cookies: [`__Host-tb-login=${browser.jar.get('__Host-tb-login')}`],
      }),
    );

    expect(overHttp.status).toBeGreaterThanOrEqual(400);
    expect(overHttp.status).toBeLessThan(500);
    expect(direct?.statusCode).toBe(400);
    expect(JSON.parse(String(direct?.body)).error).toBe('invalid_request');
    expect(fake.calls.tokenCode).toBe(0);
    expect(await sessionCount()).toBe(sessions);
  });

  it('the user pressing Deny: back to return_to with error=access_denied, Salesforce text not reflected', async () => {
    const browser = new Browser();
    const callbackUrl = await browser.authorize(await browser.login(), 'deny');
    expect(callbackUrl.searchParams.get('error')).toBe('access_denied');
    const sessions = await sessionCount();

    const response = await browser.get(callbackUrl.toString());

    const query = expectLoginRedirect(response, 'access_denied', /not granted/);
    expect(query.get('error_description')).not.toContain('end-user denied');
    expect(fake.calls.tokenCode).toBe(0);
    expect(await sessionCount()).toBe(sessions);
  });

  it.each([
    [
      'a bad signature',
      () => fake.inject({ endpoint: 'token', kind: 'bad-signature' }),
      /verification/,
    ],
    [
      'a foreign instance_url',
      () =>
        fake.inject({
          endpoint: 'token',
          kind: 'foreign-instance-url',
          url: 'https://evil.example.com',
        }),
      /verification/,
    ],
    [
      'invalid_grant on the code',
      () =>
        fake.inject({
          endpoint: 'token',
          kind: 'error',
          error: 'invalid_grant',
          description: 'expired authorization code',
        }),
      /authorization code/,
    ],
    [
      'a token response without refresh_token',
      () => fake.inject({ endpoint: 'token', kind: 'missing-field', field: 'refresh_token' }),
      /refresh_token.*scope/,
    ],
  ])(
    '%s: back to return_to with error=login_failed and a safe description, no session',
    async (_why, inject, text) => {
      const browser = new Browser();
      const callbackUrl = await browser.authorize(await browser.login());
      const sessions = await sessionCount();
      inject();

      const response = await browser.get(callbackUrl.toString());

      const query = expectLoginRedirect(response, 'login_failed', text);
      expect(query.get('error_description')).not.toContain('expired authorization code');
      expect(fake.calls.tokenCode).toBe(1);
      expect(await sessionCount()).toBe(sessions);
      expect(browser.session).toBeUndefined();
    },
  );

  it('Salesforce 503 on the code exchange: back to return_to with error=login_failed, try again shortly', async () => {
    const browser = new Browser();
    const callbackUrl = await browser.authorize(await browser.login());
    const sessions = await sessionCount();
    fake.inject({ endpoint: 'token', kind: 'maintenance' });

    const response = await browser.get(callbackUrl.toString());

    expectLoginRedirect(response, 'login_failed', /temporarily unavailable; log in again shortly/);
    expect(await sessionCount()).toBe(sessions);
  });

  it.each([
    ['ip restricted', 'login_failed', /IP restrictions/, 'upstream_forbidden'],
    ['rate limit exceeded', 'login_failed', /rate-limiting/, 'upstream_unavailable'],
  ])(
    'invalid_grant "%s" on the code exchange: back to return_to with error=%s',
    async (description, error, text, event) => {
      const browser = new Browser();
      const callbackUrl = await browser.authorize(await browser.login());
      const sessions = await sessionCount();
      fake.inject({ endpoint: 'token', kind: 'error', error: 'invalid_grant', description });
      log.entries.length = 0;

      const response = await browser.get(callbackUrl.toString());

      expectLoginRedirect(response, error, text);
      expect(await sessionCount()).toBe(sessions);
      expect(log.events()).toContain(event);
      expect(log.events()).not.toContain('code_exchange_rejected');
    },
  );

  it('a browser with an unknown state gets a page with a link to start again', async () => {
    const browser = new Browser();
    const callbackUrl = await browser.authorize(await browser.login());
    callbackUrl.searchParams.set('state', 'B'.repeat(43));

    const response = await fetch(callbackUrl, {
      headers: { ...browser.cookieHeader(), accept: 'text/html,*/*;q=0.8' },
      redirect: 'manual',
    });

    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const page = await response.text();
    expect(page).toContain('<a href="/login">Start the login again</a>');
    expect(page).toMatch(/unknown, expired, already used/);
  });

  it('a scope without refresh_token: refused at cold start, and a grant without one is a 400 login_failed telling the admin what to add', async () => {
    // Prepare: a deployment whose SALESFORCE_SCOPES lacks refresh_token (which `cdk synth`
    // refuses too), and a connected app that grants no refresh token to the default scopes
    const narrowEnv = {
      ...stack.env,
      CALLBACK_URL: `${server.url}/callback`,
      SALESFORCE_SCOPES: 'api',
    };
    const browser = new Browser();
    const callbackUrl = await browser.authorize(await browser.login());
    const sessions = await sessionCount();
    fake.inject({ endpoint: 'token', kind: 'missing-field', field: 'refresh_token' });

    // Act
    const coldStart = () => buildRuntime(narrowEnv, { log, clock, metrics: new CaptureMetrics() });
    const response = await browser.get(callbackUrl.toString());

    // Assert
    expect(coldStart).toThrow(ConfigError);
    expect(coldStart).toThrow(/SALESFORCE_SCOPES must include refresh_token \(or offline_access\)/);
    expectLoginRedirect(response, 'login_failed', /add the "refresh_token".*scope/);
    expect(fake.calls.tokenCode).toBe(1);
    expect(await sessionCount()).toBe(sessions);
  });
});

describe('Login flow: /login rejects', () => {
  it.each([
    '?return_to=%2F%2Fevil.example.com',
    '?return_to=%2F%5Cevil.example.com',
    '?return_to=https%3Aevil.example.com',
    '?return_to=%2F%252F%252Fevil.example.com',
    '?return_to=%2Fapp%2F..%2F..%2Fadmin',
    '?return_to=%2Fapplication',
    '?return_to=%2Fapp%0D%0ALocation:%20https://evil.example.com',
    '?return_to=%2Fapp&return_to=%2Fdocs',
    '?prompt=none',
    '?login_hint=a%00b',
  ])('%s: 400 invalid_request, no transaction, no cookie', async (query) => {
    const transactions = (await items('login#')).length;

    const response = await fetch(`${server.url}/login${query}`, { redirect: 'manual' });

    await expectError(response, 400, 'invalid_request');
    expect(response.headers.getSetCookie()).toEqual([]);
    expect((await items('login#')).length).toBe(transactions);
  });

  it('answers 405 to wrong methods, 404 to unknown routes, 413 to big bodies', async () => {
    const post = await fetch(`${server.url}/login`, { method: 'POST' });
    const callback = await fetch(`${server.url}/callback`, { method: 'DELETE' });
    const logout = await fetch(`${server.url}/logout`);
    const unknown = await fetch(`${server.url}/nowhere`);
    const big = await fetch(`${server.url}/logout`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'x'.repeat(17 * 1024),
    });

    await expectError(post, 405, 'method_not_allowed');
    expect(post.headers.get('allow')).toBe('GET');
    await expectError(callback, 405, 'method_not_allowed');
    await expectError(logout, 405, 'method_not_allowed');
    expect(logout.headers.get('allow')).toBe('POST');
    expect(unknown.status).toBe(404);
    expect((await json(unknown)).error).toBe('not_found');
    await expectError(big, 413, 'invalid_request');
  });
});

describe('Login flow: /logout', () => {
  it('answers 204 with no credential, an unknown handle or a malformed one', async () => {
    const responses = await Promise.all([
      fetch(`${server.url}/logout`, { method: 'POST' }),
      fetch(`${server.url}/logout`, {
        method: 'POST',
        headers: { authorization: `Bearer ${'Q'.repeat(43)}` },
      }),
      fetch(`${server.url}/logout`, {
        method: 'POST',
        headers: { cookie: '__Host-tb-session=nonsense', 'x-csrf': '1' },
      }),
    ]);

    expect(responses.map((response) => response.status)).toEqual([204, 204, 204]);
    expect(fake.calls.revoke).toBe(0);
  });

  it('answers 403 to the cookie without X-CSRF or from a foreign Origin, keeping the session', async () => {
    const browser = new Browser();
    await browser.logIn();
    const cookie = browser.cookieHeader();

    const noCsrf = await fetch(`${server.url}/logout`, { method: 'POST', headers: cookie });
    const foreign = await fetch(`${server.url}/logout`, {
      method: 'POST',
      headers: { ...cookie, 'x-csrf': '1', origin: 'https://evil.example.com' },
    });

    await expectError(noCsrf, 403, 'csrf_check_failed');
    await expectError(foreign, 403, 'csrf_check_failed');
    expect(await runtime.store.get(sessionKeyOf(browser.session ?? ''))).toBeDefined();
    expect(fake.calls.revoke).toBe(0);
  });

  it('still answers 204 when Salesforce cannot revoke, and logs revoke_failed', async () => {
    const browser = new Browser();
    await browser.logIn();
    const handle = browser.session ?? '';
    const tokens = await storedTokens(handle);
    fake.inject({ endpoint: 'revoke', kind: 'status', status: 503 });

    const response = await fetch(`${server.url}/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}` },
    });

    expect(response.status).toBe(204);
    expect(fake.calls.revoke).toBe(1);
    expect(await runtime.store.get(sessionKeyOf(handle))).toBeUndefined();
    const entry = log.entries.find((e) => e.attributes.event === 'revoke_failed');
    expect(entry?.level).toBe('error');
    expect(entry?.attributes.alarm).toBe(true);
    expect(fake.isRefreshTokenActive(tokens?.refreshToken ?? '')).toBe(true);
  });

  it('wins a race with a refresh: the refresh gets 401 and cannot resurrect the session', async () => {
    // Prepare: a session; its next token request is held for 600 ms at Salesforce
    const browser = new Browser();
    await browser.logIn();
    const handle = browser.session ?? '';
    const tokens = await storedTokens(handle);
    fake.inject({ endpoint: 'token', kind: 'delay', ms: 600 });

    // Act: the refresh holds the lease and waits on Salesforce; the logout lands meanwhile
    const refreshing = browser.post('/refresh', { version: 1 });
    await waitUntil(() => fake.calls.tokenRefresh === 1);
    const logout = await fetch(`${server.url}/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}` },
    });
    const refresh = await refreshing;

    // Assert
    expect(logout.status).toBe(204);
    expect(refresh.status).toBe(401);
    expect(['invalid_session', 'reauthentication_required']).toContain((await json(refresh)).error);
    expect(fake.calls.revoke).toBe(1);
    expect(fake.isRefreshTokenActive(tokens?.refreshToken ?? '')).toBe(false);
    expect(await runtime.store.get(sessionKeyOf(handle))).toBeUndefined();
    await expectError(
      await fetch(`${server.url}/refresh`, {
        method: 'POST',
        headers: { authorization: `Bearer ${handle}` },
      }),
      401,
      'invalid_session',
    );
  });
});

describe('Login flow: docs/openapi.yaml', () => {
  it('describes the answers of /login, /callback and /logout', async () => {
    // Prepare
    const browser = new Browser();
    const login = await fetch(`${server.url}/login?return_to=/app`, {
      headers: browser.cookieHeader(),
      redirect: 'manual',
    });
    browser.absorb(login);
    const callbackUrl = await browser.authorize(new URL(login.headers.get('location') ?? ''));
    const callback = await fetch(callbackUrl, {
      headers: browser.cookieHeader(),
      redirect: 'manual',
    });
    browser.absorb(callback);
    const handle = browser.session ?? '';

    // Act
    const answers: Array<[string, string, Response]> = [
      ['GET', '/login', login],
      ['GET', '/login', await fetch(`${server.url}/login?return_to=//evil`)],
      ['GET', '/login', await fetch(`${server.url}/login`, { method: 'POST' })],
      ['GET', '/callback', callback],
      ['GET', '/callback', await fetch(callbackUrl, { redirect: 'manual' })],
      ['GET', '/callback', await fetch(`${server.url}/callback`, { method: 'POST' })],
      [
        'POST',
        '/logout',
        await fetch(`${server.url}/logout`, {
          method: 'POST',
          headers: { cookie: `__Host-tb-session=${handle}` },
        }),
      ],
      ['POST', '/logout', await fetch(`${server.url}/logout`)],
      [
        'POST',
        '/logout',
        await fetch(`${server.url}/logout`, { method: 'POST', body: 'x'.repeat(17_000) }),
      ],
      [
        'POST',
        '/logout',
        await fetch(`${server.url}/logout`, {
          method: 'POST',
          headers: { authorization: `Bearer ${handle}` },
        }),
      ],
    ];
    const problems = await Promise.all(
      answers.map(([method, path, response]) => openApiProblems(method, path, response)),
    );

    // Assert
    expect(answers.map(([, , response]) => response.status)).toEqual([
      302, 400, 405, 302, 400, 405, 403, 405, 413, 204,
    ]);
    expect(problems).toEqual(Array(answers.length).fill([]));
  });
});

describe('Login flow: logs', () => {
  it('carry no code, verifier, state, token, secret, cookie or handle of any flow above', () => {
    // Prepare: every value the tests saw (states, codes, verifiers, cookies, handles,
    // access and refresh tokens, the client secret)
    const values = [...canaries].filter((value) => value.length >= 16);
    expect(values.length).toBeGreaterThan(50);

    // Act
    const text = log.text();

    // Assert
    expect(text).toContain('login_completed');
    for (const value of values) {
      expect(text).not.toContain(value);
      expect(text).not.toContain(encodeURIComponent(value));
    }
  });
});

function withCode(url: URL, rawValue: string): string {
  return url.toString().replace(/code=[^&]+/, `code=${rawValue}`);
}

async function waitUntil(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('Browser apps on their own origin', () => {
  it('sends the login back to an absolute return_to on an allowed origin, whose page then refreshes with the cookie', async () => {
    // Prepare
    const browser = new Browser();
    const returnTo = `${APP_ORIGIN}/app/home?tab=1`;

    // Act
    const callback = await browser.logIn(`?return_to=${encodeURIComponent(returnTo)}`);
    const fromApp = { ...browser.cookieHeader(), 'x-csrf': '1', origin: APP_ORIGIN };
    const refreshed = await fetch(`${server.url}/refresh`, { method: 'POST', headers: fromApp });
    const described = await fetch(`${server.url}/session`, { headers: fromApp });

    // Assert
    expect(callback.status).toBe(302);
    expect(callback.headers.get('location')).toBe(returnTo);
    expect(browser.session).toBeDefined();
    expect(refreshed.status).toBe(200);
    expect(refreshed.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
    expect(described.status).toBe(200);
    const metadata = await json(described);
    expect(metadata.connection_id).toMatch(/^con_[A-Za-z0-9_-]{22}$/);
    expect(metadata.status).toBe('active');
    const tokens = await storedTokens(browser.session ?? '');
    expect(Object.keys(metadata)).not.toContain('access_token');
    expect(JSON.stringify(metadata)).not.toContain(tokens?.accessToken);
    expect(JSON.stringify(metadata)).not.toContain(tokens?.refreshToken);
  });

  it('sends a denied login back to the absolute return_to with error=access_denied', async () => {
    const browser = new Browser();
    const returnTo = `${APP_ORIGIN}/app`;

    const authorizeUrl = await browser.login(`?return_to=${encodeURIComponent(returnTo)}`);
    const callback = await browser.get((await browser.authorize(authorizeUrl, 'deny')).toString());

    expect(callback.status).toBe(302);
    const location = new URL(callback.headers.get('location') ?? '');
    expect(location.origin).toBe(APP_ORIGIN);
    expect(location.pathname).toBe('/app');
    expect(location.searchParams.get('error')).toBe('access_denied');
  });

  it.each([
    'https://evil.example.net/app',
    `${APP_ORIGIN}.evil.example.net/app`,
    `${APP_ORIGIN}/other`,
  ])('refuses return_to=%s with 400 and no redirect', async (returnTo) => {
    const browser = new Browser();

    const response = await browser.get(
      `${server.url}/login?return_to=${encodeURIComponent(returnTo)}`,
    );

    await expectError(response, 400, 'invalid_request');
    expect(response.headers.get('location')).toBeNull();
    expect(browser.jar.size).toBe(0);
  });
});
