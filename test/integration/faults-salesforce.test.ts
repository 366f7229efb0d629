import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LEASE_SKEW_MS } from '../../functions/broker/refresh-decision.ts';
import { sessionKeyOf } from '../../functions/broker/session-handle.ts';
import type { FakeFault } from '../../local/fake-salesforce.ts';
import { type BrokerHarness, readJson, startBrokerHarness } from '../support/broker-harness.ts';
import {
  closedPortUrl,
  extraBroker,
  fakeOf,
  resetFaultsAndCaptures,
  sessionState,
  startSilentServer,
  startSlowProxy,
} from '../support/fault-kit.ts';

/**
 * Salesforce faults over real HTTP (fake Salesforce, dynalite, KMS and Secrets Manager
 * emulators). Each case checks the answer, what the store holds afterwards and what the
 * fake counted. Cases already in refresh.test.ts (503 JSON, 500, 429, maintenance page,
 * delay, one concurrency block, expired refresh token, invalid_client) are not repeated.
 */
let broker: BrokerHarness;

beforeAll(async () => {
  broker = await startBrokerHarness({
    salesforce: {
      rotation: true,
      reuseDetection: true,
      concurrencyBlock: true,
      tokenLatencyMs: 20,
    },
  });
});

afterAll(async () => {
  await broker?.close();
});

beforeEach(() => resetFaultsAndCaptures(broker));

const fake = () => fakeOf(broker);

const untouched = { exists: true, version: 1, keepsSeededToken: true, storedTokenActive: true };

describe('Salesforce cannot be reached', () => {
  it('answers 503 when nothing listens on the login host (connection refused)', async () => {
    // Prepare
    const session = await broker.seedSession();
    const elsewhere = await extraBroker(broker, { SALESFORCE_LOGIN_URL: await closedPortUrl() });

    // Act
    const response = await elsewhere.refresh(session.handle);

    // Assert
    expect(response.status).toBe(503);
    expect(await readJson(response)).toMatchObject({ error: 'temporarily_unavailable' });
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      ...untouched,
      leaseHeld: false,
    });
    expect(fake().calls.token).toBe(0);
    await elsewhere.close();
  });

  it('gives up on a host that accepts the connection and never answers (read timeout)', async () => {
    const session = await broker.seedSession();
    const silent = await startSilentServer();
    const elsewhere = await extraBroker(broker, { SALESFORCE_LOGIN_URL: silent.url });
    const started = Date.now();

    const response = await elsewhere.refresh(session.handle);

    const elapsed = Date.now() - started;
    expect(response.status).toBe(503);
    expect(elapsed).toBeGreaterThanOrEqual(1400);
    expect(elapsed).toBeLessThan(3000);
    // The request may still be processed upstream: the lease stays until it runs out.
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      ...untouched,
      leaseHeld: true,
    });
    await Promise.all([elsewhere.close(), silent.close()]);
  });

  it('aborts after UPSTREAM_TIMEOUT_MS even when the lease would allow longer', async () => {
    // Prepare: 500 ms upstream timeout, a 3 s lease, Salesforce answering after 1.2 s
    const session = await broker.seedSession();
    const elsewhere = await extraBroker(broker, { UPSTREAM_TIMEOUT_MS: '500' });
    fake().inject({ endpoint: 'token', kind: 'delay', ms: 1200 });
    const started = Date.now();

    // Act
    const response = await elsewhere.refresh(session.handle);

    // Assert: the abort came at ~500 ms; the fake never processed the abandoned request
    const elapsed = Date.now() - started;
    expect(response.status).toBe(503);
    expect(elapsed).toBeLessThan(1100);
    expect(fake().calls.tokenRefresh).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 900));
    expect(await sessionState(broker, fake(), session)).toMatchObject(untouched);
    await elsewhere.close();
  });
});

describe('Salesforce answers with an error status', () => {
  it.each([
    ['502 with an HTML proxy page', 502, '<html><body>Bad Gateway</body></html>', 'text/html'],
    ['504 with an empty body', 504, '', 'text/plain'],
    ['400 that is not an OAuth error', 400, 'Bad Request', 'text/plain'],
    ['500 with a JSON error', 500, '{"error":"server_error"}', 'application/json'],
  ])('answers 503 on %s and keeps the session', async (_name, status, body, contentType) => {
    const session = await broker.seedSession();
    fake().inject({ endpoint: 'token', kind: 'status', status, body, contentType });

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(503);
    expect(await readJson(response)).toEqual({
      error: 'temporarily_unavailable',
      error_description: expect.any(String),
    });
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      ...untouched,
      leaseHeld: false,
    });
  });
});

describe('Salesforce says invalid_grant', () => {
  it.each([
    'token validity expired',
    'authentication failure',
    'inactive user',
    'inactive organization',
  ])(
    'answers 401 reauthentication_required on "%s" and deletes the session',
    async (description) => {
      const session = await broker.seedSession();
      fake().inject({ endpoint: 'token', kind: 'error', error: 'invalid_grant', description });

      const response = await broker.refresh(session.handle);

      expect(response.status).toBe(401);
      expect(await readJson(response)).toMatchObject({ error: 'reauthentication_required' });
      expect(await sessionState(broker, fake(), session)).toEqual({ exists: false });
      expect(fake().calls.tokenRefresh).toBe(1);
      expect(broker.log.events()).toContain('reauthentication_required');
    },
  );

  it.each(['ip restricted', 'invalid login hours'])(
    'answers 502 upstream_forbidden on "%s", keeps the session and raises the alarm event',
    async (description) => {
      // Prepare: 4 callers; Salesforce refuses the broker's IP (or the user's login hours)
      const session = await broker.seedSession();
      fake().inject({ endpoint: 'token', kind: 'error', error: 'invalid_grant', description });

      // Act
      const responses = await Promise.all(
        Array.from({ length: 4 }, () => broker.refresh(session.handle)),
      );

      // Assert: one upstream call, everyone shares its answer, nothing is deleted
      expect(responses.map((response) => response.status)).toEqual([502, 502, 502, 502]);
      const body = await readJson(responses[0] as Response);
      expect(body.error).toBe('upstream_forbidden');
      expect(body.error_description).toMatch(/IP restrictions/);
      expect(body.error_description).not.toContain(description);
      expect(fake().calls.tokenRefresh).toBe(1);
      expect(await sessionState(broker, fake(), session)).toMatchObject({
        ...untouched,
        leaseHeld: false,
      });
      const alarm = broker.log.entries.find(
        (entry) => entry.attributes.event === 'upstream_forbidden',
      );
      expect(alarm?.attributes.alarm).toBe(true);
      expect(broker.metrics.get('UpstreamForbidden')).toBe(1);
      expect(broker.log.events()).not.toContain('reauthentication_required');
    },
  );

  it.each<[string, FakeFault]>([
    [
      'a 400 rate_limit_exceeded',
      {
        endpoint: 'token',
        kind: 'error',
        error: 'rate_limit_exceeded',
        description: 'rate limit exceeded',
      },
    ],
    [
      'a 429 "Too Many Requests" page',
      {
        endpoint: 'token',
        kind: 'status',
        status: 429,
        body: '<html>Too Many Requests</html>',
        contentType: 'text/html',
      },
    ],
    [
      'invalid_grant "too many requests"',
      {
        endpoint: 'token',
        kind: 'error',
        error: 'invalid_grant',
        description: 'too many requests',
      },
    ],
  ])(
    '%s: 503 with Retry-After, session kept, never the misconfiguration alarm',
    async (_why, fault) => {
      const session = await broker.seedSession();
      fake().inject(fault);

      const response = await broker.refresh(session.handle);

      expect(response.status).toBe(503);
      expect(await readJson(response)).toMatchObject({ error: 'temporarily_unavailable' });
      expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(await sessionState(broker, fake(), session)).toMatchObject(untouched);
      expect(broker.metrics.get('UpstreamMisconfigured')).toBe(0);
      expect(broker.metrics.get('UpstreamError:rate_limited')).toBe(1);
      expect(broker.log.entries.some((entry) => entry.attributes.alarm === true)).toBe(false);
    },
  );

  it('invalid_client_credentials: one secret re-read, then 502 upstream_misconfigured', async () => {
    const session = await broker.seedSession();
    const readsBefore = broker.stack.secretsManager.calls.GetSecretValue ?? 0;
    const fault: FakeFault = {
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_client_credentials',
      description: 'client secret invalid',
      times: 2,
    };
    fake().inject(fault);

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(502);
    expect(await readJson(response)).toMatchObject({ error: 'upstream_misconfigured' });
    expect(fake().calls.tokenRefresh).toBe(2);
    expect(broker.log.events()).toContain('invalid_client_retry');
    expect(broker.stack.secretsManager.calls.GetSecretValue ?? 0).toBe(readsBefore + 1);
    expect(await sessionState(broker, fake(), session)).toMatchObject(untouched);
  });

  it('treats the concurrency block as transient for the holder and all its waiters', async () => {
    // Prepare: 6 callers, the holder's upstream call meets Salesforce's concurrency block
    const session = await broker.seedSession();
    fake().inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_grant',
      description: 'token request is already being processed',
    });

    // Act
    const responses = await Promise.all(
      Array.from({ length: 6 }, () => broker.refresh(session.handle)),
    );
    const retry = await broker.refresh(session.handle);

    // Assert: one upstream call, everybody 503, nothing deleted, the retry succeeds
    expect(responses.map((response) => response.status)).toEqual(Array(6).fill(503));
    expect(retry.status).toBe(200);
    expect(fake().calls.tokenRefresh).toBe(2);
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
    });
  });
});

describe('Salesforce answers 200 with a body the broker must not trust', () => {
  const cases: Array<[string, FakeFault, string]> = [
    ['malformed JSON', { endpoint: 'token', kind: 'malformed-json' }, 'upstream_unavailable'],
    [
      'no access_token',
      { endpoint: 'token', kind: 'missing-field', field: 'access_token' },
      'upstream_invalid_response',
    ],
    [
      'no signature',
      { endpoint: 'token', kind: 'missing-field', field: 'signature' },
      'upstream_invalid_response',
    ],
    [
      'no issued_at',
      { endpoint: 'token', kind: 'missing-field', field: 'issued_at' },
      'upstream_invalid_response',
    ],
    [
      'no instance_url',
      { endpoint: 'token', kind: 'missing-field', field: 'instance_url' },
      'upstream_invalid_response',
    ],
    ['a bad signature', { endpoint: 'token', kind: 'bad-signature' }, 'upstream_invalid_response'],
    [
      'a foreign instance_url',
      { endpoint: 'token', kind: 'foreign-instance-url', url: 'https://evil.example.com' },
      'upstream_invalid_response',
    ],
  ];

  it.each(cases)('answers 503 on %s and stores nothing from it', async (_name, fault, event) => {
    const session = await broker.seedSession();
    fake().inject(fault);

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(503);
    expect(await readJson(response)).toMatchObject({ error: 'temporarily_unavailable' });
    expect(broker.log.events()).toContain(event);
    // Nothing of the untrusted body was stored, and nothing was deleted. The fake had
    // already rotated before it spoiled the body, so the stored token is now dead there.
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 1,
      keepsSeededToken: true,
      storedTokenActive: false,
      leaseHeld: false,
    });
  });

  it('loses the session on the next refresh when the spoiled answer had rotated the token', async () => {
    // Prepare
    const session = await broker.seedSession();
    fake().inject({ endpoint: 'token', kind: 'bad-signature' });
    await broker.refresh(session.handle);
    const revocationsBefore = fake().reuseRevocations;

    // Act: the stored token was rotated out by the spoiled answer: Salesforce sees reuse
    const response = await broker.refresh(session.handle);

    // Assert
    expect(response.status).toBe(401);
    expect(await readJson(response)).toMatchObject({ error: 'reauthentication_required' });
    expect(fake().reuseRevocations - revocationsBefore).toBe(1);
    expect(await sessionState(broker, fake(), session)).toEqual({ exists: false });
  });
});

describe('answers lost after Salesforce rotated the token', () => {
  it('drop-after-rotate: 503 for every caller, then exactly this one session must log in again', async () => {
    // Prepare: 8 callers on one session, the holder's answer is lost after the rotation
    const session = await broker.seedSession();
    const bystander = await broker.seedSession();
    fake().inject({ endpoint: 'token', kind: 'drop-after-rotate' });
    const revocationsBefore = fake().reuseRevocations;

    // Act: the answer is lost, so the holder keeps its lease; a caller during it must not
    // send the rotated-out token, one after it meets Salesforce's reuse detection.
    const responses = await Promise.all(
      Array.from({ length: 8 }, () => broker.refresh(session.handle)),
    );
    const afterDrop = await sessionState(broker, fake(), session);
    const during = await broker.refresh(session.handle);
    const tokenCallsDuringLease = fake().calls.tokenRefresh;
    const leaseUntil = (await broker.runtime.store.get(sessionKeyOf(session.handle)))?.leaseUntil;
    await new Promise((resolve) =>
      setTimeout(resolve, (leaseUntil ?? Date.now()) - Date.now() + LEASE_SKEW_MS + 50),
    );
    const next = await broker.refresh(session.handle);
    const other = await broker.refresh(bystander.handle);

    // Assert
    expect(responses.map((response) => response.status)).toEqual(Array(8).fill(503));
    expect(afterDrop).toMatchObject({
      exists: true,
      version: 1,
      keepsSeededToken: true,
      storedTokenActive: false,
      leaseHeld: true,
    });
    expect(during.status).toBe(503);
    expect(Number(during.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(tokenCallsDuringLease).toBe(1);
    expect(next.status).toBe(401);
    expect(await readJson(next)).toMatchObject({ error: 'reauthentication_required' });
    expect(other.status).toBe(200);
    expect(fake().reuseRevocations - revocationsBefore).toBe(1);
    expect(fake().calls.tokenRefresh).toBe(3);
  });

  it('a response slower than the lease: 503 in time, and the late rotation costs the session', async () => {
    // Prepare: a proxy that delivers every token request 3.5 s late (after the 3 s lease),
    // even though the broker gave up at 1.5 s: Salesforce processing an abandoned request.
    const session = await broker.seedSession();
    const slow = await startSlowProxy(fake().url, 3500);
    const late = await extraBroker(broker, { SALESFORCE_LOGIN_URL: slow.url });
    const started = Date.now();

    // Act
    const responses = await Promise.all([
      late.refresh(session.handle),
      late.refresh(session.handle),
    ]);
    const answeredAfter = Date.now() - started;
    const beforeRotation = await sessionState(broker, fake(), session);
    await slow.settled();
    const afterRotation = await sessionState(broker, fake(), session);
    const next = await broker.refresh(session.handle);

    // Assert: both callers answered within the budget; one request reached Salesforce
    expect(responses.map((response) => response.status)).toEqual([503, 503]);
    expect(answeredAfter).toBeLessThan(3000);
    expect(slow.forwarded).toBe(1);
    expect(beforeRotation).toMatchObject({ ...untouched, leaseHeld: true });
    expect(afterRotation).toMatchObject({ exists: true, version: 1, storedTokenActive: false });
    expect(next.status).toBe(401);
    expect(await sessionState(broker, fake(), session)).toEqual({ exists: false });
    await Promise.all([late.close(), slow.close()]);
  });

  it('a delay longer than the lease that Salesforce never processes costs nothing', async () => {
    const session = await broker.seedSession();
    fake().inject({ endpoint: 'token', kind: 'delay', ms: 3500 });

    const responses = await Promise.all([
      broker.refresh(session.handle),
      broker.refresh(session.handle),
    ]);
    // The holders gave up at 1.5 s and kept the 3 s lease (plus the skew margin) as a fence.
    await new Promise((resolve) => setTimeout(resolve, 2100 + LEASE_SKEW_MS + 100));
    const next = await broker.refresh(session.handle);

    expect(responses.map((response) => response.status)).toEqual([503, 503]);
    expect(next.status).toBe(200);
    expect(fake().calls.tokenRefresh).toBe(2);
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
    });
  });
});

describe('Salesforce rejects the client credentials', () => {
  it('answers 502 on invalid_client_id after one secret re-read and keeps the session', async () => {
    const session = await broker.seedSession();
    fake().inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_client_id',
      description: 'client identifier invalid',
      times: 2,
    });

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(502);
    expect(await readJson(response)).toMatchObject({ error: 'upstream_misconfigured' });
    expect(fake().calls.tokenRefresh).toBe(2);
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      ...untouched,
      leaseHeld: false,
    });
  });

  it('recovers 12 parallel callers with one secret re-read after a rotation', async () => {
    // Prepare: the secret rotates at Salesforce and in Secrets Manager
    const session = await broker.seedSession();
    fake().setClientSecret('rotated-secret-2');
    broker.stack.secretsManager.putSecret(
      broker.stack.secretId,
      JSON.stringify({ client_id: 'fake-client-id', client_secret: 'rotated-secret-2' }),
    );
    const readsBefore = broker.stack.secretsManager.calls.GetSecretValue ?? 0;

    // Act
    const responses = await Promise.all(
      Array.from({ length: 12 }, () => broker.refresh(session.handle)),
    );

    // Assert
    expect(responses.map((response) => response.status)).toEqual(Array(12).fill(200));
    expect((broker.stack.secretsManager.calls.GetSecretValue ?? 0) - readsBefore).toBe(1);
    expect(fake().calls.tokenRefresh).toBe(2);
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
    });
  });
});

describe('while Salesforce is in maintenance', () => {
  it('keeps every session of a burst and recovers them all afterwards', async () => {
    // Prepare
    const sessions = await Promise.all(Array.from({ length: 5 }, () => broker.seedSession()));
    fake().inject({ endpoint: 'token', kind: 'maintenance', times: 5 });

    // Act
    const during = await Promise.all(sessions.map((session) => broker.refresh(session.handle)));
    const after = await Promise.all(sessions.map((session) => broker.refresh(session.handle)));

    // Assert
    expect(during.map((response) => response.status)).toEqual(Array(5).fill(503));
    expect(after.map((response) => response.status)).toEqual(Array(5).fill(200));
    expect(fake().calls.tokenRefresh).toBe(10);
    for (const session of sessions) {
      expect(await sessionState(broker, fake(), session)).toMatchObject({
        exists: true,
        version: 2,
        storedTokenActive: true,
      });
    }
  });
});
