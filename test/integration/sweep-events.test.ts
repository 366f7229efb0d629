/**
 * The sweep as `npm start` runs it (README "Keep-alive and expiry"): on an interval
 * (`LOCAL_SWEEP_INTERVAL_SECONDS`) with a keep-alive age in seconds
 * (`KEEP_ALIVE_AFTER_SECONDS`), and its expiry end to end: the expired connection revoked
 * at the fake Salesforce, its tombstone written, and its `Connection Ended` event
 * (`expired`) published through the change capture and the deployed publisher.
 */
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DynamoDbSessionStore } from '../../functions/aws/dynamodb-session-store.ts';
import { createSweepHandler } from '../../functions/routes/sweep.ts';
import { buildRuntime } from '../../functions/runtime.ts';
import type { FakeSalesforce } from '../../local/fake-salesforce.ts';
import type { RunningBroker } from '../../local/start.ts';
import { browserLogin } from '../support/browser-login.ts';
import { startBrokerWithOrg } from '../support/local-broker-with-org.ts';

const CLIENT_ID = 'sweep-events-client';
const CLIENT_SECRET = 'sweep-events-secret';
const EVENTS_FILE = join(tmpdir(), `broker-sweep-events-${process.pid}.jsonl`);
const DAY_MS = 86_400_000;

let org: FakeSalesforce;
let broker: RunningBroker;
let base: string;
const saved = { ...process.env };

beforeAll(async () => {
  // Read by the runtime the local sweep builds, as the entry files read it on Lambda.
  process.env.KEEP_ALIVE_AFTER_SECONDS = '1';
  ({ org, broker, base } = await startBrokerWithOrg({
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    env: { LOCAL_EVENTS_FILE: EVENTS_FILE, LOCAL_SWEEP_INTERVAL_SECONDS: '1' },
  }));
}, 60_000);

afterAll(async () => {
  await broker?.close();
  await org?.close();
  rmSync(EVENTS_FILE, { force: true });
  process.env = saved;
});

async function sessionVersion(handle: string): Promise<number | undefined> {
  const answer = await fetch(`${base}/session`, {
    headers: { authorization: `Bearer ${handle}` },
  });
  if (answer.status !== 200) return undefined;
  return ((await answer.json()) as { version?: number }).version;
}

describe('npm start: the sweep on an interval', () => {
  it('keeps a connection alive once KEEP_ALIVE_AFTER_SECONDS has passed, with no request of the app', async () => {
    // Prepare
    const { handle } = await browserLogin(base);
    const refreshesBefore = org.calls.tokenRefresh;

    // Act: only the interval sweep runs; the app sends nothing.
    const deadline = Date.now() + 30_000;
    while (org.calls.tokenRefresh === refreshesBefore && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }

    // Assert: Salesforce was asked for a fresh token, and the session holds it.
    expect(org.calls.tokenRefresh).toBeGreaterThan(refreshesBefore);
    await expect.poll(() => sessionVersion(handle), { timeout: 10_000 }).toBeGreaterThan(1);
  }, 60_000);

  it('revokes an expired connection at Salesforce, answers reauthentication_required and publishes Connection Ended (expired)', async () => {
    // Prepare: a live connection, and a sweep run eight days later (past the 7-day idle TTL).
    const { handle, connectionId } = await browserLogin(base);
    const runtime = buildRuntime(process.env);
    const later = Date.now() + 8 * DAY_MS;
    const sweep = createSweepHandler({
      ...runtime,
      index: runtime.store as DynamoDbSessionStore,
      clock: { now: () => Date.now() + 8 * DAY_MS },
    });
    const revokesBefore = org.calls.revoke;

    // Act
    const report = await sweep({}, { getRemainingTimeInMillis: () => 60_000 });

    // Assert: revoked at the fake, tombstoned, and the event published with its detail.
    expect(report.expiredRevoked).toBeGreaterThanOrEqual(1);
    expect(org.calls.revoke).toBeGreaterThan(revokesBefore);
    const refreshed = await fetch(`${base}/refresh`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(refreshed.status).toBe(401);
    expect(((await refreshed.json()) as { error: string }).error).toBe('reauthentication_required');
    await broker.stack.events?.capture.drained();
    const ended = (broker.stack.events?.bus.events ?? []).filter(
      (event) =>
        event['detail-type'] === 'Connection Ended' && event.detail.connection_id === connectionId,
    );
    expect(ended).toHaveLength(1);
    expect(ended[0]?.detail).toMatchObject({ connection_id: connectionId, reason: 'expired' });
    expect(Date.parse(String(ended[0]?.detail.at))).toBeGreaterThanOrEqual(later - 60_000);
    const lines = readFileSync(EVENTS_FILE, 'utf8').trim().split('\n');
    expect(lines.some((line) => line.includes(connectionId) && line.includes('"expired"'))).toBe(
      true,
    );
    expect(readFileSync(EVENTS_FILE, 'utf8')).not.toContain(handle);
  }, 60_000);
});
