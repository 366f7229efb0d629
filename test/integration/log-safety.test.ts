import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { codeChallengeS256, newCodeVerifier } from '../../functions/broker/pkce.ts';
import { createLogger } from '../../functions/http/observability.ts';
import { createCallbackHandler } from '../../functions/routes/callback.ts';
import { createLoginHandler } from '../../functions/routes/login.ts';
import { createTokenHandler } from '../../functions/routes/token.ts';
import { type BrokerHarness, readJson, startBrokerHarness } from '../support/broker-harness.ts';
import { httpEvent } from '../support/http-event.ts';

const APP_REDIRECT = 'com.example.app:/oauth2redirect';

/**
 * The production logger (Powertools, JSON lines on stdout) with canary values: whatever
 * the flow, no line may carry a token, the client secret or a session handle.
 */
describe('Production logs', () => {
  let broker: BrokerHarness;
  const lines: string[] = [];
  const clientSecret = 'canary-client-secret-8d1f';

  beforeAll(async () => {
    broker = await startBrokerHarness({
      salesforce: { clientSecret, rotation: true },
      log: createLogger('token-broker-test'),
      env: {
        CALLBACK_URL: 'https://broker.example.com/callback',
        CLIENT_APPS: JSON.stringify([{ client_id: 'ios', redirect_uris: [APP_REDIRECT] }]),
      },
    });
    // the stack seeds its secret from the fake's options
    broker.stack.secretsManager.putSecret(
      broker.stack.secretId,
      JSON.stringify({ client_id: 'fake-client-id', client_secret: clientSecret }),
    );
    // Powertools writes INFO to stdout and WARN/ERROR to stderr: capture both, print neither.
    for (const stream of [process.stdout, process.stderr]) {
      vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
        lines.push(String(chunk));
        return true;
      });
    }
  });

  afterAll(async () => {
    vi.restoreAllMocks();
    await broker?.close();
  });

  it('carry no canary value across success, failure and re-login flows', async () => {
    // Prepare
    const fake = broker.stack.salesforce;
    if (!fake) throw new Error('no fake');
    const session = await broker.seedSession();
    const seen: string[] = [
      session.handle,
      session.refreshToken,
      session.accessToken,
      clientSecret,
    ];

    // Act: a refresh, a 503, an invalid_client, an integrity failure, an invalid_grant
    const first = await readJson(await broker.refresh(session.handle));
    seen.push(first.access_token);
    const stored = await broker.stored(session.handle);
    if (stored) seen.push(stored.tokens.refreshToken);
    fake.inject({ endpoint: 'token', kind: 'maintenance' });
    await broker.refresh(session.handle, { version: first.version });
    fake.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_client',
      description: 'invalid client credentials',
      times: 2,
    });
    await broker.refresh(session.handle, { version: first.version });
    await broker.refresh(session.handle, {}, { cookie: `__Host-tb-session=${session.handle}` });
    const described = await fetch(`${broker.server.url}/session`, {
      headers: { authorization: `Bearer ${session.handle}` },
    });
    expect(described.status).toBe(200);
    fake.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_grant',
      description: 'expired access/refresh token',
    });
    await broker.refresh(session.handle, { version: first.version });
    // The ended grant's tombstone answers the handle.
    const tombstoned = await broker.refresh(session.handle);
    expect(await readJson(tombstoned)).toMatchObject({ error: 'reauthentication_required' });

    // Assert
    const output = lines.join('');
    expect(output).toContain('"level":"WARN"');
    expect(output).toContain('reauthentication_required');
    expect(output).toContain('session described');
    for (const line of output.split('\n').filter(Boolean)) {
      expect(() => JSON.parse(line)).not.toThrow();
    }
    for (const value of seen) {
      expect(output).not.toContain(value);
    }
  });

  it('carry no token when introspection fails, answers malformed or is refused', async () => {
    // Prepare
    const fake = broker.stack.salesforce;
    if (!fake) throw new Error('no fake');
    const session = await broker.seedSession();
    const seen: string[] = [session.handle, session.refreshToken, session.accessToken];
    lines.length = 0;

    // Act: each refresh reaches Salesforce; its introspection fails in another way.
    fake.inject({ endpoint: 'introspect', kind: 'status', status: 500 });
    fake.inject({
      endpoint: 'introspect',
      kind: 'status',
      status: 200,
      body: '{"active":true,"exp":"soon"}',
    });
    fake.inject({
      endpoint: 'introspect',
      kind: 'status',
      status: 400,
      body: '{"error":"invalid_request","error_description":"bad token"}',
    });
    let version = 1;
    for (let i = 0; i < 3; i++) {
      const answer = await readJson(await broker.refresh(session.handle, { version }));
      expect(answer.expires_at).toBeUndefined();
      seen.push(answer.access_token);
      version = answer.version;
    }
    const stored = await broker.stored(session.handle);
    if (stored) seen.push(stored.tokens.refreshToken);

    // Assert
    const output = lines.join('');
    expect(output.match(/introspection_failed/g)).toHaveLength(3);
    expect(version).toBe(4);
    for (const value of seen) {
      expect(output).not.toContain(value);
    }
  });

  it('carry no broker code, app state, verifier, challenge or handle of a handoff', async () => {
    // Prepare: a registered app's login in the system browser
    const fake = broker.stack.salesforce;
    if (!fake) throw new Error('no fake');
    const login = createLoginHandler(broker.runtime);
    const callback = createCallbackHandler(broker.runtime);
    const token = createTokenHandler(broker.runtime);
    const verifier = newCodeVerifier();
    const appState = `canary-app-state-${newCodeVerifier()}`;
    const challenge = codeChallengeS256(verifier);
    const handoffQuery = new URLSearchParams({
      client_id: 'ios',
      redirect_uri: APP_REDIRECT,
      state: appState,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    }).toString();
    lines.length = 0;

    // Act: /login, Allow, /callback, /token, a replay, a wrong verifier, refused /login calls
    const started = await login(
      httpEvent({ method: 'GET', path: '/login', rawQueryString: handoffQuery }),
    );
    const loginCookie = String(started.cookies?.[0]).split(';')[0] ?? '';
    const authorize = new URL(String(started.headers?.location));
    const form = new URLSearchParams(authorize.searchParams);
    form.set('username', 'handoff-canary@example.com');
    form.set('decision', 'allow');
    const approved = await fetch(new URL(authorize.pathname, fake.url), {
      method: 'POST',
      body: form,
      redirect: 'manual',
    });
    const back = new URL(approved.headers.get('location') ?? '');
    // The login's introspection fails too: its warning must carry nothing either.
    fake.inject({ endpoint: 'introspect', kind: 'maintenance' });
    const done = await callback(
      httpEvent({
        method: 'GET',
        path: '/callback',
        rawQueryString: back.search.slice(1),
        cookies: [loginCookie],
      }),
    );
    const location = String(done.headers?.location);
    const brokerCode =
      new URLSearchParams(location.slice(location.indexOf('?') + 1)).get('code') ?? '';
    const redeem = (codeVerifier: string) =>
      token(
        httpEvent({
          method: 'POST',
          path: '/token',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({
            grant_type: 'authorization_code',
            code: brokerCode,
            redirect_uri: APP_REDIRECT,
            client_id: 'ios',
            code_verifier: codeVerifier,
          }).toString(),
        }),
      );
    const redeemed = await redeem(verifier);
    const handle = (JSON.parse(String(redeemed.body)) as Record<string, string>).session_handle;
    const stored = await broker.stored(handle ?? '');
    await redeem(verifier);
    await redeem(newCodeVerifier());
    await login(
      httpEvent({
        method: 'GET',
        path: '/login',
        rawQueryString: handoffQuery.replace('client_id=ios', 'client_id=android'),
      }),
    );

    // Assert: the flow worked, and none of its values reached a line
    expect(redeemed.statusCode).toBe(200);
    expect(brokerCode).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const output = lines.join('');
    expect(output).toContain('code_replayed');
    expect(output).toContain('introspection_failed');
    const seen = [
      brokerCode,
      appState,
      verifier,
      challenge,
      handle ?? '',
      loginCookie.split('=')[1] ?? '',
      authorize.searchParams.get('state') ?? '',
      back.searchParams.get('code') ?? '',
      stored?.tokens.refreshToken ?? 'never-stored',
      stored?.tokens.accessToken ?? 'never-stored',
    ];
    for (const value of seen) {
      expect(value.length).toBeGreaterThan(15);
      expect(output).not.toContain(value);
    }
  });

  it('carry no token, SigV4 signature or secret of a service API call, and the audit line', async () => {
    // Prepare: a connection past its reuse window, a job signing its calls
    const fake = broker.stack.salesforce;
    if (!fake) throw new Error('no fake');
    const session = await broker.seedSession({ committedAgoMs: 60_000 });
    const id = session.connectionId;
    const other = await broker.seedSession();
    lines.length = 0;

    // Act: a token, a 403, the metadata, a listing, a failed revocation, offboarding
    const token = await readJson(
      await broker.service.fetch(`/connections/${id}/token`, { method: 'POST' }),
    );
    const stored = await broker.stored(session.handle);
    await broker.service.fetch(`/connections/${id}/token`, {
      method: 'POST',
      credentials: { ...broker.service.credentials, secretAccessKey: 'canary-wrong-secret-1f2e' },
    });
    await broker.service.fetch(`/connections/${id}`);
    await broker.service.fetch(`/connections?organization_id=${fake.orgId}&limit=5`);
    fake.inject({ endpoint: 'revoke', kind: 'status', status: 503 });
    await broker.service.fetch(`/connections/${other.connectionId}`, { method: 'DELETE' });
    await broker.service.fetch(`/connections?organization_id=${fake.orgId}`, {
      method: 'DELETE',
    });
    // The tombstones of the connections just ended, by id and by handle.
    const ended = await broker.service.fetch(`/connections/${other.connectionId}`);
    expect(await readJson(ended)).toMatchObject({ status: 'ended' });
    await broker.refresh(other.handle);

    // Assert: the audit lines name the caller and connection, and nothing secret
    const output = lines.join('');
    expect(output).toContain('"event":"service_call"');
    expect(output).toContain(id);
    expect(output).toContain('revoke_failed');
    const seen = [
      token.access_token,
      session.handle,
      session.refreshToken,
      session.accessToken,
      other.handle,
      other.refreshToken,
      stored?.tokens.refreshToken ?? 'never-stored',
      broker.service.credentials.secretAccessKey,
      'canary-wrong-secret-1f2e',
      clientSecret,
    ];
    for (const value of seen) {
      expect(value.length).toBeGreaterThan(15);
      expect(output).not.toContain(value);
    }
  });
});
