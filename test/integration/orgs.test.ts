import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sessionKeyOf } from '../../functions/broker/session-handle.ts';
import type { HttpHandler } from '../../functions/http/route.ts';
import { createCallbackHandler } from '../../functions/routes/callback.ts';
import { createLoginHandler } from '../../functions/routes/login.ts';
import { createLogoutHandler } from '../../functions/routes/logout.ts';
import { createRefreshHandler } from '../../functions/routes/refresh.ts';
import { buildRuntime, type Runtime } from '../../functions/runtime.ts';
import { type FakeSalesforce, startFakeSalesforce } from '../../local/fake-salesforce.ts';
import { type LocalServer, startLocalServer } from '../../local/lambda-http.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { CaptureLog, CaptureMetrics } from '../support/capture-log.ts';

/**
 * Login hosts per login and several connected apps (README "Login hosts and several
 * connected apps"), over real HTTP on loopback: two fake orgs on two loopback hosts
 * (`127.0.0.1` and `127.0.0.2`, the same port: Linux routes all of 127.0.0.0/8 to the
 * loopback interface), two connected apps with different secrets in the Secrets Manager
 * emulator, and the broker's `/login`, `/callback`, `/refresh` and `/logout`.
 */

const PRODUCTION_SECRET = 'production-app-secret-7d1e';
const SANDBOX_APP = { clientId: 'sandbox-app-consumer-key', clientSecret: 'sandbox-secret-4b2a' };
const SANDBOX_SECRET_ID = 'token-broker/salesforce-sandbox-app';

let stack: LocalStack;
let server: LocalServer;
let runtime: Runtime;
/** The org at 127.0.0.1, the default app's login host. */
let orgA: FakeSalesforce;
/** The org at 127.0.0.2, the sandbox app's login host. */
let orgB: FakeSalesforce;
const log = new CaptureLog();
/** Every secret value the tests saw: none may appear in the captured log. */
const canaries = new Set<string>([PRODUCTION_SECRET, SANDBOX_APP.clientSecret]);
const routes: Record<string, HttpHandler> = {};
let userCounter = 0;

beforeAll(async () => {
  stack = await startLocalStack({
    clientSecret: PRODUCTION_SECRET,
    salesforce: { otherApps: [SANDBOX_APP] },
  });
  if (!stack.salesforce) throw new Error('these tests need the fake Salesforce');
  orgA = stack.salesforce;
  orgB = await startFakeSalesforce({
    host: '127.0.0.2',
    port: Number(new URL(orgA.url).port),
    clientSecret: PRODUCTION_SECRET,
    otherApps: [SANDBOX_APP],
  });
  stack.secretsManager.putSecret(
    SANDBOX_SECRET_ID,
    JSON.stringify({ client_id: SANDBOX_APP.clientId, client_secret: SANDBOX_APP.clientSecret }),
  );
  Object.assign(process.env, stack.env);
  server = await startLocalServer({ routes });
  runtime = buildRuntime(
    {
      ...stack.env,
      CALLBACK_URL: `${server.url}/callback`,
      ALLOWED_ORIGINS: server.url,
      // Every /refresh goes to Salesforce: the tests count where it went.
      REUSE_WINDOW_SECONDS: '0',
      LOGIN_HOSTS: '127.0.0.1,127.0.0.2,*.my.salesforce.com',
      SALESFORCE_APPS: JSON.stringify([
        {
          name: 'production',
          secret_id: stack.secretId,
          login_url: orgA.url,
          scopes: 'api refresh_token',
        },
        {
          name: 'sandbox',
          secret_id: SANDBOX_SECRET_ID,
          login_url: orgB.url,
          scopes: 'api refresh_token',
        },
      ]),
    },
    { log, metrics: new CaptureMetrics() },
  );
  Object.assign(routes, {
    '/login': createLoginHandler(runtime),
    '/callback': createCallbackHandler(runtime),
    '/refresh': createRefreshHandler(runtime),
    '/logout': createLogoutHandler(runtime),
  });
});

afterAll(async () => {
  await server?.close();
  await orgB?.close();
  await stack?.close();
});

beforeEach(() => {
  orgA.resetCalls();
  orgB.resetCalls();
});

/** `GET /login?...` without following the redirect. */
function login(query: string): Promise<Response> {
  return fetch(`${server.url}/login?${query}`, { redirect: 'manual' });
}

/**
 * The whole browser flow for one login: `/login`, Allow at whichever org the broker sent
 * the browser to, `/callback`. Returns the session handle and the authorize URL.
 */
async function logIn(query: string): Promise<{ handle: string; authorizeUrl: URL }> {
  const started = await login(query);
  expect(started.status).toBe(302);
  const authorizeUrl = new URL(started.headers.get('location') ?? '');
  const loginCookie = started.headers
    .getSetCookie()
    .map((cookie) => cookie.split(';')[0] ?? '')
    .join('; ');
  const form = new URLSearchParams(authorizeUrl.searchParams);
  form.set('username', `orgs-user${++userCounter}@example.com`);
  form.set('decision', 'allow');
  const allowed = await fetch(new URL(authorizeUrl.pathname, authorizeUrl.origin), {
    method: 'POST',
    body: form,
    redirect: 'manual',
  });
  expect(allowed.status).toBe(302);
  const callbackUrl = new URL(allowed.headers.get('location') ?? '');
  canaries.add(callbackUrl.searchParams.get('code') ?? '');
  canaries.add(authorizeUrl.searchParams.get('state') ?? '');
  canaries.add(loginCookie.split('=')[1] ?? '');
  const callback = await fetch(callbackUrl, {
    headers: { cookie: loginCookie },
    redirect: 'manual',
  });
  expect(callback.status).toBe(302);
  const session = callback.headers
    .getSetCookie()
    .find((cookie) => cookie.startsWith('__Host-tb-session='));
  const handle = session?.split(';')[0]?.slice('__Host-tb-session='.length) ?? '';
  expect(handle).not.toBe('');
  canaries.add(handle);
  return { handle, authorizeUrl };
}

async function refresh(handle: string): Promise<Response> {
  const response = await fetch(`${server.url}/refresh`, {
    method: 'POST',
    headers: { authorization: `Bearer ${handle}` },
  });
  const body = (await response.clone().json()) as { access_token?: string };
  if (body.access_token) canaries.add(body.access_token);
  return response;
}

async function stored(handle: string) {
  return runtime.store.get(sessionKeyOf(handle));
}

afterAll(async () => {
  // The log-canary check of these flows (as test/integration/log-safety.test.ts does for
  // the others): no secret of either app, no handle, code, state or cookie in any line.
  const lines = log.entries.map((entry) => JSON.stringify(entry));
  for (const canary of canaries) {
    if (canary.length < 8) continue;
    expect(lines.filter((line) => line.includes(canary))).toEqual([]);
  }
});

describe('Login hosts per login', () => {
  it('logs in at each org host and refreshes at the host the connection logged in at', async () => {
    // Prepare: one login at each loopback org with the default app
    const atA = await logIn('return_to=/');
    const atB = await logIn('return_to=/&login_host=127.0.0.2');
    orgA.resetCalls();
    orgB.resetCalls();

    // Act
    const refreshedA = await refresh(atA.handle);
    const refreshedB = await refresh(atB.handle);
    const againB = await refresh(atB.handle);

    // Assert: each login went to its host, each refresh to the host its connection keeps
    expect(atA.authorizeUrl.origin).toBe(orgA.url);
    expect(atB.authorizeUrl.origin).toBe(orgB.url);
    expect(atB.authorizeUrl.searchParams.get('client_id')).toBe('fake-client-id');
    expect([refreshedA.status, refreshedB.status, againB.status]).toEqual([200, 200, 200]);
    expect(orgA.calls.tokenRefresh).toBe(1);
    expect(orgB.calls.tokenRefresh).toBe(2);
    expect(((await refreshedB.json()) as { instance_url: string }).instance_url).toBe(orgB.url);
    expect(await stored(atB.handle)).toMatchObject({
      loginHost: '127.0.0.2',
      salesforceApp: 'production',
      orgId: orgB.orgId,
    });
    expect(await stored(atA.handle)).toMatchObject({ loginHost: '127.0.0.1', orgId: orgA.orgId });
  });

  it('revokes at the host the connection logged in at', async () => {
    // Prepare
    const atB = await logIn('return_to=/&login_host=127.0.0.2');
    orgA.resetCalls();
    orgB.resetCalls();

    // Act
    const response = await fetch(`${server.url}/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${atB.handle}` },
    });

    // Assert
    expect(response.status).toBe(204);
    expect(orgB.calls.revoke).toBe(1);
    expect(orgA.calls.revoke).toBe(0);
  });

  it('starts a login at a My Domain host that matches a one-label wildcard', async () => {
    // Act: the redirect is not followed (no such host here)
    const response = await login('return_to=/&login_host=ACME.my.salesforce.com.');

    // Assert: canonical host, scheme and port of the configured login URL
    expect(response.status).toBe(302);
    const location = new URL(response.headers.get('location') ?? '');
    expect(location.host).toBe(`acme.my.salesforce.com:${new URL(orgA.url).port}`);
  });

  it.each([
    'evil-my.salesforce.com',
    'my.salesforce.com.evil.test',
    'acme.my.salesforce.com:444',
    'user@127.0.0.2',
    'a.b.my.salesforce.com',
    'my.salesforce.com',
    '127.0.0.3',
    '[::1]',
    'http://127.0.0.2',
    '127.0.0.2/path',
    '',
  ])('refuses login_host=%s with 400 invalid_request before any redirect', async (host) => {
    // Act
    const response = await login(`return_to=/&login_host=${encodeURIComponent(host)}`);

    // Assert
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
    expect(response.headers.getSetCookie()).toEqual([]);
    expect(await response.json()).toMatchObject({ error: 'invalid_request' });
    expect(orgA.calls.authorize + orgB.calls.authorize).toBe(0);
  });

  it('refuses the handoff of a registered app to a host not on the list, too', async () => {
    // Act
    const response = await login(
      'client_id=unknown&login_host=evil-my.salesforce.com&redirect_uri=http://127.0.0.1:9/cb',
    );

    // Assert: no redirect to the app or to Salesforce
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
  });
});

describe('Several connected apps in one deployment', () => {
  it('logs in with the named app and refreshes with that app’s own credentials', async () => {
    // Prepare
    const sandbox = await logIn('return_to=/&salesforce_app=sandbox');
    const production = await logIn('return_to=/&salesforce_app=production&login_host=127.0.0.2');
    orgB.resetCalls();

    // Act: the fake checks the client id and secret of each request
    const refreshedSandbox = await refresh(sandbox.handle);
    const refreshedProduction = await refresh(production.handle);

    // Assert
    expect(sandbox.authorizeUrl.origin).toBe(orgB.url);
    expect(sandbox.authorizeUrl.searchParams.get('client_id')).toBe(SANDBOX_APP.clientId);
    expect(production.authorizeUrl.searchParams.get('client_id')).toBe('fake-client-id');
    expect(refreshedSandbox.status).toBe(200);
    expect(refreshedProduction.status).toBe(200);
    expect(orgB.calls.tokenRefresh).toBe(2);
    expect(await stored(sandbox.handle)).toMatchObject({
      salesforceApp: 'sandbox',
      loginHost: '127.0.0.2',
    });
  });

  it('refuses an app that is not configured with 400 invalid_request', async () => {
    // Act
    const response = await login('return_to=/&salesforce_app=staging');

    // Assert
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
    expect(await response.json()).toMatchObject({ error: 'invalid_request' });
  });

  it('re-reads only the rejected app’s secret on invalid_client', async () => {
    // Prepare: both apps' secrets are cached (their logins read them); then the sandbox
    // app's secret rotates at Salesforce and in Secrets Manager
    const sandbox = await logIn('return_to=/&salesforce_app=sandbox');
    const production = await logIn('return_to=/');
    const rotated = 'sandbox-secret-rotated-91f0';
    canaries.add(rotated);
    orgA.setClientSecret(rotated, SANDBOX_APP.clientId);
    orgB.setClientSecret(rotated, SANDBOX_APP.clientId);
    stack.secretsManager.putSecret(
      SANDBOX_SECRET_ID,
      JSON.stringify({ client_id: SANDBOX_APP.clientId, client_secret: rotated }),
    );
    const readsBefore = stack.secretsManager.calls.GetSecretValue ?? 0;

    // Act
    const refreshedSandbox = await refresh(sandbox.handle);
    const readsAfterSandbox = stack.secretsManager.calls.GetSecretValue ?? 0;
    const refreshedProduction = await refresh(production.handle);
    const readsAfterProduction = stack.secretsManager.calls.GetSecretValue ?? 0;

    // Assert: one re-read (the sandbox app's), none for the production app
    expect(refreshedSandbox.status).toBe(200);
    expect(refreshedProduction.status).toBe(200);
    expect(readsAfterSandbox - readsBefore).toBe(1);
    expect(readsAfterProduction).toBe(readsAfterSandbox);
    expect(log.entries.some((entry) => entry.attributes?.event === 'invalid_client_retry')).toBe(
      true,
    );
  });
});
