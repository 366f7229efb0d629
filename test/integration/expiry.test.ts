/**
 * Access token expiry (README "Access token expiry"): introspection at the fake Salesforce
 * after each refresh and login, the expiry stored on the version it belongs to, `expires_at`
 * in the answers of `/refresh` and the service token route, the refresh margin, the
 * `introspection` setting, and introspection failures that never fail the refresh.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeSalesforce } from '../../local/fake-salesforce.ts';
import type { RunningBroker } from '../../local/start.ts';
import { type BrokerHarness, readJson, startBrokerHarness } from '../support/broker-harness.ts';
import { browserLogin } from '../support/browser-login.ts';
import { startBrokerWithOrg } from '../support/local-broker-with-org.ts';

/** The fake's access token lifetime: its introspection says `exp` = issue + this. */
const TOKEN_TTL_MS = 2 * 60 * 60 * 1000;

/** `exp` of a token issued between `before` and `after`, as whole seconds. */
function expectExpiryOfTokenIssuedBetween(expiresAt: unknown, before: number, after: number) {
  expect(typeof expiresAt).toBe('number');
  expect(expiresAt).toBeGreaterThanOrEqual(Math.floor((before + TOKEN_TTL_MS) / 1000) - 1);
  expect(expiresAt).toBeLessThanOrEqual(Math.ceil((after + TOKEN_TTL_MS) / 1000));
}

const numberOf = (item: Record<string, unknown> | undefined, name: string) => {
  const value = (item?.[name] as { N?: string } | undefined)?.N;
  return value === undefined ? undefined : Number(value);
};

describe('expiry awareness (introspection on, the default)', () => {
  let broker: BrokerHarness;

  beforeAll(async () => {
    broker = await startBrokerHarness({
      salesforce: { accessTokenTtlMs: TOKEN_TTL_MS },
      // A long reuse window, so the margin is what decides inside it.
      env: { REUSE_WINDOW_SECONDS: '600' },
    });
  }, 60_000);
  afterAll(async () => {
    await broker?.close();
  });
  beforeEach(() => {
    broker.stack.salesforce?.clearFaults();
    broker.stack.salesforce?.resetCalls();
  });
  const fake = () => broker.stack.salesforce as FakeSalesforce;

  it('a refresh answers expires_at from introspection and stores it on the new version', async () => {
    // Prepare
    const session = await broker.seedSession();
    const before = Date.now();

    // Act
    const answer = await broker.refresh(session.handle, { version: 1 });
    const after = Date.now();
    const body = await readJson(answer);

    // Assert
    expect(answer.status).toBe(200);
    expect(body.version).toBe(2);
    expectExpiryOfTokenIssuedBetween(body.expires_at, before, after);
    expect(fake().calls.introspect).toBe(1);
    const item = await broker.rawItem(session.handle);
    expect(numberOf(item, 'version')).toBe(2);
    expect(Math.floor((numberOf(item, 'accessTokenExpiresAt') ?? 0) / 1000)).toBe(body.expires_at);
  });

  it('a stored token is answered with its stored expiry, and the next commit clears it', async () => {
    // Prepare: version 2 with its expiry, well after the margin.
    const session = await broker.seedSession();
    const first = await readJson(await broker.refresh(session.handle, { version: 1 }));
    fake().resetCalls();

    // Act: inside the reuse window, without a hint; then a refresh whose introspection fails.
    const reused = await readJson(await broker.refresh(session.handle));
    fake().inject({ endpoint: 'introspect', kind: 'status', status: 500 });
    const refreshed = await broker.refresh(session.handle, { version: 2 });
    const refreshedBody = await readJson(refreshed);

    // Assert: the reuse made no call; the failed introspection left version 3 without one.
    expect(reused.version).toBe(2);
    expect(reused.expires_at).toBe(first.expires_at);
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(refreshed.status).toBe(200);
    expect(refreshedBody.version).toBe(3);
    expect(refreshedBody.expires_at).toBeUndefined();
    const item = await broker.rawItem(session.handle);
    expect(numberOf(item, 'accessTokenExpiresAt')).toBeUndefined();
  });

  it('introspection failing or stalling never fails the refresh: 200 without expires_at, counted and logged without the token', async () => {
    // Prepare
    const stalled = await broker.seedSession();
    const failed = await broker.seedSession();
    const metricBefore = broker.metrics.get('IntrospectionFailed') ?? 0;

    // Act
    fake().inject({ endpoint: 'introspect', kind: 'delay', ms: 10_000 });
    const slow = await broker.refresh(stalled.handle, { version: 1 });
    fake().inject({ endpoint: 'introspect', kind: 'maintenance' });
    const down = await broker.refresh(failed.handle, { version: 1 });

    // Assert
    for (const answer of [slow, down]) {
      const body = await readJson(answer);
      expect(answer.status).toBe(200);
      expect(body.version).toBe(2);
      expect(body.expires_at).toBeUndefined();
    }
    expect(broker.metrics.get('IntrospectionFailed')).toBe(metricBefore + 2);
    const failures = broker.log.entries.filter(
      (entry) => entry.attributes.event === 'introspection_failed',
    );
    expect(failures.length).toBeGreaterThanOrEqual(2);
    const logs = broker.log.text();
    for (const secret of [stalled.accessToken, stalled.refreshToken, stalled.handle]) {
      expect(logs).not.toContain(secret);
    }
  });

  it('without a hint, a stored token expiring within refreshMarginSeconds is refreshed, one further out is returned', async () => {
    // Prepare: two sessions refreshed a moment ago (inside the 600 s reuse window).
    const expiring = await broker.seedSession();
    const lasting = await broker.seedSession();
    await broker.refresh(expiring.handle, { version: 1 });
    await broker.refresh(lasting.handle, { version: 1 });
    const now = Date.now();
    await broker.patchItem(expiring.handle, { accessTokenExpiresAt: { N: String(now + 60_000) } });
    await broker.patchItem(lasting.handle, {
      accessTokenExpiresAt: { N: String(now + 3_600_000) },
    });
    fake().resetCalls();

    // Act
    const soon = await readJson(await broker.refresh(expiring.handle));
    const later = await readJson(await broker.refresh(lasting.handle));

    // Assert: one upstream call, for the token about to expire.
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(soon.version).toBe(3);
    expect(later.version).toBe(2);
    expect(later.expires_at).toBe(Math.floor((now + 3_600_000) / 1000));
  });

  it("the service API's token route answers expires_at too", async () => {
    // Prepare: last refreshed before the reuse window, so the route refreshes.
    const session = await broker.seedSession({ committedAgoMs: 700_000 });
    const before = Date.now();

    // Act
    const answer = await broker.service.fetch(`/connections/${session.connectionId}/token`, {
      method: 'POST',
    });
    const body = await readJson(answer);

    // Assert
    expect(answer.status).toBe(200);
    expectExpiryOfTokenIssuedBetween(body.expires_at, before, Date.now());
  });
});

describe('expiry awareness turned off (introspection: false)', () => {
  let broker: BrokerHarness;

  beforeAll(async () => {
    broker = await startBrokerHarness({ env: { INTROSPECTION: 'false' } });
  }, 60_000);
  afterAll(async () => {
    await broker?.close();
  });

  it('makes no introspection call and answers no expires_at', async () => {
    // Prepare
    const session = await broker.seedSession();
    broker.stack.salesforce?.resetCalls();

    // Act
    const answer = await broker.refresh(session.handle, { version: 1 });
    const body = await readJson(answer);

    // Assert
    expect(answer.status).toBe(200);
    expect(body.expires_at).toBeUndefined();
    expect(broker.stack.salesforce?.calls.introspect).toBe(0);
    expect(broker.stack.salesforce?.calls.tokenRefresh).toBe(1);
  });
});

describe('expiry awareness after a login (npm start)', () => {
  const EVENTS_FILE = join(tmpdir(), `broker-expiry-events-${process.pid}.jsonl`);
  let org: FakeSalesforce;
  let running: RunningBroker;
  let base: string;
  const saved = { ...process.env };

  beforeAll(async () => {
    ({
      org,
      broker: running,
      base,
    } = await startBrokerWithOrg({
      clientId: 'expiry-client',
      clientSecret: 'expiry-secret',
      org: { accessTokenTtlMs: TOKEN_TTL_MS },
      env: { LOCAL_EVENTS_FILE: EVENTS_FILE, LOCAL_SWEEP_INTERVAL_SECONDS: '0' },
    }));
  }, 60_000);
  afterAll(async () => {
    await running?.close();
    await org?.close();
    rmSync(EVENTS_FILE, { force: true });
    process.env = saved;
  });

  it('the login introspects its token, so the first /refresh inside the reuse window answers its expires_at', async () => {
    // Prepare
    const before = Date.now();
    const { handle } = await browserLogin(base);
    const after = Date.now();
    const introspections = org.calls.introspect;

    // Act: no hint, inside the reuse window: the login's own token.
    const answer = await fetch(`${base}/refresh`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}` },
    });
    const body = (await answer.json()) as { version?: number; expires_at?: number };

    // Assert
    expect(answer.status).toBe(200);
    expect(body.version).toBe(1);
    expectExpiryOfTokenIssuedBetween(body.expires_at, before, after);
    expect(org.calls.tokenRefresh).toBe(0);
    expect(introspections).toBe(1);
  });
});
