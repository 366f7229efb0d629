/**
 * The scheduled sweep (README "Keep-alive and expiry") against dynalite (through the
 * DynamoDB fault proxy, which counts the requests), the KMS and Secrets Manager emulators
 * and the fake Salesforce (which counts its calls). Time is a clock that moves only when
 * the sweep sleeps, so the pacing is read off it exactly.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSweepHandler } from '../../functions/routes/sweep.ts';
import { type BrokerHarness, readJson, startBrokerHarness } from '../support/broker-harness.ts';
import {
  runSweep,
  seedExpired,
  seedFiller,
  seedKeepAliveDue,
  steppedTime,
  sweepDependencies,
} from '../support/sweep-world.ts';

const FILLER = 9_950;
const KEEP_ALIVE_DUE = 30;
const EXPIRED = 20;

describe('The sweep: keep-alive and expiry', () => {
  let broker: BrokerHarness;

  beforeAll(async () => {
    broker = await startBrokerHarness({
      dynamodbFaultProxy: true,
      // A lease as in production: the sweep's stepped clock moves while a refresh runs.
      env: { LEASE_MS: '12000', UPSTREAM_TIMEOUT_MS: '8000', WAIT_BUDGET_MS: '10000' },
    });
  }, 60_000);

  afterAll(async () => {
    await broker?.close();
  });

  beforeEach(() => {
    broker.stack.salesforce?.resetCalls();
  });

  const fake = () => {
    const salesforce = broker.stack.salesforce;
    if (!salesforce) throw new Error('no fake Salesforce');
    return salesforce;
  };
  const proxyCalls = () => ({ ...(broker.stack.dynamodbFaults?.calls ?? {}) });
  const diff = (before: Record<string, number>, after: Record<string, number>) =>
    Object.fromEntries(
      Object.entries(after)
        .map(([operation, count]) => [operation, count - (before[operation] ?? 0)])
        .filter(([, count]) => count !== 0),
    ) as Record<string, number>;
  const item = async (handle: string) => {
    const raw = await broker.rawItem(handle);
    return raw === undefined
      ? undefined
      : {
          version: Number((raw.version as { N: string }).N),
          committedAt: Number((raw.committedAt as { N: string }).N),
          idleExpiresAt: Number((raw.idleExpiresAt as { N: string }).N),
          sweepAt: Number((raw.sweepAt as { N: string }).N),
        };
  };

  it('with 10,000 connections, reads only the due ones, paces its Salesforce calls, resumes after a cut-off run, keeps idle expiry and tombstones expired ones', async () => {
    // Prepare: 9,950 connections not due, 30 due for keep-alive, 20 past their idle expiry.
    const now = Date.now();
    await seedFiller(broker, FILLER, now);
    const due = [];
    for (let index = 0; index < KEEP_ALIVE_DUE; index++) due.push(await seedKeepAliveDue(broker));
    const expired = [];
    for (let index = 0; index < EXPIRED; index++) expired.push(await seedExpired(broker, now));
    const before = new Map(
      await Promise.all(
        due.map(async (session) => [session.handle, await item(session.handle)] as const),
      ),
    );
    fake().resetCalls();
    const time = steppedTime(now);
    const upstreamCalls: number[] = [];
    const deps = sweepDependencies(broker, time, upstreamCalls);
    const requestsBefore = proxyCalls();

    // Act: a run cut off after 2 s of (stepped) time, then the next run.
    // One call in flight at a time, so each call starts at its slot on the clock.
    const first = await runSweep(deps, { stopAt: now + 2_000, maxInFlight: 1 });
    const requestsFirst = diff(requestsBefore, proxyCalls());
    const second = await runSweep(deps, {
      stopAt: time.clock.now() + 3_600_000,
      maxInFlight: 1,
    });
    const requests = diff(requestsBefore, proxyCalls());

    // Assert: the first run stopped with work left; together they did each job once.
    expect(first.cutOff).toBe(true);
    expect(first.keptAlive + first.expiredRevoked).toBeLessThan(KEEP_ALIVE_DUE + EXPIRED);
    expect(second.cutOff).toBe(false);
    expect(first.keptAlive + second.keptAlive).toBe(KEEP_ALIVE_DUE);
    expect(first.expiredRevoked + second.expiredRevoked).toBe(EXPIRED);
    expect(first.keepAliveFailed + second.keepAliveFailed).toBe(0);
    expect(fake().calls.tokenRefresh).toBe(KEEP_ALIVE_DUE);
    expect(fake().calls.revoke).toBe(EXPIRED);
    // Only the due ones were read: no scan, a handful of index queries whose entries are
    // the 50 due sessions, per-item reads for those only.
    expect(requests.Scan ?? 0).toBe(0);
    expect(second.seen).toBe(KEEP_ALIVE_DUE + EXPIRED - first.keptAlive - first.expiredRevoked);
    expect(requests.Query ?? 0).toBeLessThanOrEqual(2 * 4 + 2);
    expect(requests.GetItem ?? 0).toBeLessThanOrEqual(3 * EXPIRED + 2 * KEEP_ALIVE_DUE);
    expect(requestsFirst.Query ?? 0).toBeGreaterThan(0);
    // Paced: Salesforce calls start at least 100 ms apart (10 per second) on the clock.
    const starts = [...upstreamCalls].sort((a, b) => a - b);
    expect(starts).toHaveLength(KEEP_ALIVE_DUE + EXPIRED);
    for (let index = 1; index < starts.length; index++) {
      expect((starts[index] ?? 0) - (starts[index - 1] ?? 0)).toBeGreaterThanOrEqual(100);
    }
    // Keep-alive is not use: the idle expiry did not move; the commit and sweepAt did.
    for (const session of due) {
      const was = before.get(session.handle);
      const is = await item(session.handle);
      expect(is?.version).toBe(2);
      expect(is?.idleExpiresAt).toBe(was?.idleExpiresAt);
      expect(is?.committedAt).toBeGreaterThan(was?.committedAt ?? 0);
      expect(is?.sweepAt).toBe(is?.idleExpiresAt);
    }
    // Expired: gone, revoked at the fake, and the connection explains itself.
    for (const session of expired) {
      expect(await item(session.handle)).toBeUndefined();
    }
    const described = await broker.service.fetch(`/connections/${expired[0]?.connectionId}`);
    expect(described.status).toBe(200);
    expect(await readJson(described)).toMatchObject({
      status: 'ended',
      ended_reason: 'expired',
    });
    const refreshed = await broker.refresh(expired[1]?.handle ?? '');
    expect(refreshed.status).toBe(401);
    expect((await readJson(refreshed)).error).toBe('reauthentication_required');
    expect(fake().isRefreshTokenActive(expired[2]?.refreshToken ?? '')).toBe(false);
  }, 180_000);

  it('a keep-alive racing an app refresh on one connection makes exactly one upstream call', async () => {
    // Prepare: one connection due for keep-alive; Salesforce answers slowly.
    const session = await seedKeepAliveDue(broker);
    const was = await item(session.handle);
    fake().resetCalls();
    const deps = sweepDependencies(broker, {
      clock: { now: () => Date.now() },
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    });
    const sweep = createSweepHandler({ ...deps, metrics: broker.metrics });
    fake().inject({ endpoint: 'token', kind: 'delay', ms: 400, times: 1 });

    // Act: the app's /refresh (with the version it holds) and the sweep, at once.
    const [app, report] = await Promise.all([
      broker.refresh(session.handle, { version: 1 }),
      sweep({}, { getRemainingTimeInMillis: () => 60_000 }),
    ]);

    // Assert: one upstream refresh; both see version 2. The app's use moved the idle expiry
    // if its refresh won; the sweep then coalesced.
    expect(app.status).toBe(200);
    expect((await readJson(app)).version).toBe(2);
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(report.keptAlive + report.alreadyFresh).toBe(1);
    const is = await item(session.handle);
    expect(is?.version).toBe(2);
    expect(was?.version).toBe(1);
  }, 60_000);

  it('a connection refreshed since it was due is neither refreshed again nor expired', async () => {
    // Prepare: due for keep-alive, then an app refreshes it (version 2) before the sweep.
    const session = await seedKeepAliveDue(broker);
    const refreshed = await broker.refresh(session.handle, { version: 1 });
    expect(refreshed.status).toBe(200);
    fake().resetCalls();
    const time = steppedTime(Date.now());
    const deps = sweepDependencies(broker, time);

    // Act
    const report = await runSweep(deps, { stopAt: time.clock.now() + 60_000 });

    // Assert: its new sweepAt is in the future, so the index no longer names it.
    expect(fake().calls.tokenRefresh).toBe(0);
    expect(report.keptAlive).toBe(0);
    expect((await item(session.handle))?.version).toBe(2);
    expect((await broker.stored(session.handle))?.version).toBe(2);
  }, 60_000);

  it('a keep-alive Salesforce fails is counted, stays due, and succeeds on the next run', async () => {
    // Prepare
    const session = await seedKeepAliveDue(broker);
    fake().resetCalls();
    fake().inject({ endpoint: 'token', kind: 'status', status: 503, times: 1 });
    const time = steppedTime(Date.now());
    const deps = sweepDependencies(broker, time);

    // Act
    const failed = await runSweep(deps, { stopAt: time.clock.now() + 60_000 });
    const retried = await runSweep(deps, { stopAt: time.clock.now() + 60_000 });

    // Assert
    expect(failed.keepAliveFailed).toBe(1);
    expect(retried.keptAlive).toBe(1);
    expect((await item(session.handle))?.version).toBe(2);
    expect(broker.metrics.get('KeepAliveFailed')).toBeGreaterThanOrEqual(1);
    expect(broker.metrics.get('KeptAlive')).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
