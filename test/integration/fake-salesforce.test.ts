import { createHash, createHmac, createPublicKey, randomBytes, verify } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { checksumSuffix } from '../../local/fake-salesforce/ids.ts';
import { CODE_TTL_MS, OrgState } from '../../local/fake-salesforce/state.ts';
import {
  type FakeSalesforce,
  type FakeSalesforceOptions,
  startFakeSalesforce,
} from '../../local/fake-salesforce.ts';

const CLIENT_ID = 'fake-client-id';
const SECRET = 'fake-client-secret';
const REDIRECT = 'https://app.example.com/callback';

type Json = Record<string, unknown>;

const running: FakeSalesforce[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((f) => f.close()));
});

async function start(options: FakeSalesforceOptions = {}): Promise<FakeSalesforce> {
  const fake = await startFakeSalesforce(options);
  running.push(fake);
  return fake;
}

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: Json;
}

async function answer(res: Response): Promise<Answer> {
  const text = await res.text();
  let json: Json = {};
  try {
    json = JSON.parse(text) as Json;
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, text, json };
}

async function tokenRequest(
  fake: FakeSalesforce,
  params: Record<string, string>,
  init: { signal?: AbortSignal; secret?: string } = {},
): Promise<Answer> {
  const body = new URLSearchParams({
    client_id: CLIENT_ID,
    client_secret: init.secret ?? SECRET,
    ...params,
  });
  const res = await fetch(`${fake.url}/services/oauth2/token`, {
    method: 'POST',
    body,
    ...(init.signal ? { signal: init.signal } : {}),
  });
  return answer(res);
}

function refresh(fake: FakeSalesforce, refreshToken: string): Promise<Answer> {
  return tokenRequest(fake, { grant_type: 'refresh_token', refresh_token: refreshToken });
}

function authorizeUrl(fake: FakeSalesforce, params: Record<string, string>): string {
  const u = new URL('/services/oauth2/authorize', fake.url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

function authorizeParams(challenge: string, extra: Record<string, string> = {}) {
  return {
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT,
    scope: 'api refresh_token',
    state: 'st-123',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...extra,
  };
}

/** Posts the login form as a browser would (hidden fields + the pressed button). */
async function submitLogin(
  fake: FakeSalesforce,
  params: Record<string, string>,
  decision: 'allow' | 'deny',
): Promise<URL> {
  const res = await fetch(`${fake.url}/services/oauth2/authorize`, {
    method: 'POST',
    body: new URLSearchParams({ ...params, username: 'demo@example.com', decision }),
    redirect: 'manual',
  });
  expect(res.status).toBe(302);
  return new URL(res.headers.get('location') ?? '');
}

async function login(
  fake: FakeSalesforce,
  extra: Record<string, string> = {},
): Promise<{ code: string; verifier: string }> {
  const { verifier, challenge } = pkce();
  const location = await submitLogin(fake, authorizeParams(challenge, extra), 'allow');
  return { code: location.searchParams.get('code') ?? '', verifier };
}

function exchange(fake: FakeSalesforce, code: string, verifier: string): Promise<Answer> {
  return tokenRequest(fake, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: REDIRECT,
    code_verifier: verifier,
  });
}

function expectSignatureValid(body: Json, secret: string): void {
  const expected = createHmac('sha256', secret)
    .update(`${String(body.id)}${String(body.issued_at)}`)
    .digest('base64');
  expect(body.signature).toBe(expected);
}

async function restQuery(fake: FakeSalesforce, accessToken: string): Promise<Answer> {
  const res = await fetch(`${fake.url}/services/data/v65.0/query?q=SELECT+Id,Name+FROM+Account`, {
    headers: { authorization: `Bearer ${accessToken}` },
  });
  return answer(res);
}

describe('fake Salesforce: authorize', () => {
  it('renders an escaped login page with the parameters as hidden fields', async () => {
    const fake = await start({ username: 'o"neil@example.com' });
    const { challenge } = pkce();
    const res = await fetch(
      authorizeUrl(fake, authorizeParams(challenge, { state: '"><script>x</script>' })),
      { redirect: 'manual' },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await res.text();
    expect(html).toContain('<form method="POST" action="/services/oauth2/authorize">');
    expect(html).toContain('value="o&quot;neil@example.com"');
    expect(html).toContain('name="state" value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;"');
    expect(html).not.toContain('<script>');
    expect(html).toContain(`name="code_challenge" value="${challenge}"`);
    expect(html).toMatch(/<button[^>]*value="allow"[^>]*>Allow<\/button>/);
    expect(html).toMatch(/<button[^>]*value="deny"[^>]*>Deny<\/button>/);
    expect(fake.calls.authorize).toBe(1);
  });

  it('shows an error page (no redirect) for an unknown client or redirect_uri', async () => {
    const fake = await start({ redirectUris: [REDIRECT] });
    const { challenge } = pkce();
    const cases: Record<string, string>[] = [
      { client_id: 'nope' },
      { redirect_uri: 'https://evil.example.com/callback' },
    ];
    for (const extra of cases) {
      const res = await fetch(authorizeUrl(fake, authorizeParams(challenge, extra)), {
        redirect: 'manual',
      });
      expect(res.status).toBe(400);
      expect(res.headers.get('location')).toBeNull();
      expect(await res.text()).toMatch(/invalid_client_id|redirect_uri_mismatch/);
    }
    const open = await start();
    const bad = await fetch(
      authorizeUrl(open, authorizeParams(challenge, { redirect_uri: 'javascript:alert(1)' })),
      { redirect: 'manual' },
    );
    expect(bad.status).toBe(400);
  });

  it('redirects with error=invalid_request when PKCE is missing', async () => {
    const fake = await start();
    const params: Record<string, string> = authorizeParams('');
    delete params.code_challenge;
    const res = await fetch(authorizeUrl(fake, params), { redirect: 'manual' });
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get('location') ?? '');
    expect(location.origin + location.pathname).toBe(REDIRECT);
    expect(location.searchParams.get('error')).toBe('invalid_request');
    expect(location.searchParams.get('state')).toBe('st-123');
  });

  it('answers Allow with code + state and Deny with access_denied', async () => {
    const fake = await start();
    const { challenge } = pkce();
    const allowed = await submitLogin(fake, authorizeParams(challenge), 'allow');
    expect(allowed.searchParams.get('code')).toMatch(/^aPrx.+==$/);
    expect(allowed.searchParams.get('state')).toBe('st-123');

    const res = await fetch(`${fake.url}/services/oauth2/authorize`, {
      method: 'POST',
      body: new URLSearchParams({ ...authorizeParams(challenge), decision: 'deny' }),
      redirect: 'manual',
    });
    expect(res.headers.get('location')).toBe(
      `${REDIRECT}?error=access_denied&error_description=end-user+denied+authorization&state=st-123`,
    );
    expect(fake.calls.authorize).toBe(2);
  });

  it('autoApprove redirects at once with a code', async () => {
    const fake = await start({ autoApprove: true });
    const { verifier, challenge } = pkce();
    const res = await fetch(authorizeUrl(fake, authorizeParams(challenge)), { redirect: 'manual' });
    expect(res.status).toBe(302);
    const code = new URL(res.headers.get('location') ?? '').searchParams.get('code') ?? '';
    const tokens = await exchange(fake, code, verifier);
    expect(tokens.status).toBe(200);
  });
});

describe('fake Salesforce: code exchange', () => {
  it('returns a Salesforce-shaped, signed token response', async () => {
    const fake = await start();
    const { code, verifier } = await login(fake);
    const res = await exchange(fake, code, verifier);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('cache-control')).toContain('no-store');
    const body = res.json;
    expect(body.access_token).toMatch(new RegExp(`^${fake.orgId.slice(0, 15)}!AQ`));
    expect(body.refresh_token).toMatch(/^5Aep861/);
    expect(body.scope).toBe('api refresh_token');
    expect(body.instance_url).toBe(fake.url);
    expect(body.id).toMatch(new RegExp(`^${fake.url}/id/${fake.orgId}/005\\w{15}$`));
    expect(body.token_type).toBe('Bearer');
    expect(body.issued_at).toMatch(/^\d{13}$/);
    expect(Math.abs(Number(body.issued_at) - Date.now())).toBeLessThan(5000);
    expect(body).not.toHaveProperty('expires_in');
    expect(body).toHaveProperty('api_instance_url');
    expectSignatureValid(body, SECRET);
    expect(fake.orgId).toMatch(/^00D\w{15}$/);
    expect(fake.orgId.slice(15)).toBe(checksumSuffix(fake.orgId.slice(0, 15)));
    expect(fake.isRefreshTokenActive(String(body.refresh_token))).toBe(true);
    expect(fake.calls).toMatchObject({ token: 1, tokenCode: 1, tokenRefresh: 0 });
  });

  it('rejects a bad verifier, a replayed code and a different redirect_uri', async () => {
    const fake = await start();
    const first = await login(fake);
    const bad = await exchange(fake, first.code, pkce().verifier);
    expect(bad.status).toBe(400);
    expect(bad.json).toEqual({
      error: 'invalid_grant',
      error_description: 'invalid code verifier',
    });
    // the code was burnt by the failed attempt
    const replayAfterFailure = await exchange(fake, first.code, first.verifier);
    expect(replayAfterFailure.json.error_description).toBe('expired authorization code');

    const second = await login(fake);
    expect((await exchange(fake, second.code, second.verifier)).status).toBe(200);
    const replay = await exchange(fake, second.code, second.verifier);
    expect(replay.status).toBe(400);
    expect(replay.json).toEqual({
      error: 'invalid_grant',
      error_description: 'expired authorization code',
    });

    const third = await login(fake);
    const mismatch = await tokenRequest(fake, {
      grant_type: 'authorization_code',
      code: third.code,
      redirect_uri: 'https://app.example.com/other',
      code_verifier: third.verifier,
    });
    expect(mismatch.json.error).toBe('redirect_uri_mismatch');
  });

  it('issues no refresh token when the scope lacks refresh_token/offline_access', async () => {
    const fake = await start();
    const noRefresh = await login(fake, { scope: 'api full' });
    const res = await exchange(fake, noRefresh.code, noRefresh.verifier);
    expect(res.status).toBe(200);
    expect(res.json).not.toHaveProperty('refresh_token');
    expect(res.json.scope).toBe('api full');

    const offline = await login(fake, { scope: 'api offline_access' });
    const res2 = await exchange(fake, offline.code, offline.verifier);
    expect(res2.json.refresh_token).toMatch(/^5Aep861/);
  });

  it('accepts HTTP Basic client credentials', async () => {
    const fake = await start();
    const { code, verifier } = await login(fake);
    const res = await fetch(`${fake.url}/services/oauth2/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${SECRET}`).toString('base64')}`,
      },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        redirect_uri: REDIRECT,
        code_verifier: verifier,
      }),
    });
    expect(res.status).toBe(200);
  });

  it('adds a verifiable RS256 id_token for openid', async () => {
    const fake = await start();
    const { code, verifier } = await login(fake, {
      scope: 'openid api refresh_token',
      nonce: 'n1',
    });
    const res = await exchange(fake, code, verifier);
    const [header, payload, signature] = String(res.json.id_token).split('.');
    const jwks = (await (await fetch(`${fake.url}/id/keys`)).json()) as { keys: Json[] };
    const key = createPublicKey({ key: jwks.keys[0] as never, format: 'jwk' });
    expect(
      verify(
        'sha256',
        Buffer.from(`${header}.${payload}`),
        key,
        Buffer.from(signature ?? '', 'base64url'),
      ),
    ).toBe(true);
    const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as Json;
    expect(claims).toMatchObject({ aud: CLIENT_ID, iss: fake.url, sub: res.json.id, nonce: 'n1' });
  });

  it('answers client and grant errors like Salesforce', async () => {
    const fake = await start();
    const { refreshToken } = fake.seedGrant();
    const wrongId = await tokenRequest(fake, {
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: 'other',
    });
    expect(wrongId.status).toBe(400);
    expect(wrongId.json).toEqual({
      error: 'invalid_client_id',
      error_description: 'client identifier invalid',
    });
    const grant = await tokenRequest(fake, { grant_type: 'password' });
    expect(grant.json.error).toBe('unsupported_grant_type');
    const get = await fetch(`${fake.url}/services/oauth2/token`);
    expect(get.status).toBe(400);
  });

  it('answers invalid_client after the secret rotates, and signs with the new secret', async () => {
    const fake = await start();
    const { refreshToken } = fake.seedGrant();
    fake.setClientSecret('new-secret');
    const old = await refresh(fake, refreshToken);
    expect(old.status).toBe(400);
    expect(old.headers.get('content-type')).toMatch(/^application\/json/);
    expect(old.json).toEqual({
      error: 'invalid_client',
      error_description: 'invalid client credentials',
    });
    expect(fake.isRefreshTokenActive(refreshToken)).toBe(true);
    const ok = await tokenRequest(
      fake,
      { grant_type: 'refresh_token', refresh_token: refreshToken },
      { secret: 'new-secret' },
    );
    expect(ok.status).toBe(200);
    expectSignatureValid(ok.json, 'new-secret');
  });
});

describe('fake Salesforce: refresh', () => {
  it('rotates: new refresh token, the old one stops working at once', async () => {
    const fake = await start();
    const seeded = fake.seedGrant();
    const r1 = await refresh(fake, seeded.refreshToken);
    expect(r1.status).toBe(200);
    const rt2 = String(r1.json.refresh_token);
    expect(rt2).toMatch(/^5Aep861/);
    expect(rt2).not.toBe(seeded.refreshToken);
    expect(r1.json.id).toBe(seeded.id);
    expectSignatureValid(r1.json, SECRET);
    expect(fake.isRefreshTokenActive(seeded.refreshToken)).toBe(false);
    expect(fake.isRefreshTokenActive(rt2)).toBe(true);
    expect((await refresh(fake, rt2)).status).toBe(200);
    expect(fake.calls.tokenRefresh).toBe(2);
  });

  it('without rotation: no refresh_token in the answer, the same token keeps working', async () => {
    const fake = await start({ rotation: false });
    const { refreshToken } = fake.seedGrant();
    for (let i = 0; i < 3; i++) {
      const res = await refresh(fake, refreshToken);
      expect(res.status).toBe(200);
      expect(res.json).not.toHaveProperty('refresh_token');
    }
    expect(fake.isRefreshTokenActive(refreshToken)).toBe(true);
  });

  it('reuse detection: a rotated-out token revokes the whole family', async () => {
    const fake = await start();
    const seeded = fake.seedGrant();
    const r1 = await refresh(fake, seeded.refreshToken);
    const current = String(r1.json.refresh_token);
    const access = String(r1.json.access_token);
    expect((await restQuery(fake, access)).status).toBe(200);

    const reuse = await refresh(fake, seeded.refreshToken);
    expect(reuse.status).toBe(400);
    expect(reuse.json).toEqual({
      error: 'invalid_grant',
      error_description: 'expired access/refresh token',
    });
    expect(fake.reuseRevocations).toBe(1);
    expect(fake.isRefreshTokenActive(current)).toBe(false);
    expect((await refresh(fake, current)).json.error).toBe('invalid_grant');
    expect((await restQuery(fake, access)).status).toBe(401);
    expect((await restQuery(fake, seeded.accessToken)).status).toBe(401);
    // a second reuse does not count again: the family is already gone
    await refresh(fake, seeded.refreshToken);
    expect(fake.reuseRevocations).toBe(1);
  });

  it('without reuse detection a rotated-out token just fails', async () => {
    const fake = await start({ reuseDetection: false });
    const seeded = fake.seedGrant();
    const current = String((await refresh(fake, seeded.refreshToken)).json.refresh_token);
    expect((await refresh(fake, seeded.refreshToken)).json.error).toBe('invalid_grant');
    expect(fake.isRefreshTokenActive(current)).toBe(true);
    expect(fake.reuseRevocations).toBe(0);
  });

  it('concurrency block: a parallel refresh with the same token is refused, not a reuse', async () => {
    const fake = await start({ tokenLatencyMs: 150 });
    const { refreshToken } = fake.seedGrant();
    const first = refresh(fake, refreshToken);
    await new Promise((r) => setTimeout(r, 30));
    const second = await refresh(fake, refreshToken);
    const winner = await first;
    expect(winner.status).toBe(200);
    expect(second.status).toBe(400);
    expect(second.json).toEqual({
      error: 'invalid_grant',
      error_description: 'token request is already being processed',
    });
    expect(fake.reuseRevocations).toBe(0);
    expect(fake.isRefreshTokenActive(String(winner.json.refresh_token))).toBe(true);
  });

  it('without the concurrency block, parallel refreshes trip reuse detection', async () => {
    const fake = await start({ tokenLatencyMs: 100, concurrencyBlock: false });
    const { refreshToken } = fake.seedGrant();
    const [a, b] = await Promise.all([refresh(fake, refreshToken), refresh(fake, refreshToken)]);
    expect([a.status, b.status].sort()).toEqual([200, 400]);
    const winner = a.status === 200 ? a : b;
    expect(fake.reuseRevocations).toBe(1);
    expect(fake.isRefreshTokenActive(String(winner.json.refresh_token))).toBe(false);
  });

  it('approvals limit: one approval too many revokes the oldest family of that user', async () => {
    const fake = await start({ approvalsLimit: 2 });
    const a = fake.seedGrant();
    const b = fake.seedGrant();
    const other = fake.seedGrant({ userId: '005000000000001AAA' });
    expect(other.userId).toBe('005000000000001AAA');
    expect(fake.isRefreshTokenActive(a.refreshToken)).toBe(true);
    const { code, verifier } = await login(fake);
    const c = await exchange(fake, code, verifier);
    expect(fake.isRefreshTokenActive(a.refreshToken)).toBe(false);
    expect((await refresh(fake, a.refreshToken)).json.error_description).toBe(
      'expired access/refresh token',
    );
    expect((await restQuery(fake, a.accessToken)).status).toBe(401);
    expect(fake.isRefreshTokenActive(b.refreshToken)).toBe(true);
    expect(fake.isRefreshTokenActive(String(c.json.refresh_token))).toBe(true);
    expect(fake.isRefreshTokenActive(other.refreshToken)).toBe(true);
    expect(fake.reuseRevocations).toBe(0);
  });

  it('answers 413 to an oversized body', async () => {
    const fake = await start();
    const res = await fetch(`${fake.url}/services/oauth2/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', pad: 'x'.repeat(70_000) }),
    });
    expect(res.status).toBe(413);
  });

  it('rejects unknown refresh tokens', async () => {
    const fake = await start();
    const res = await refresh(fake, '5Aep861unknown');
    expect(res.json).toEqual({
      error: 'invalid_grant',
      error_description: 'expired access/refresh token',
    });
  });
});

describe('fake Salesforce: faults', () => {
  it('status faults (JSON or text) are consumed in order, `times` times', async () => {
    const fake = await start();
    const { refreshToken } = fake.seedGrant({ scope: 'api' });
    fake.inject({ endpoint: 'token', kind: 'status', status: 500, times: 2 });
    fake.inject({
      endpoint: 'token',
      kind: 'status',
      status: 429,
      body: 'Too many requests',
      contentType: 'text/plain',
    });
    const a = await refresh(fake, refreshToken);
    const b = await refresh(fake, refreshToken);
    const c = await refresh(fake, refreshToken);
    expect([a.status, b.status, c.status]).toEqual([500, 500, 429]);
    expect(a.headers.get('content-type')).toMatch(/json/);
    expect(c.text).toBe('Too many requests');
    expect(c.headers.get('content-type')).toBe('text/plain');
    // nothing was processed: the token is still the current one
    expect(fake.isRefreshTokenActive(refreshToken)).toBe(true);
    expect((await refresh(fake, refreshToken)).status).toBe(200);
    expect(fake.calls.token).toBe(4);
  });

  it('maintenance answers 503 with an HTML page', async () => {
    const fake = await start();
    const { refreshToken } = fake.seedGrant();
    fake.inject({ endpoint: 'token', kind: 'maintenance' });
    const res = await refresh(fake, refreshToken);
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.text).toMatch(/maintenance/i);
  });

  it('error faults answer 400 with the given error', async () => {
    const fake = await start();
    const { refreshToken } = fake.seedGrant();
    fake.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_grant',
      description: 'authentication failure',
    });
    const res = await refresh(fake, refreshToken);
    expect(res.status).toBe(400);
    expect(res.json).toEqual({
      error: 'invalid_grant',
      error_description: 'authentication failure',
    });
  });

  it('delay answers normally after the delay; an aborted request is never processed', async () => {
    const fake = await start();
    const { refreshToken } = fake.seedGrant();
    fake.inject({ endpoint: 'token', kind: 'delay', ms: 120 });
    const t0 = Date.now();
    const res = await refresh(fake, refreshToken);
    expect(res.status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);

    const rt = String(res.json.refresh_token);
    fake.inject({ endpoint: 'token', kind: 'delay', ms: 200 });
    const aborted = tokenRequest(
      fake,
      { grant_type: 'refresh_token', refresh_token: rt },
      { signal: AbortSignal.timeout(50) },
    );
    await expect(aborted).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 220));
    expect(fake.isRefreshTokenActive(rt)).toBe(true);
  });

  it('drop-after-rotate rotates, then closes the socket without an answer', async () => {
    const fake = await start();
    const { refreshToken } = fake.seedGrant();
    fake.inject({ endpoint: 'token', kind: 'drop-after-rotate' });
    await expect(refresh(fake, refreshToken)).rejects.toThrow();
    expect(fake.isRefreshTokenActive(refreshToken)).toBe(false);
    // retrying with the old token is now a reuse
    expect((await refresh(fake, refreshToken)).json.error).toBe('invalid_grant');
    expect(fake.reuseRevocations).toBe(1);
  });

  it('malformed-json, missing-field, bad-signature and foreign-instance-url', async () => {
    const fake = await start({ rotation: false });
    const { refreshToken } = fake.seedGrant();
    fake.inject({ endpoint: 'token', kind: 'malformed-json' });
    fake.inject({ endpoint: 'token', kind: 'missing-field', field: 'access_token' });
    fake.inject({ endpoint: 'token', kind: 'bad-signature' });
    fake.inject({ endpoint: 'token', kind: 'foreign-instance-url', url: 'https://evil.example' });

    const malformed = await refresh(fake, refreshToken);
    expect(malformed.status).toBe(200);
    expect(() => JSON.parse(malformed.text)).toThrow();

    const missing = await refresh(fake, refreshToken);
    expect(missing.status).toBe(200);
    expect(missing.json).not.toHaveProperty('access_token');
    expect(missing.json).toHaveProperty('signature');

    const badSig = await refresh(fake, refreshToken);
    expect(badSig.json.signature).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(() => expectSignatureValid(badSig.json, SECRET)).toThrow();

    const foreign = await refresh(fake, refreshToken);
    expect(foreign.json.instance_url).toBe('https://evil.example');
    expectSignatureValid(foreign.json, SECRET);

    const normal = await refresh(fake, refreshToken);
    expect(normal.json.instance_url).toBe(fake.url);
  });

  it('introspect faults: a status, maintenance and a delay, each taken once, in order', async () => {
    // Prepare
    const fake = await start();
    const { accessToken } = fake.seedGrant();
    fake.inject({ endpoint: 'introspect', kind: 'status', status: 500 });
    fake.inject({ endpoint: 'introspect', kind: 'maintenance' });
    fake.inject({ endpoint: 'introspect', kind: 'delay', ms: 150 });
    const introspect = () =>
      fetch(`${fake.url}/services/oauth2/introspect`, {
        method: 'POST',
        body: new URLSearchParams({
          token: accessToken,
          token_type_hint: 'access_token',
          client_id: CLIENT_ID,
          client_secret: SECRET,
        }),
      });

    // Act
    const failed = await introspect();
    const down = await introspect();
    const started = Date.now();
    const slow = await answer(await introspect());
    const slowMs = Date.now() - started;
    const normal = await answer(await introspect());

    // Assert
    expect(failed.status).toBe(500);
    expect(down.status).toBe(503);
    expect(down.headers.get('content-type')).toMatch(/text\/html/);
    expect(slow.json.active).toBe(true);
    expect(slowMs).toBeGreaterThanOrEqual(140);
    expect(normal.json.active).toBe(true);
    expect(fake.calls.introspect).toBe(4);
  });

  it('revoke faults and clearFaults', async () => {
    const fake = await start();
    const { refreshToken } = fake.seedGrant();
    fake.inject({ endpoint: 'revoke', kind: 'maintenance' });
    fake.inject({ endpoint: 'revoke', kind: 'status', status: 500 });
    const revoke = () =>
      fetch(`${fake.url}/services/oauth2/revoke`, {
        method: 'POST',
        body: new URLSearchParams({ token: refreshToken }),
      });
    expect((await revoke()).status).toBe(503);
    fake.clearFaults();
    expect((await revoke()).status).toBe(200);
    expect(fake.calls.revoke).toBe(2);
    expect(() => fake.inject({ endpoint: 'token', kind: 'maintenance', times: 0 })).toThrow();
  });
});

describe('fake Salesforce: revoke, introspect, identity, REST', () => {
  async function introspect(fake: FakeSalesforce, token: string): Promise<Answer> {
    const res = await fetch(`${fake.url}/services/oauth2/introspect`, {
      method: 'POST',
      body: new URLSearchParams({
        token,
        token_type_hint: 'access_token',
        client_id: CLIENT_ID,
        client_secret: SECRET,
      }),
    });
    return answer(res);
  }

  async function revoke(fake: FakeSalesforce, token: string): Promise<Answer> {
    const res = await fetch(`${fake.url}/services/oauth2/revoke`, {
      method: 'POST',
      body: new URLSearchParams({ token }),
    });
    return answer(res);
  }

  it('introspects active tokens in seconds and inactive ones as active:false', async () => {
    const fake = await start();
    const seeded = fake.seedGrant();
    const res = await introspect(fake, seeded.accessToken);
    const now = Math.floor(Date.now() / 1000);
    expect(res.json).toMatchObject({
      active: true,
      scope: 'api refresh_token',
      client_id: CLIENT_ID,
      username: 'demo@example.com',
      sub: seeded.id,
      token_type: 'access_token',
    });
    expect(Math.abs(Number(res.json.iat) - now)).toBeLessThan(5);
    expect(res.json.nbf).toBe(res.json.iat);
    expect(Number(res.json.exp) - Number(res.json.iat)).toBe(7200);
    expect((await introspect(fake, seeded.refreshToken)).json.token_type).toBe('refresh_token');
    expect((await introspect(fake, 'nope')).json).toEqual({ active: false });
    expect(fake.calls.introspect).toBe(3);
  });

  it('introspect requires the client credentials, in the body or as HTTP Basic', async () => {
    // Prepare
    const fake = await start();
    const seeded = fake.seedGrant();
    const post = (body: Record<string, string>, headers: Record<string, string> = {}) =>
      fetch(`${fake.url}/services/oauth2/introspect`, {
        method: 'POST',
        headers,
        body: new URLSearchParams({ token: seeded.accessToken, ...body }),
      }).then(answer);
    const basic = `Basic ${Buffer.from(`${CLIENT_ID}:${SECRET}`).toString('base64')}`;

    // Act
    const anonymous = await post({});
    const wrongSecret = await post({ client_id: CLIENT_ID, client_secret: 'not-the-secret' });
    const viaBasic = await post({}, { authorization: basic });

    // Assert
    expect(anonymous.status).toBe(400);
    expect(anonymous.json.error).toBe('invalid_client_id');
    expect(wrongSecret.status).toBe(400);
    expect(wrongSecret.json.error).toBe('invalid_client');
    expect(viaBasic.status).toBe(200);
    expect(viaBasic.json).toMatchObject({ active: true, token_type: 'access_token' });
    expect(fake.calls.introspect).toBe(3);
  });

  it('revoking a refresh token revokes its access tokens; a second revoke is invalid_token', async () => {
    const fake = await start();
    const seeded = fake.seedGrant();
    const other = fake.seedGrant();
    const res = await revoke(fake, seeded.refreshToken);
    expect(res.status).toBe(200);
    expect(res.text).toBe('');
    expect(fake.isRefreshTokenActive(seeded.refreshToken)).toBe(false);
    expect((await restQuery(fake, seeded.accessToken)).status).toBe(401);
    expect((await introspect(fake, seeded.accessToken)).json).toEqual({ active: false });
    const again = await revoke(fake, seeded.refreshToken);
    expect(again.status).toBe(400);
    expect(again.json).toEqual({ error: 'invalid_token', error_description: 'invalid token' });
    // the other approval is untouched
    expect((await restQuery(fake, other.accessToken)).status).toBe(200);
  });

  it('revoking an access token revokes only that token', async () => {
    const fake = await start();
    const seeded = fake.seedGrant();
    expect((await revoke(fake, seeded.accessToken)).status).toBe(200);
    expect((await restQuery(fake, seeded.accessToken)).status).toBe(401);
    expect(fake.isRefreshTokenActive(seeded.refreshToken)).toBe(true);
  });

  it('userinfo and the identity URL need a valid bearer token', async () => {
    const fake = await start();
    const seeded = fake.seedGrant();
    const auth = { authorization: `Bearer ${seeded.accessToken}` };
    const info = await answer(
      await fetch(`${fake.url}/services/oauth2/userinfo`, { headers: auth }),
    );
    expect(info.status).toBe(200);
    expect(info.json).toMatchObject({
      user_id: seeded.userId,
      organization_id: fake.orgId,
      preferred_username: 'demo@example.com',
      sub: seeded.id,
    });
    const id = await answer(await fetch(seeded.id, { headers: auth }));
    expect(id.status).toBe(200);
    expect(id.json).toMatchObject({
      id: seeded.id,
      user_id: seeded.userId,
      username: 'demo@example.com',
    });
    expect((await fetch(seeded.id)).status).toBe(401);
    expect(
      (
        await fetch(`${fake.url}/services/oauth2/userinfo`, {
          headers: { authorization: 'Bearer x' },
        })
      ).status,
    ).toBe(401);
    expect(fake.calls).toMatchObject({ userinfo: 2, identity: 2 });
  });

  it('REST: versions, query, and 401 INVALID_SESSION_ID once tokens expire', async () => {
    const fake = await start();
    const seeded = fake.seedGrant();
    const versions = (await (await fetch(`${fake.url}/services/data`)).json()) as Json[];
    expect(versions).toContainEqual({
      label: "Winter '26",
      url: '/services/data/v65.0',
      version: '65.0',
    });
    const ok = await restQuery(fake, seeded.accessToken);
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ totalSize: 1, done: true });
    const record = (ok.json.records as Json[])[0] as Json;
    expect(record).toMatchObject({ attributes: { type: 'Account' }, Name: 'Acme' });
    expect(record.Id).toMatch(/^001\w{15}$/);
    const byId = await fetch(`${fake.url}${(record.attributes as { url: string }).url}`, {
      headers: { authorization: `Bearer ${seeded.accessToken}` },
    });
    expect(byId.status).toBe(200);

    fake.expireAccessTokens();
    const expired = await restQuery(fake, seeded.accessToken);
    expect(expired.status).toBe(401);
    expect(JSON.parse(expired.text)).toEqual([
      { message: 'Session expired or invalid', errorCode: 'INVALID_SESSION_ID' },
    ]);
    // a refresh gives a working token again
    const fresh = await refresh(fake, seeded.refreshToken);
    expect((await restQuery(fake, String(fresh.json.access_token))).status).toBe(200);
    expect(fake.calls.rest).toBe(5);
    fake.resetCalls();
    expect(fake.calls.rest).toBe(0);
    expect(fake.calls.token).toBe(0);
  });

  it('REST refuses a session without the api scope', async () => {
    const fake = await start();
    const seeded = fake.seedGrant({ scope: 'id refresh_token' });
    const res = await restQuery(fake, seeded.accessToken);
    expect(res.status).toBe(401);
    expect(res.text).toContain('This session is not valid for use with the REST API');
  });

  it('access tokens expire after accessTokenTtlMs', async () => {
    const fake = await start({ accessTokenTtlMs: 60 });
    const seeded = fake.seedGrant();
    expect((await restQuery(fake, seeded.accessToken)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 80));
    expect((await restQuery(fake, seeded.accessToken)).status).toBe(401);
  });
});

describe('fake Salesforce: lifecycle and clock-driven rules', () => {
  it('close() ends keep-alive connections and pending latency', async () => {
    const fake = await startFakeSalesforce({ tokenLatencyMs: 10_000 });
    const { refreshToken } = fake.seedGrant();
    await fetch(`${fake.url}/services/data`); // leaves a keep-alive socket
    const pending = refresh(fake, refreshToken).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 20));
    const t0 = Date.now();
    await fake.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(await pending).toBeInstanceOf(Error);
  });

  it('authorization codes expire after 15 minutes', () => {
    let now = 1_700_000_000_000;
    const state = new OrgState({
      orgId: '00D000000000001AAA',
      rotation: true,
      reuseDetection: true,
      approvalsLimit: 5,
      accessTokenTtlMs: 1000,
      now: () => now,
    });
    const user = state.userByName('demo@example.com');
    const issue = () =>
      state.issueCode({
        clientId: 'c',
        redirectUri: REDIRECT,
        codeChallenge: null,
        scope: 'api',
        user,
        nonce: null,
      });
    const fresh = issue();
    now += CODE_TTL_MS - 1;
    const args = { clientId: 'c', redirectUri: REDIRECT, codeVerifier: null };
    expect(state.exchangeCode({ ...args, code: fresh }).ok).toBe(true);
    const stale = issue();
    now += CODE_TTL_MS;
    expect(state.exchangeCode({ ...args, code: stale })).toMatchObject({
      ok: false,
      error: 'invalid_grant',
      description: 'expired authorization code',
    });
  });
});
