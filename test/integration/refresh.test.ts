import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  APP_ORIGIN,
  type BrokerHarness,
  readJson,
  startBrokerHarness,
} from '../support/broker-harness.ts';

let broker: BrokerHarness;

beforeAll(async () => {
  broker = await startBrokerHarness({
    // Rotation and reuse detection on: a second upstream call with a rotated-out token
    // would revoke the family and show up in `reuseRevocations`.
    salesforce: {
      rotation: true,
      reuseDetection: true,
      concurrencyBlock: true,
      tokenLatencyMs: 30,
    },
    // Callers that arrive after a refresh and within this window get its token. 5 s (the
    // default) is shorter than 200 parallel callers can take on a loaded machine; a late one
    // would then rightly refresh again. Seeded sessions were committed 60 s ago, outside it.
    env: { REUSE_WINDOW_SECONDS: '30' },
  });
});

afterAll(async () => {
  await broker?.close();
});

beforeEach(() => {
  broker.stack.salesforce?.clearFaults();
  broker.stack.salesforce?.resetCalls();
  broker.stack.kms.clearFaults();
  broker.stack.secretsManager.clearFaults();
});

const fake = () => {
  const salesforce = broker.stack.salesforce;
  if (!salesforce) throw new Error('no fake Salesforce');
  return salesforce;
};

describe('POST /refresh: single flight', () => {
  it('coalesces 50 parallel calls on one session into one token-endpoint call', async () => {
    // Prepare
    const session = await broker.seedSession();

    // Act
    const responses = await Promise.all(
      Array.from({ length: 50 }, () => broker.refresh(session.handle)),
    );
    const bodies = await Promise.all(responses.map((response) => readJson(response)));

    // Assert
    expect(responses.map((response) => response.status)).toEqual(Array(50).fill(200));
    expect(fake().calls.tokenRefresh).toBe(1);
    const tokens = new Set(bodies.map((body) => body.access_token));
    expect(tokens.size).toBe(1);
    expect(tokens.has(session.accessToken)).toBe(false);
    expect(new Set(bodies.map((body) => body.version))).toEqual(new Set([2]));
    expect(bodies[0]).toMatchObject({ token_type: 'Bearer', instance_url: fake().url });
    expect(bodies[0]?.issued_at).toMatch(/^\d{13}$/);
    expect(responses[0]?.headers.get('cache-control')).toBe('no-store');
    expect(fake().reuseRevocations).toBe(0);
    expect(fake().isRefreshTokenActive(session.refreshToken)).toBe(false);

    // The session keeps working: the caller says version 2 is dead.
    const next = await broker.refresh(session.handle, { version: 2 });
    expect(next.status).toBe(200);
    expect((await readJson(next)).version).toBe(3);
    expect(fake().calls.tokenRefresh).toBe(2);
    expect(fake().reuseRevocations).toBe(0);
  });

  it('makes exactly one upstream call per session for 10 sessions x 20 interleaved callers', async () => {
    const sessions = await Promise.all(Array.from({ length: 10 }, () => broker.seedSession()));

    const calls = Array.from({ length: 200 }, (_, index) => {
      const session = sessions[index % 10];
      if (!session) throw new Error('unreachable');
      return broker.refresh(session.handle).then(async (response) => ({
        status: response.status,
        body: await readJson(response),
        session: index % 10,
      }));
    });
    const results = await Promise.all(calls);

    expect(results.every((result) => result.status === 200)).toBe(true);
    expect(fake().calls.tokenRefresh).toBe(10);
    for (let index = 0; index < 10; index++) {
      const tokens = new Set(
        results.filter((r) => r.session === index).map((r) => r.body.access_token),
      );
      expect(tokens.size).toBe(1);
    }
    expect(fake().reuseRevocations).toBe(0);
  });

  it('returns the stored token without an upstream call when the hint is older', async () => {
    const session = await broker.seedSession();
    await broker.refresh(session.handle);
    fake().resetCalls();

    const response = await broker.refresh(session.handle, { version: 1 });

    expect(response.status).toBe(200);
    expect((await readJson(response)).version).toBe(2);
    expect(fake().calls.token).toBe(0);
  });

  it('returns a token committed within the reuse window as is', async () => {
    const session = await broker.seedSession({ committedAgoMs: 0 });

    const response = await broker.refresh(session.handle);

    expect(await readJson(response)).toMatchObject({
      access_token: session.accessToken,
      version: 1,
    });
    expect(fake().calls.token).toBe(0);
  });
});

describe('POST /refresh: a holder that dies', () => {
  it('blocks refreshes until its lease ends, then the next caller refreshes', async () => {
    // Prepare: a lease held by an invocation that crashed; it ends in 3 s
    const session = await broker.seedSession();
    const leaseUntil = Date.now() + 3000;
    await broker.patchItem(session.handle, {
      leaseOwner: { S: 'crashed-invocation' },
      leaseUntil: { N: String(leaseUntil) },
    });

    // Act: during the lease (the waiter gives up after its 2.5 s budget)
    const during = await broker.refresh(session.handle);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, leaseUntil - Date.now() + 50)));
    const after = await broker.refresh(session.handle);

    // Assert
    expect(during.status).toBe(503);
    expect(Number(during.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(after.status).toBe(200);
    expect((await readJson(after)).version).toBe(2);
    expect(fake().calls.tokenRefresh).toBe(1);
  });
});

describe('POST /refresh: errors from Salesforce', () => {
  it('answers 401 reauthentication_required on invalid_grant and deletes the session', async () => {
    const session = await broker.seedSession();
    fake().inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_grant',
      description: 'expired access/refresh token',
    });

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(401);
    expect(await readJson(response)).toMatchObject({ error: 'reauthentication_required' });
    expect(await broker.rawItem(session.handle)).toBeUndefined();
    // The handle comes back: its tombstone answers, with no second upstream call.
    const refreshCalls = fake().calls.tokenRefresh;
    const again = await broker.refresh(session.handle);
    expect(again.status).toBe(401);
    expect(await readJson(again)).toMatchObject({ error: 'reauthentication_required' });
    expect(fake().calls.tokenRefresh).toBe(refreshCalls);
  });

  it.each([
    ['HTTP 503 with JSON', { endpoint: 'token', kind: 'status', status: 503 } as const],
    ['HTTP 500', { endpoint: 'token', kind: 'status', status: 500 } as const],
    ['HTTP 429', { endpoint: 'token', kind: 'status', status: 429 } as const],
    ['an HTML maintenance page', { endpoint: 'token', kind: 'maintenance' } as const],
    ['a timeout', { endpoint: 'token', kind: 'delay', ms: 2500 } as const],
    [
      'the concurrency block',
      {
        endpoint: 'token',
        kind: 'error',
        error: 'invalid_grant',
        description: 'token request is already being processed',
      } as const,
    ],
  ])('answers 503 with Retry-After on %s and keeps the refresh token', async (_name, fault) => {
    const session = await broker.seedSession();
    fake().inject(fault);

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(503);
    expect(await readJson(response)).toMatchObject({ error: 'temporarily_unavailable' });
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const stored = await broker.stored(session.handle);
    expect(stored).toMatchObject({ version: 1, tokens: { refreshToken: session.refreshToken } });
    expect(fake().isRefreshTokenActive(session.refreshToken)).toBe(true);
  });

  it('re-reads the secret once on invalid_client, then answers 502', async () => {
    const session = await broker.seedSession();
    fake().setClientSecret('rotated-at-salesforce-only');
    const readsBefore = broker.stack.secretsManager.calls.GetSecretValue ?? 0;

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(502);
    expect(await readJson(response)).toMatchObject({ error: 'upstream_misconfigured' });
    expect((broker.stack.secretsManager.calls.GetSecretValue ?? 0) - readsBefore).toBe(1);
    expect(fake().calls.tokenRefresh).toBe(2);
    expect(await broker.stored(session.handle)).toMatchObject({ version: 1 });
    expect(broker.log.events()).toContain('upstream_misconfigured');
  });

  it('picks up a rotated secret on invalid_client and succeeds', async () => {
    const session = await broker.seedSession();
    fake().setClientSecret('new-secret');
    broker.stack.secretsManager.putSecret(
      broker.stack.secretId,
      JSON.stringify({ client_id: 'fake-client-id', client_secret: 'new-secret' }),
    );

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(200);
    expect(fake().calls.tokenRefresh).toBe(2);
  });
});

describe('POST /refresh: stored data integrity', () => {
  it('refuses a ciphertext copied from another session', async () => {
    const victim = await broker.seedSession();
    const attacker = await broker.seedSession();
    const victimItem = (await broker.rawItem(victim.handle)) as Record<string, { B: Uint8Array }>;
    await broker.patchItem(attacker.handle, {
      ciphertext: { B: victimItem.ciphertext?.B ?? new Uint8Array() },
      encryptedDataKey: { B: victimItem.encryptedDataKey?.B ?? new Uint8Array() },
    });

    const response = await broker.refresh(attacker.handle);

    expect(response.status).toBe(401);
    expect(await readJson(response)).toMatchObject({ error: 'invalid_session' });
    expect(fake().calls.token).toBe(0);
    expect(broker.log.events()).toContain('integrity_error');
  });

  it('refuses a ciphertext with a flipped bit', async () => {
    const session = await broker.seedSession();
    const item = (await broker.rawItem(session.handle)) as Record<string, { B: Uint8Array }>;
    const tampered = Buffer.from(item.ciphertext?.B ?? new Uint8Array());
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    await broker.patchItem(session.handle, { ciphertext: { B: tampered } });

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(401);
    expect(fake().calls.token).toBe(0);
  });
});

describe('POST /refresh: bad input', () => {
  const post = (headers: Record<string, string>, body?: string, method = 'POST') =>
    fetch(`${broker.server.url}/refresh`, {
      method,
      headers,
      ...(body === undefined ? {} : { body }),
    });

  it.each([
    ['no credential', {}, undefined, 401, 'invalid_session'],
    ['a garbage bearer', { authorization: 'Bearer garbage' }, undefined, 401, 'invalid_session'],
    [
      'a non-bearer scheme',
      { authorization: 'Basic Zm9vOmJhcg==' },
      undefined,
      401,
      'invalid_session',
    ],
    [
      'a garbage cookie',
      { cookie: '__Host-tb-session=%00%ff', 'x-csrf': '1' },
      undefined,
      401,
      'invalid_session',
    ],
    [
      'an unknown handle',
      { authorization: `Bearer ${'A'.repeat(43)}` },
      undefined,
      401,
      'invalid_session',
    ],
    [
      'the cookie without X-CSRF',
      { cookie: `__Host-tb-session=${'A'.repeat(43)}` },
      undefined,
      403,
      'csrf_check_failed',
    ],
    [
      'the cookie from a foreign Origin',
      {
        cookie: `__Host-tb-session=${'A'.repeat(43)}`,
        'x-csrf': '1',
        origin: 'https://evil.example',
      },
      undefined,
      403,
      'csrf_check_failed',
    ],
  ])('%s', async (_name, headers, body, status, error) => {
    const response = await post(headers, body);

    expect(response.status).toBe(status);
    expect(await readJson(response)).toMatchObject({
      error,
      error_description: expect.any(String),
    });
    expect(fake().calls.token).toBe(0);
  });

  it.each([
    ['non-JSON', 'version=1', 400],
    ['a JSON array', '[1]', 400],
    ['a string version', '{"version":"1"}', 400],
    ['a negative version', '{"version":-1}', 400],
    ['an oversized body', JSON.stringify({ version: 1, pad: 'x'.repeat(17_000) }), 413],
  ])('rejects %s', async (_name, body, status) => {
    const session = await broker.seedSession();

    const response = await broker.refresh(session.handle, body);

    expect(response.status).toBe(status);
    expect(await readJson(response)).toMatchObject({ error: 'invalid_request' });
    expect(fake().calls.token).toBe(0);
  });

  it('answers 405 with Allow for GET', async () => {
    const response = await post({}, undefined, 'GET');

    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST');
    expect(await readJson(response)).toMatchObject({ error: 'method_not_allowed' });
  });

  it('accepts the cookie with X-CSRF and an allowed Origin', async () => {
    const session = await broker.seedSession();

    const response = await post({
      cookie: `__Host-tb-session=${session.handle}`,
      'x-csrf': '1',
      origin: APP_ORIGIN,
    });

    expect(response.status).toBe(200);
  });
});

describe('Logs', () => {
  it('never contain a token, the client secret or a session handle', async () => {
    const session = await broker.seedSession();
    fake().inject({ endpoint: 'token', kind: 'status', status: 503 });
    await broker.refresh(session.handle);
    const ok = await broker.refresh(session.handle);
    const body = await readJson(ok);
    fake().inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_grant',
      description: 'expired access/refresh token',
    });
    await broker.refresh(session.handle, { version: body.version });

    const text = broker.log.text();

    expect(broker.log.entries.length).toBeGreaterThan(3);
    for (const secret of [
      session.handle,
      session.refreshToken,
      session.accessToken,
      body.access_token,
      'fake-client-secret',
    ]) {
      expect(text).not.toContain(secret);
    }
  });
});

describe('CORS for browser apps on an allowed origin', () => {
  const preflight = (origin: string) =>
    fetch(`${broker.server.url}/refresh`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'x-csrf, content-type',
      },
    });

  it('answers the preflight of an allowed origin with exact, credentialed headers', async () => {
    const response = await preflight(APP_ORIGIN);

    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
    expect(response.headers.get('access-control-allow-credentials')).toBe('true');
    expect(response.headers.get('access-control-allow-methods')).toBe('POST');
    expect(response.headers.get('access-control-allow-headers')).toContain('x-csrf');
    expect(response.headers.get('vary')).toContain('Origin');
  });

  it('refuses the preflight of a foreign origin', async () => {
    const response = await preflight('https://evil.example');

    expect(response.status).toBe(403);
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
    expect(await readJson(response)).toMatchObject({ error: 'csrf_check_failed' });
  });

  it('marks real answers for the allowed origin only', async () => {
    const session = await broker.seedSession();
    const cookie = `__Host-tb-session=${session.handle}`;

    const allowed = await broker.refresh(session.handle, undefined, { origin: APP_ORIGIN });
    const foreign = await fetch(`${broker.server.url}/refresh`, {
      method: 'POST',
      headers: { cookie, 'x-csrf': '1', origin: 'https://evil.example' },
    });

    expect(allowed.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
    expect(foreign.status).toBe(403);
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();
  });
});
