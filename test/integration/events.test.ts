/**
 * Events end to end, as `npm start` runs them (README "Events"): the request that causes
 * each one, through dynalite, the change capture's stream records and the deployed
 * publisher entry, to the event on the local EventBridge bus with its detail; and at least
 * once when the bus fails the publisher's `PutEvents` (whole calls and single entries).
 */
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RecordedEvent } from '../../local/eventbridge-emulator.ts';
import type { FakeSalesforce } from '../../local/fake-salesforce.ts';
import type { RunningBroker } from '../../local/start.ts';
import { browserLogin as loginInBrowser } from '../support/browser-login.ts';
import { handoffLogin, TEST_APP } from '../support/handoff-login.ts';
import { startBrokerWithOrg } from '../support/local-broker-with-org.ts';
import { signedFetch } from '../support/sigv4-client.ts';

const CLIENT_ID = 'events-client';
const CLIENT_SECRET = 'events-secret';
const EVENTS_FILE = join(tmpdir(), `broker-events-${process.pid}.jsonl`);

/** Every secret the flows below handled: no event may carry any of them. */
const canaries = new Set<string>([CLIENT_SECRET]);
let org: FakeSalesforce;
let broker: RunningBroker;
let base: string;
const saved = { ...process.env };

beforeAll(async () => {
  // Read by the entry files at their first use, as on Lambda.
  process.env.FAILING_AFTER_SECONDS = '1';
  ({ org, broker, base } = await startBrokerWithOrg({
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    env: { CLIENT_APPS: JSON.stringify([TEST_APP]), LOCAL_EVENTS_FILE: EVENTS_FILE },
  }));
}, 60_000);

afterAll(async () => {
  await broker?.close();
  await org?.close();
  rmSync(EVENTS_FILE, { force: true });
  process.env = saved;
});

beforeEach(() => {
  org.clearFaults();
  bus().clearFaults();
});

function bus() {
  const events = broker.stack.events;
  if (!events) throw new Error('npm start runs without events');
  return events.bus;
}

/** Every event published once all captured writes are delivered (retries included). */
async function published(): Promise<readonly RecordedEvent[]> {
  await broker.stack.events?.capture.drained();
  return bus().events;
}

async function eventsOf(connectionId: string, detailType?: string) {
  return (await published()).filter(
    (event) =>
      event.detail.connection_id === connectionId &&
      (detailType === undefined || event['detail-type'] === detailType),
  );
}

/** A browser login (auto-approved at the org); its handle joins the canaries. */
async function browserLogin(previousHandle?: string) {
  const login = await loginInBrowser(base, previousHandle);
  canaries.add(login.handle);
  return login;
}

/** `/refresh` with the version the caller holds, so it goes to Salesforce. */
async function refresh(handle: string, version = 1) {
  const answer = await fetch(`${base}/refresh`, {
    method: 'POST',
    headers: { authorization: `Bearer ${handle}`, 'content-type': 'application/json' },
    body: JSON.stringify({ version }),
  });
  const body = (await answer.clone().json()) as { access_token?: string };
  if (body.access_token) canaries.add(body.access_token);
  return answer;
}

describe('events, end to end (npm start)', () => {
  it('a login publishes Connection Created with the ids of the connection', async () => {
    // Act
    const { connectionId } = await browserLogin();

    // Assert
    const [created, ...more] = await eventsOf(connectionId, 'Connection Created');
    expect(more).toEqual([]);
    expect(created).toMatchObject({
      source: 'token-broker-local',
      detail: {
        connection_id: connectionId,
        organization_id: org.orgId,
        user_id: expect.stringMatching(/^005/),
      },
    });
    expect(new Date(String(created?.detail.at)).toISOString()).toBe(created?.detail.at);
    expect(typeof created?.detail.event_id).toBe('string');
  });

  it('a logout publishes Connection Ended (logout)', async () => {
    // Prepare
    const { handle, connectionId } = await browserLogin();

    // Act
    const logout = await fetch(`${base}/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}` },
    });

    // Assert
    expect(logout.status).toBe(204);
    // The handle its holder let go of answers as before; the id explains itself.
    const again = await refresh(handle);
    expect(((await again.json()) as { error: string }).error).toBe('invalid_session');
    const described = await signedFetch(`${base}/connections/${connectionId}`, broker.service);
    expect(await described.json()).toMatchObject({ status: 'ended', ended_reason: 'logout' });
    const ended = await eventsOf(connectionId, 'Connection Ended');
    expect(ended.map((event) => event.detail)).toEqual([
      expect.objectContaining({
        connection_id: connectionId,
        reason: 'logout',
        organization_id: org.orgId,
      }),
    ]);
  });

  it("the service API's DELETE publishes Connection Ended (service_api)", async () => {
    // Prepare
    const { connectionId } = await browserLogin();

    // Act
    const deleted = await signedFetch(`${base}/connections/${connectionId}`, {
      ...broker.service,
      method: 'DELETE',
    });

    // Assert
    expect(deleted.status).toBe(204);
    const ended = await eventsOf(connectionId, 'Connection Ended');
    expect(ended.map((event) => event.detail.reason)).toEqual(['service_api']);
  });

  it("Salesforce's invalid_grant publishes Connection Ended (reauthentication_required) with its error", async () => {
    // Prepare
    const { handle, connectionId } = await browserLogin();
    org.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_grant',
      description: 'expired access/refresh token',
    });

    // Act
    const answer = await refresh(handle);

    // Assert
    expect(answer.status).toBe(401);
    const ended = await eventsOf(connectionId, 'Connection Ended');
    expect(ended.map((event) => event.detail)).toEqual([
      expect.objectContaining({
        reason: 'reauthentication_required',
        salesforce_error: 'invalid_grant',
        salesforce_error_description: 'expired access/refresh token',
      }),
    ]);
  });

  it('a new login replacing the browser session publishes Connection Ended (replaced)', async () => {
    // Prepare
    const first = await browserLogin();

    // Act
    const second = await browserLogin(first.handle);

    // Assert
    expect(second.connectionId).not.toBe(first.connectionId);
    const ended = await eventsOf(first.connectionId, 'Connection Ended');
    expect(ended.map((event) => event.detail.reason)).toEqual(['replaced']);
    expect(await eventsOf(second.connectionId, 'Connection Ended')).toEqual([]);
  });

  it('a replayed broker code publishes Connection Ended (code_replayed)', async () => {
    // Prepare
    const login = await handoffLogin(base);
    canaries.add(login.handle);

    // Act
    const replay = await login.replayCode();

    // Assert
    expect(replay.status).toBe(400);
    const ended = await eventsOf(login.connectionId, 'Connection Ended');
    expect(ended.map((event) => event.detail.reason)).toEqual(['code_replayed']);
    expect((await refresh(login.handle)).status).toBe(401);
  });

  it('transient failures past failingAfterSeconds publish Refresh Failing once, then a success Recovered', async () => {
    // Prepare
    const { handle, connectionId } = await browserLogin();
    org.inject({ endpoint: 'token', kind: 'status', status: 503, times: 3 });

    // Act: the first failure starts the run; one past FAILING_AFTER_SECONDS=1 reports it;
    // a third failure does not report again; then Salesforce answers.
    const first = await refresh(handle);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const second = await refresh(handle);
    const third = await refresh(handle);
    const failingBeforeRecovery = await eventsOf(connectionId, 'Connection Refresh Failing');
    const recovered = await refresh(handle);

    // Assert
    expect([first.status, second.status, third.status, recovered.status]).toEqual([
      503, 503, 503, 200,
    ]);
    expect(failingBeforeRecovery).toHaveLength(1);
    expect(failingBeforeRecovery[0]?.detail).toMatchObject({
      connection_id: connectionId,
      failing_since: expect.any(String),
    });
    expect(await eventsOf(connectionId, 'Connection Refresh Failing')).toHaveLength(1);
    expect((await eventsOf(connectionId, 'Connection Recovered')).map((e) => e.detail)).toEqual([
      expect.objectContaining({ connection_id: connectionId, organization_id: org.orgId }),
    ]);
  });

  it("Salesforce's invalid_client publishes Upstream Misconfigured with its error code", async () => {
    // Prepare
    const { handle, connectionId } = await browserLogin();
    org.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_client',
      description: 'invalid client credentials',
      times: 2,
    });

    // Act
    const answer = await refresh(handle);

    // Assert
    expect(answer.status).toBeGreaterThanOrEqual(500);
    const alerts = (await published()).filter(
      (event) => event['detail-type'] === 'Upstream Misconfigured',
    );
    expect(alerts.map((event) => event.detail)).toEqual([
      expect.objectContaining({
        connection_id: connectionId,
        salesforce_error: 'invalid_client',
        salesforce_app: 'default',
      }),
    ]);
  });

  it('at least once: PutEvents failing as a whole and for single entries loses no event', async () => {
    // Prepare: the next calls fail as a whole (beyond the SDK's own retries), then
    // the one after refuses its first entry.
    const capture = broker.stack.events?.capture;
    const retriesBefore = capture?.stats.retries ?? 0;
    bus().inject({ operation: 'PutEvents', kind: 'internal', times: 4 });
    bus().failEntries([0]);

    // Act
    const { handle, connectionId } = await browserLogin();
    await fetch(`${base}/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}` },
    });

    // Assert
    const mine = await eventsOf(connectionId);
    expect(new Set(mine.map((event) => event['detail-type']))).toEqual(
      new Set(['Connection Created', 'Connection Ended']),
    );
    expect(capture?.stats.retries ?? 0).toBeGreaterThanOrEqual(retriesBefore + 2);
  });

  it('writes each event to LOCAL_EVENTS_FILE as one JSON line and serves it to the demo page', async () => {
    // Prepare
    const { connectionId } = await browserLogin();
    await published();

    // Act
    const lines = readFileSync(EVENTS_FILE, 'utf8').trim().split('\n');
    const page = (await (await fetch(`${base}/_demo/events`)).json()) as {
      events: RecordedEvent[];
    };

    // Assert
    const fromFile = lines.map((line) => JSON.parse(line) as RecordedEvent);
    expect(fromFile.some((event) => event.detail.connection_id === connectionId)).toBe(true);
    expect(fromFile.length).toBe(bus().events.length);
    expect(page.events.some((event) => event.detail.connection_id === connectionId)).toBe(true);
  });

  it('carry no token, handle, code or secret: only ids, reasons, times and error codes', async () => {
    // Prepare: every event the flows above published
    const events = await published();
    const allowed = new Set([
      'event_id',
      'connection_id',
      'organization_id',
      'user_id',
      'at',
      'reason',
      'salesforce_error',
      'salesforce_error_description',
      'failing_since',
      'salesforce_app',
    ]);

    // Act
    const text = JSON.stringify(events);

    // Assert
    expect(events.length).toBeGreaterThan(10);
    expect(canaries.size).toBeGreaterThan(5);
    for (const canary of canaries) expect(text).not.toContain(canary);
    for (const event of events) {
      for (const [name, value] of Object.entries(event.detail)) {
        expect(allowed.has(name), name).toBe(true);
        expect(value === null || typeof value === 'string', name).toBe(true);
      }
    }
    expect(text).not.toMatch(/Bearer|refresh_token|access_token|session_handle|"code"/);
  });
});
