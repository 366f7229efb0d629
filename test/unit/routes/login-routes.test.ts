import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../functions/broker/config.ts';
import { TokenVault } from '../../../functions/broker/envelope.ts';
import { stateKeyOf } from '../../../functions/broker/login-transaction.ts';
import { newSessionHandle, sessionKeyOf } from '../../../functions/broker/session-handle.ts';
import type { TokenResponse } from '../../../functions/broker/upstream.ts';
import { createCallbackHandler } from '../../../functions/routes/callback.ts';
import { createLoginHandler } from '../../../functions/routes/login.ts';
import { createLogoutHandler } from '../../../functions/routes/logout.ts';
import { SalesforceOAuthClient } from '../../../functions/salesforce/oauth-client.ts';
import { CaptureLog, CaptureMetrics } from '../../support/capture-log.ts';
import { DAY } from '../../support/fixtures.ts';
import { httpEvent } from '../../support/http-event.ts';
import { MemoryBrokerCodeStore } from '../../support/memory-code-store.ts';
import { MemoryDataKeys } from '../../support/memory-data-keys.ts';
import { MemoryLoginStore } from '../../support/memory-login-store.ts';
import { MemorySessionStore } from '../../support/memory-session-store.ts';

const ORIGIN = 'https://app.example.com';

/** The three routes on in-memory ports and a scripted Salesforce (no network). */
function routes(config: { returnToPrefixes?: string[]; callbackUrl?: URL | undefined } = {}) {
  const transactions = new MemoryLoginStore();
  const codes = new MemoryBrokerCodeStore();
  const store = new MemorySessionStore();
  const vault = new TokenVault(new MemoryDataKeys());
  const log = new CaptureLog();
  const revoked: string[] = [];
  const client = new SalesforceOAuthClient({
    loginUrl: new URL('https://login.salesforce.com'),
    timeoutMs: 1000,
  });
  const salesforce = {
    authorizationUrl: client.authorizationUrl.bind(client),
    authorizationCodeGrant: async (): Promise<TokenResponse> => ({
      accessToken: 'access',
      refreshToken: 'refresh',
      instanceUrl: 'https://acme.my.salesforce.com',
      id: 'https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS',
      orgId: '00Dxx0000001gPLEAY',
      userId: '005xx000001Sv6AAAS',
      issuedAt: '1800000000000',
      scope: 'api refresh_token',
      tokenType: 'Bearer',
    }),
    revoke: async (token: string) => {
      revoked.push(token);
    },
  };
  const deps = {
    transactions,
    codes,
    store,
    vault,
    salesforce,
    log,
    metrics: new CaptureMetrics(),
    clock: { now: () => Date.now() },
    credentials: {
      get: async () => ({ clientId: 'cid', clientSecret: 's' }),
      reload: async () => ({ clientId: 'cid', clientSecret: 's' }),
    },
    config: {
      scopes: 'api refresh_token',
      returnToPrefixes: config.returnToPrefixes ?? ['/'],
      callbackUrl:
        'callbackUrl' in config ? config.callbackUrl : new URL('https://b.example.com/callback'),
      allowedOrigins: [ORIGIN],
      sessionAbsoluteTtlMs: 30 * DAY,
      sessionIdleTtlMs: 7 * DAY,
      invocationDeadlineMs: 11_000,
      clientApps: [],
    },
  };
  return {
    deps,
    transactions,
    store,
    revoked,
    log,
    login: createLoginHandler(deps),
    callback: createCallbackHandler(deps),
    logout: createLogoutHandler(deps),
  };
}

function body(result: APIGatewayProxyStructuredResultV2) {
  return JSON.parse(String(result.body)) as { error: string; error_description: string };
}

describe('Route: GET /login', () => {
  it('answers 302 to Salesforce with the login cookie, no-store and no-referrer', async () => {
    const r = routes();

    const result = await r.login(
      httpEvent({ method: 'GET', path: '/login', rawQueryString: 'return_to=%2Fapp%2Fhome' }),
    );

    expect(result.statusCode).toBe(302);
    expect(result.headers?.location).toMatch(
      /^https:\/\/login\.salesforce\.com\/services\/oauth2\/authorize\?response_type=code&/,
    );
    expect(result.headers?.['cache-control']).toBe('no-store');
    expect(result.headers?.['referrer-policy']).toBe('no-referrer');
    expect(result.cookies).toHaveLength(1);
    expect(result.cookies?.[0]).toMatch(
      /^__Host-tb-login=[A-Za-z0-9_-]{43}; Max-Age=600; Path=\/; Secure; HttpOnly; SameSite=Lax$/,
    );
    expect([...r.transactions.items.values()][0]?.returnTo).toBe('/app/home');
  });

  it('remembers the session cookie the browser holds, as its hash', async () => {
    const r = routes();
    const handle = newSessionHandle();

    await r.login(
      httpEvent({ method: 'GET', path: '/login', cookies: [`__Host-tb-session=${handle}`] }),
    );

    const [transaction] = [...r.transactions.items.values()];
    expect(transaction?.replacesSessionKey).toBe(sessionKeyOf(handle));
    expect(transaction?.returnTo).toBe('/');
  });

  it.each([
    'return_to=%2F%2Fevil.example.com',
    'return_to=https%3Aevil.example.com',
    'return_to=%2F%5Cevil',
    'return_to=%2F%252F%252Fevil',
    'return_to=%2Fa&return_to=%2Fb',
    'return_to=%2Fapp%0D%0A',
    'return_to=%FF',
    'prompt=none',
    'login_hint=a%20b',
    'return_to=%2Fapplication',
  ])('answers 400 invalid_request for %j and stores nothing', async (query) => {
    const r = routes({ returnToPrefixes: ['/app', '/'] });
    const strict = routes({ returnToPrefixes: ['/app'] });
    const handler = query === 'return_to=%2Fapplication' ? strict : r;

    const result = await handler.login(
      httpEvent({ method: 'GET', path: '/login', rawQueryString: query }),
    );

    expect(result.statusCode).toBe(400);
    expect(body(result).error).toBe('invalid_request');
    expect(result.cookies ?? []).toEqual([]);
    expect(handler.transactions.items.size).toBe(0);
  });

  it('answers 405 with Allow: GET to a POST', async () => {
    const result = await routes().login(httpEvent({ method: 'POST', path: '/login' }));

    expect(result.statusCode).toBe(405);
    expect(result.headers?.allow).toBe('GET');
    expect(body(result).error).toBe('method_not_allowed');
  });

  it('refuses to start without CALLBACK_URL', () => {
    expect(() => routes({ callbackUrl: undefined })).toThrow(ConfigError);
  });
});

describe('Route: GET /callback', () => {
  async function startLogin(r: ReturnType<typeof routes>) {
    const result = await r.login(httpEvent({ method: 'GET', path: '/login' }));
    const location = new URL(String(result.headers?.location));
    const cookie = String(result.cookies?.[0]).split(';')[0] ?? '';
    return { state: location.searchParams.get('state') ?? '', cookie };
  }

  it('answers 302 to return_to with the session cookie and clears the login cookie', async () => {
    const r = routes();
    const { state, cookie } = await startLogin(r);

    const result = await r.callback(
      httpEvent({
        method: 'GET',
        path: '/callback',
        rawQueryString: `code=aPrx%2Bcode%3D%3D&state=${state}`,
        cookies: [cookie],
      }),
    );

    expect(result.statusCode).toBe(302);
    expect(result.headers?.location).toBe('/');
    expect(result.headers?.['cache-control']).toBe('no-store');
    expect(result.headers?.['referrer-policy']).toBe('no-referrer');
    expect(result.cookies).toEqual([
      expect.stringMatching(
        /^__Host-tb-session=[A-Za-z0-9_-]{43}; Path=\/; Secure; HttpOnly; SameSite=Strict$/,
      ),
      '__Host-tb-login=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax',
    ]);
    expect(r.store.items.size).toBe(1);
  });

  it.each([
    ['code=a&code=b&state=S', 'invalid_request'],
    ['code=a&state=S&state=S', 'invalid_request'],
    ['code=a%0D%0A&state=S', 'invalid_request'],
    ['code=a%00&state=S', 'invalid_request'],
    ['code=%C3%28&state=S', 'invalid_request'],
    ['code=%E0%A4&state=S', 'invalid_request'],
    ['code=%zz&state=S', 'invalid_request'],
    [`code=${'a'.repeat(3000)}&state=S`, 'invalid_request'],
    ['code=a', 'invalid_state'],
    ['code=a&state=', 'invalid_state'],
  ])('answers 400 for %j: %s; clears the login cookie; no session', async (query, code) => {
    const r = routes();
    const { state, cookie } = await startLogin(r);

    const result = await r.callback(
      httpEvent({
        method: 'GET',
        path: '/callback',
        rawQueryString: query.replaceAll('state=S', `state=${state}`),
        cookies: [cookie],
      }),
    );

    expect(result.statusCode).toBe(400);
    expect(body(result).error).toBe(code);
    expect(body(result).error_description).not.toContain('<b>');
    expect(result.cookies).toEqual([
      '__Host-tb-login=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax',
    ]);
    expect(r.store.items.size).toBe(0);
  });

  it.each([
    ['error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E&state=S', 'access_denied'],
    ['error=server_error&state=S', 'login_failed'],
    ['state=S', 'login_failed'],
  ])(
    'sends the browser back to return_to for %j with error=%s; clears the login cookie; no session',
    async (query, code) => {
      // Prepare
      const r = routes();
      const { state, cookie } = await startLogin(r);

      // Act
      const result = await r.callback(
        httpEvent({
          method: 'GET',
          path: '/callback',
          rawQueryString: query.replaceAll('state=S', `state=${state}`),
          cookies: [cookie],
        }),
      );

      // Assert: 302 to the transaction's return_to with the contract's error, never
      // Salesforce's own text
      expect(result.statusCode).toBe(302);
      const location = new URL(String(result.headers?.location), 'https://b.example.com');
      expect(location.pathname).toBe('/');
      expect(location.searchParams.get('error')).toBe(code);
      expect(location.searchParams.get('error_description')).toMatch(/\w/);
      expect(String(result.headers?.location)).not.toContain('%3Cb%3E');
      expect(String(result.headers?.location)).not.toContain('<b>');
      expect(result.cookies).toEqual([
        '__Host-tb-login=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax',
      ]);
      expect(r.store.items.size).toBe(0);
    },
  );

  it('keeps the query of return_to when it adds the error', async () => {
    const r = routes({ returnToPrefixes: ['/app'] });
    const login = await r.login(
      httpEvent({ method: 'GET', path: '/login', rawQueryString: 'return_to=%2Fapp%3Ftab%3D2' }),
    );
    const state = new URL(String(login.headers?.location)).searchParams.get('state');
    const cookie = String(login.cookies?.[0]).split(';')[0] ?? '';

    const result = await r.callback(
      httpEvent({
        method: 'GET',
        path: '/callback',
        rawQueryString: `error=access_denied&state=${state}`,
        cookies: [cookie],
      }),
    );

    const location = new URL(String(result.headers?.location), 'https://b.example.com');
    expect([location.pathname, location.searchParams.get('tab')]).toEqual(['/app', '2']);
    expect(location.searchParams.get('error')).toBe('access_denied');
  });

  it('shows a browser an HTML page with a link to start again when the state is unknown', async () => {
    // Prepare: a browser navigation (Accept: text/html) with a state nobody issued
    const r = routes();

    // Act
    const page = await r.callback(
      httpEvent({
        method: 'GET',
        path: '/callback',
        rawQueryString: `code=a&state=${'A'.repeat(43)}`,
        headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' },
      }),
    );
    const api = await r.callback(
      httpEvent({
        method: 'GET',
        path: '/callback',
        rawQueryString: `code=a&state=${'A'.repeat(43)}`,
        headers: { accept: 'application/json' },
      }),
    );

    // Assert
    expect(page.statusCode).toBe(400);
    expect(page.headers?.['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers?.['content-security-policy']).toContain("default-src 'none'");
    expect(page.body).toContain('href="/login"');
    expect(page.body).toContain('start it again');
    expect(page.body).not.toContain('<script');
    expect(page.cookies).toEqual([
      '__Host-tb-login=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax',
    ]);
    expect(api.statusCode).toBe(400);
    expect(body(api).error).toBe('invalid_state');
  });

  it('uses rawQueryString, not the comma-joined queryStringParameters', async () => {
    const r = routes();
    const { state, cookie } = await startLogin(r);
    const event = httpEvent({
      method: 'GET',
      path: '/callback',
      rawQueryString: `code=a&code=b&state=${state}`,
      cookies: [cookie],
    });
    event.queryStringParameters = { code: 'a,b', state };

    const result = await r.callback(event);

    expect(body(result).error).toBe('invalid_request');
  });

  it('consumes the transaction before the code is checked: a later good callback fails', async () => {
    const r = routes();
    const { state, cookie } = await startLogin(r);
    const call = (query: string) =>
      r.callback(
        httpEvent({ method: 'GET', path: '/callback', rawQueryString: query, cookies: [cookie] }),
      );

    const first = await call(`error=access_denied&state=${state}`);
    const second = await call(`code=a&state=${state}`);

    expect(String(first.headers?.location)).toContain('error=access_denied');
    expect(body(second).error).toBe('invalid_state');
    expect(r.transactions.items.has(stateKeyOf(state))).toBe(false);
  });
});

describe('Route: POST /logout', () => {
  async function session(r: ReturnType<typeof routes>) {
    const login = await r.login(httpEvent({ method: 'GET', path: '/login' }));
    const state = new URL(String(login.headers?.location)).searchParams.get('state');
    const result = await r.callback(
      httpEvent({
        method: 'GET',
        path: '/callback',
        rawQueryString: `code=c&state=${state}`,
        cookies: [String(login.cookies?.[0]).split(';')[0] ?? ''],
      }),
    );
    return (String(result.cookies?.[0]).split(';')[0] ?? '').replace('__Host-tb-session=', '');
  }

  const clearCookie = '__Host-tb-session=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict';

  it('answers 204, deletes the session, revokes, clears the cookie (cookie + CSRF)', async () => {
    const r = routes();
    const handle = await session(r);

    const result = await r.logout(
      httpEvent({
        method: 'POST',
        path: '/logout',
        headers: { 'x-csrf': '1', origin: ORIGIN },
        cookies: [`__Host-tb-session=${handle}`],
      }),
    );

    expect(result.statusCode).toBe(204);
    expect(result.body).toBeUndefined();
    expect(result.cookies).toEqual([clearCookie]);
    expect(r.store.items.size).toBe(0);
    expect(r.revoked).toEqual(['refresh']);
  });

  it.each([
    [{}, [], 'no credential'],
    [{ authorization: `Bearer ${'A'.repeat(43)}` }, [], 'unknown handle'],
    [{ authorization: 'Bearer short' }, [], 'malformed bearer'],
    [{ 'x-csrf': '1' }, ['__Host-tb-session=bad'], 'malformed cookie'],
  ] as Array<[Record<string, string>, string[], string]>)(
    'answers 204 for %j (%s): idempotent',
    async (headers, cookies) => {
      const r = routes();

      const result = await r.logout(
        httpEvent({ method: 'POST', path: '/logout', headers, cookies }),
      );

      expect(result.statusCode).toBe(204);
      expect(result.cookies).toEqual([clearCookie]);
      expect(r.revoked).toHaveLength(0);
    },
  );

  it.each([
    [{}, 'no X-CSRF'],
    [{ 'x-csrf': '1', origin: 'https://evil.example.com' }, 'a foreign Origin'],
  ] as Array<[Record<string, string>, string]>)(
    'answers 403 csrf_check_failed with the cookie and %j (%s), keeping the session',
    async (headers, _why) => {
      const r = routes();
      const handle = await session(r);

      const result = await r.logout(
        httpEvent({
          method: 'POST',
          path: '/logout',
          headers,
          cookies: [`__Host-tb-session=${handle}`],
        }),
      );

      expect(result.statusCode).toBe(403);
      expect(body(result).error).toBe('csrf_check_failed');
      expect(r.store.items.size).toBe(1);
    },
  );

  it('answers 413 to a body over 16 KB and 405 to a GET', async () => {
    const r = routes();

    const large = await r.logout(
      httpEvent({ method: 'POST', path: '/logout', body: 'x'.repeat(16 * 1024 + 1) }),
    );
    const get = await r.logout(httpEvent({ method: 'GET', path: '/logout' }));

    expect([large.statusCode, body(large).error]).toEqual([413, 'invalid_request']);
    expect([get.statusCode, get.headers?.allow]).toEqual([405, 'POST']);
  });
});
