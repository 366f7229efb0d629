import { describe, expect, it } from 'vitest';
import { TemporarilyUnavailableError } from '../../../functions/broker/errors.ts';
import { LeaseHold, READ_BACK_RESERVE_MS } from '../../../functions/broker/lease-hold.ts';
import type { SessionRecord } from '../../../functions/broker/ports.ts';
import { CaptureLog } from '../../support/capture-log.ts';
import { MemorySessionStore } from '../../support/memory-session-store.ts';

const NOW = 1_700_000_000_000;

/** A store holding one session at version 1 whose lease `holder` holds for 5 s. */
async function setup() {
  const store = new MemorySessionStore();
  const clock = {
    t: NOW,
    now() {
      return this.t;
    },
  };
  const log = new CaptureLog();
  const record: SessionRecord = {
    sessionKey: 'key',
    version: 1,
    sealed: { ciphertext: new Uint8Array([1, 2, 3]), encryptedDataKey: new Uint8Array([9]) },
    committedAt: NOW - 60_000,
    createdAt: NOW - 60_000,
    absoluteExpiresAt: NOW + 86_400_000,
    idleExpiresAt: NOW + 86_400_000,
    orgId: '00D',
    userId: '005',
    leaseOwner: 'holder',
    leaseUntil: NOW + 5_000,
  };
  await store.create(record);
  const sleeps: number[] = [];
  const hold = new LeaseHold(
    {
      store,
      clock,
      log,
      sleep: async (ms) => {
        sleeps.push(ms);
        clock.t += ms;
      },
    },
    { record, owner: 'holder', leaseUntil: NOW + 5_000, session: 'safe-id' },
  );
  const next = {
    sealed: { ciphertext: new Uint8Array([4, 5, 6]), encryptedDataKey: new Uint8Array([9]) },
    committedAt: NOW,
    idleExpiresAt: NOW + 86_400_000,
  };
  return { store, clock, log, hold, next, sleeps };
}

describe('Class: LeaseHold', () => {
  describe('Method: commit', () => {
    it('stores version + 1 and clears the lease', async () => {
      const t = await setup();

      const result = await t.hold.commit(t.next);

      expect(result).toEqual({ outcome: 'committed' });
      expect(t.store.items.get('key')).toMatchObject({ version: 2, leaseOwner: undefined });
    });

    it('retries a failing store until the commit deadline, then reports the failure', async () => {
      // Prepare: every commit attempt fails and takes 400 ms of the lease
      const t = await setup();
      t.store.commit = async () => {
        t.clock.t += 400;
        throw new TemporarilyUnavailableError('DynamoDB is temporarily unavailable.');
      };

      // Act
      const result = await t.hold.commit(t.next);

      // Assert: no attempt started after the deadline; the read-back saw version 1
      expect(result.outcome).toBe('failed');
      expect(t.clock.now()).toBeLessThanOrEqual(NOW + 5_000 - READ_BACK_RESERVE_MS + 400);
      expect(t.sleeps.length).toBeGreaterThan(1);
      expect(result).toMatchObject({ latest: { version: 1 } });
    });

    it('recognises a commit that landed while every answer was lost', async () => {
      // Prepare: the write is applied, then the answer is lost each time
      const t = await setup();
      const apply = t.store.commit.bind(t.store);
      t.store.commit = async (input) => {
        await apply(input);
        t.clock.t += 2_000;
        throw new TemporarilyUnavailableError('DynamoDB is temporarily unavailable.');
      };

      // Act
      const result = await t.hold.commit(t.next);

      // Assert
      expect(result).toEqual({ outcome: 'committed' });
      expect(t.log.events()).toContain('commit_answer_lost');
    });

    it('is fenced when another holder moved the version on', async () => {
      const t = await setup();
      const stored = t.store.items.get('key');
      if (stored) Object.assign(stored, { version: 2, leaseOwner: 'other' });

      const result = await t.hold.commit(t.next);

      expect(result).toMatchObject({ outcome: 'fenced', latest: { version: 2 } });
    });
  });

  describe('Method: release', () => {
    it('keeps the lease as a fence when asked, recording the failure and its owner', async () => {
      const t = await setup();

      await t.hold.release('unavailable', true);

      expect(t.store.items.get('key')).toMatchObject({
        leaseOwner: 'holder',
        leaseUntil: NOW + 5_000,
        lastFailureKind: 'unavailable',
        lastFailureOwner: 'holder',
      });
    });

    it('gives the lease up otherwise', async () => {
      const t = await setup();

      await t.hold.release('misconfigured');

      expect(t.store.items.get('key')).toMatchObject({
        leaseOwner: undefined,
        lastFailureKind: 'misconfigured',
      });
    });
  });

  describe('Method: release (Connection Refresh Failing)', () => {
    /** A hold on a record acquired with this failure history, failing after 900 s. */
    async function holdOn(history: Partial<SessionRecord>) {
      const t = await setup();
      await t.store.releaseLease({
        sessionKey: 'key',
        owner: 'holder',
        failedAt: NOW,
        failureKind: 'unavailable',
        keepLease: true,
      });
      const record = { ...(await t.store.get('key')), ...history } as SessionRecord;
      const hold = new LeaseHold(
        {
          store: t.store,
          clock: t.clock,
          log: t.log,
          sleep: async () => {},
          failingAfterMs: 900_000,
        },
        { record, owner: 'holder', leaseUntil: NOW + 5_000, session: 'safe-id' },
      );
      return { ...t, hold };
    }

    it('starts the run at the first transient failure, without reporting it', async () => {
      const t = await holdOn({ failingSince: undefined });

      await t.hold.release('unavailable');

      expect(await t.store.get('key')).toMatchObject({ failingSince: NOW });
      expect((await t.store.get('key'))?.failingReportedAt).toBeUndefined();
    });

    it('reports the run once it is failingAfterMs old, in the same release', async () => {
      const t = await holdOn({ failingSince: NOW - 900_000 });

      await t.hold.release('unavailable');

      expect(await t.store.get('key')).toMatchObject({ failingReportedAt: NOW });
    });

    it('does not report a run younger than failingAfterMs, a reported one again, or another kind', async () => {
      const young = await holdOn({ failingSince: NOW - 899_999 });
      const reported = await holdOn({ failingSince: NOW - 2_000_000, failingReportedAt: NOW - 1 });
      const forbidden = await holdOn({ failingSince: NOW - 2_000_000 });
      const releases: unknown[] = [];
      for (const t of [young, reported, forbidden]) {
        const release = t.store.releaseLease.bind(t.store);
        t.store.releaseLease = async (input) => {
          releases.push(input.reportFailing ?? false);
          return release(input);
        };
      }

      await young.hold.release('unavailable');
      await reported.hold.release('unavailable');
      await forbidden.hold.release('forbidden');

      expect(releases).toEqual([false, false, false]);
    });
  });
});
