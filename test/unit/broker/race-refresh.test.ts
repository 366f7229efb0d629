import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  InvalidSessionError,
  ReauthenticationRequiredError,
  TemporarilyUnavailableError,
} from '../../../functions/broker/errors.ts';
import {
  CONFIG,
  RaceWorld,
  type UpstreamScript,
  type WorldPlan,
} from '../../support/race-world.ts';

/**
 * Interleavings of the single-flight refresh explored with fast-check's scheduler: lease
 * acquires, upstream answers, commits, waiter reads, lease expiry (clock ticks, a crashed
 * holder's lease) and a logout (`store.delete` + revoke), in every order the scheduler
 * picks. Every store operation is applied, and separately answered, when the scheduler
 * releases it. `RACE_RUNS` raises the number of runs (default 250).
 */
const RUNS = Number(process.env.RACE_RUNS ?? 250);
/** `RACE_SEED` replays a failure fast-check reported. */
const SEED = process.env.RACE_SEED === undefined ? {} : { seed: Number(process.env.RACE_SEED) };

/** A holder's upstream deadline leaves at least this long of its invocation to commit. */
const TIME_TO_COMMIT_MS = 1000;

const planArbitrary: fc.Arbitrary<WorldPlan> = fc.record({
  callers: fc.array(fc.constantFrom<number | undefined>(undefined, undefined, 0, 1), {
    minLength: 1,
    maxLength: 4,
  }),
  upstream: fc.array(
    fc.constantFrom<UpstreamScript>(
      'ok',
      'ok',
      'ok',
      'unavailable',
      'concurrency',
      'invalid_grant',
      'drop',
    ),
    { maxLength: 4 },
  ),
  crashedLeaseMs: fc.option(fc.integer({ min: 1, max: 12_000 }), { nil: undefined }),
  ticks: fc.array(fc.integer({ min: 50, max: 13_000 }), { maxLength: 2 }),
  logout: fc.boolean(),
  committedAgoMs: fc.constantFrom(60_000, 1_000),
  random: fc.double({ min: 0.1, max: 1, noNaN: true }),
});

async function explore(s: fc.Scheduler, plan: WorldPlan): Promise<RaceWorld> {
  const world = new RaceWorld(s);
  await world.seed(plan);
  const tasks = [
    ...plan.callers.map((hint) => world.call(hint)),
    ...plan.ticks.map((ms) => world.tick(ms)),
    ...(plan.logout ? [world.logout()] : []),
  ];
  await s.waitFor(Promise.all(tasks));
  return world;
}

async function openedTokens(world: RaceWorld) {
  const byVersion = new Map<number, { accessToken: string; refreshToken: string }>([
    [1, { accessToken: 'access-0', refreshToken: 'refresh-0' }],
  ]);
  const lineage: Array<{ from: string; to: string; toAccess: string }> = [];
  for (const commit of world.commits) {
    const before = await world.vault.open(commit.previous, world.sessionKey, commit.fromVersion);
    const after = await world.vault.open(commit.next, world.sessionKey, commit.fromVersion + 1);
    byVersion.set(commit.fromVersion + 1, after);
    lineage.push({
      from: before.refreshToken,
      to: after.refreshToken,
      toAccess: after.accessToken,
    });
  }
  return { byVersion, lineage };
}

describe('Function: refreshSession under scheduled interleavings', () => {
  it('keeps single flight, fencing, no resurrection and bounded waits in every order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), planArbitrary, async (s, plan) => {
        // Act
        const world = await explore(s, plan);
        const { byVersion, lineage } = await openedTokens(world);
        const model = world.salesforce;

        // Assert: every call ended, with an answer the contract allows
        for (const caller of world.callers) {
          expect(caller.settled).toBe(true);
          if (caller.error !== undefined) {
            expect([
              TemporarilyUnavailableError,
              InvalidSessionError,
              ReauthenticationRequiredError,
            ]).toContainEqual((caller.error as Error).constructor);
          }
          if (caller.error instanceof ReauthenticationRequiredError) {
            // only a holder that Salesforce itself turned down says so, or a caller that
            // found the tombstone such a holder left
            const own = model.requests.filter((request) => request.caller === caller.caller);
            const turnedDown = own.some((r) => r.outcome === 'revoked' || r.outcome === 'reuse');
            const buried = world.inner.tombstones.has(world.sessionKey);
            expect(turnedDown || buried).toBe(true);
          }
        }

        // At most one live upstream request per refresh token, and a rotated-out token
        // reaches Salesforce only after a rotation the broker could not keep: a dropped
        // answer, or a holder that outlived its lease before committing.
        expect(model.overlaps).toBe(0);
        const lapsedHolders = world.fenced.filter((fenced) => fenced.at > fenced.leaseUntil);
        expect(model.reuseDetections).toBeLessThanOrEqual(model.drops + lapsedHolders.length);

        // Fencing: each commit is made by the latest lease holder, moves the version by
        // one, and stores exactly what Salesforce issued for the token it replaced.
        world.commits.forEach((commit, index) => {
          expect(commit.latestAcquirer).toBe(commit.owner);
          expect(commit.fromVersion).toBe(index + 1);
        });
        for (const step of lineage) {
          expect(model.successor.get(step.from)).toEqual({
            refreshToken: step.to,
            accessToken: step.toAccess,
          });
        }

        // No resurrection: once the logout's delete applied, the item never comes back,
        // and no call that started after it got a token.
        expect(world.resurrections).toBe(0);
        if (world.deletedAt !== undefined) {
          expect(world.inner.items.has(world.sessionKey)).toBe(false);
        }
        for (const caller of world.callers.filter((c) => c.startedAfterLogout)) {
          expect(caller.result).toBeUndefined();
          expect(caller.error).toBeInstanceOf(InvalidSessionError);
        }

        // Every token answered is the one stored for its version, never older than what
        // the caller started from, and newer than the version it said was dead.
        for (const caller of world.callers) {
          if (!caller.result) continue;
          expect(caller.result.accessToken).toBe(byVersion.get(caller.result.version)?.accessToken);
          expect(caller.result.version).toBeGreaterThanOrEqual(caller.versionAtStart ?? 1);
          if (caller.hint !== undefined && caller.hint >= 1) {
            expect(caller.result.version).toBeGreaterThan(caller.hint);
          }
        }

        // Bounded waits: no upstream call may outlive the caller's invocation (function
        // timeout = lease) less the time to commit, and no poll sleeps past it.
        for (const request of model.requests) {
          const caller = world.callers[request.caller];
          expect(request.deadline).toBeLessThanOrEqual(
            (caller?.startedAt ?? 0) + CONFIG.leaseMs - TIME_TO_COMMIT_MS,
          );
        }
        for (const caller of world.callers) {
          for (const wakeAt of caller.sleeps) {
            expect(wakeAt).toBeLessThanOrEqual(caller.startedAt + CONFIG.leaseMs);
          }
        }

        // Nothing left behind: no lease of a finished call, and no refresh token lost
        // when no answer was dropped, no holder lapsed and Salesforce revoked nothing.
        const item = world.inner.items.get(world.sessionKey);
        if (item) {
          expect([undefined, 'crashed-invocation']).toContain(item.leaseOwner);
          const stored = byVersion.get(item.version);
          const revokedBySalesforce = model.requests.some((r) => r.outcome === 'revoked');
          if (model.drops === 0 && lapsedHolders.length === 0 && !revokedBySalesforce) {
            expect(model.status.get(stored?.refreshToken ?? '')).toBe('current');
          }
        }
      }),
      { numRuns: RUNS, ...SEED },
    );
  });

  it('stores every rotation Salesforce processed, one per version, when nothing fails', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), fc.integer({ min: 2, max: 6 }), async (s, callers) => {
        // Prepare: a stale token, callers without a hint, Salesforce always answers
        const plan: WorldPlan = {
          callers: Array(callers).fill(undefined),
          upstream: [],
          crashedLeaseMs: undefined,
          ticks: [],
          logout: false,
          committedAgoMs: 60_000,
          random: 0.5,
        };

        // Act
        const world = await explore(s, plan);

        // Assert: no processed rotation is lost, none is repeated, and callers that
        // started together share one token
        const processed = world.salesforce.requests.filter((r) => r.outcome === 'processed');
        expect(processed).toHaveLength(world.commits.length);
        expect(world.salesforce.reuseDetections).toBe(0);
        expect(world.salesforce.overlaps).toBe(0);
        expect(world.log.events()).not.toContain('rotation_lost');
        const firstRound = world.callers.filter((c) => c.versionAtStart === 1 && c.result);
        expect(new Set(firstRound.map((c) => c.result?.version)).size).toBeLessThanOrEqual(1);
      }),
      { numRuns: Math.ceil(RUNS / 2), ...SEED },
    );
  });

  it('does not spin when the stored token is exactly one reuse window old', async () => {
    // Prepare: found by the property above: at exactly `reuseWindowMs` the acquire said
    // "too fresh" and the waiter check said "too old", so the loop never slept.
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), async (s) => {
        const world = new RaceWorld(s);
        await world.seed({
          callers: [undefined],
          upstream: [],
          crashedLeaseMs: undefined,
          ticks: [],
          logout: false,
          committedAgoMs: CONFIG.reuseWindowMs,
          random: 0.5,
        });

        // Act
        await s.waitFor(world.call(undefined));

        // Assert: the stale token is refreshed, once
        expect(world.callers[0]?.result).toMatchObject({ version: 2, outcome: 'refreshed' });
        expect(world.salesforce.requests).toHaveLength(1);
      }),
      { numRuns: 5 },
    );
  });
});
