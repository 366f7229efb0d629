import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbSessionStore } from '../../functions/aws/dynamodb-session-store.ts';
import type { SessionRecord } from '../../functions/broker/ports.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';

/** The condition expressions of the store, run against dynalite (not a hand-made fake). */
describe('Class: DynamoDbSessionStore', () => {
  let stack: LocalStack;
  let store: DynamoDbSessionStore;
  const now = 1_800_000_000_000;
  let counter = 0;

  beforeAll(async () => {
    stack = await startLocalStack({ salesforce: false, salesforceLoginUrl: 'http://127.0.0.1:9' });
    store = new DynamoDbSessionStore({ tableName: stack.tableName, client: stack.dynamodb });
  });

  afterAll(async () => {
    await stack?.close();
  });

  async function session(overrides: Partial<SessionRecord> = {}): Promise<SessionRecord> {
    counter++;
    const record: SessionRecord = {
      sessionKey: `key-${counter}`,
      version: 1,
      sealed: { ciphertext: new Uint8Array([1, 2, 3]), encryptedDataKey: new Uint8Array([4]) },
      committedAt: now - 60_000,
      createdAt: now - 60_000,
      absoluteExpiresAt: now + 86_400_000,
      idleExpiresAt: now + 86_400_000,
      orgId: '00D000000000001AAA',
      userId: '005000000000001AAA',
      ...overrides,
    };
    expect(await store.create(record)).toBe(true);
    return record;
  }

  describe('Method: create', () => {
    it('refuses to overwrite an existing session', async () => {
      const record = await session();

      expect(await store.create(record)).toBe(false);
    });
  });

  describe('Method: tryAcquireLease', () => {
    it('gives the lease to exactly one of 50 concurrent callers', async () => {
      const record = await session();

      const results = await Promise.all(
        Array.from({ length: 50 }, (_, index) =>
          store.tryAcquireLease({
            sessionKey: record.sessionKey,
            owner: `owner-${index}`,
            now,
            leaseEndedBy: now,
            leaseUntil: now + 12_000,
          }),
        ),
      );

      expect(results.filter((result) => result.acquired)).toHaveLength(1);
    });

    it('returns the whole item with the new lease (ALL_NEW)', async () => {
      const record = await session();

      const result = await store.tryAcquireLease({
        sessionKey: record.sessionKey,
        owner: 'me',
        now,
        leaseEndedBy: now,
        leaseUntil: now + 12_000,
      });

      expect(result).toMatchObject({
        acquired: true,
        record: { version: 1, leaseOwner: 'me', leaseUntil: now + 12_000, orgId: record.orgId },
      });
    });

    it.each([
      ['an expired session', { absoluteExpiresAt: now - 1 }, {}],
      ['an idle session', { idleExpiresAt: now - 1 }, {}],
      ['a held lease', { leaseOwner: 'other', leaseUntil: now + 1 }, {}],
      ['another version than the hint', {}, { expectedVersion: 2 }],
      [
        'a token inside the reuse window',
        { committedAt: now - 1000 },
        { committedBefore: now - 5000 },
      ],
    ])('refuses %s', async (_name, overrides, input) => {
      const record = await session(overrides);

      const result = await store.tryAcquireLease({
        sessionKey: record.sessionKey,
        owner: 'me',
        now,
        leaseEndedBy: now,
        leaseUntil: now + 12_000,
        ...input,
      });

      expect(result.acquired).toBe(false);
    });

    it('takes over a lapsed lease', async () => {
      const record = await session({ leaseOwner: 'crashed', leaseUntil: now - 1 });

      const result = await store.tryAcquireLease({
        sessionKey: record.sessionKey,
        owner: 'me',
        now,
        leaseEndedBy: now,
        leaseUntil: now + 12_000,
      });

      expect(result.acquired).toBe(true);
    });
  });

  describe('Method: commit', () => {
    it('fences a holder whose lease was taken over', async () => {
      // Prepare: A acquires, its lease lapses, B acquires and commits
      const record = await session();
      const lease = { sessionKey: record.sessionKey, leaseUntil: now + 1000 };
      await store.tryAcquireLease({ ...lease, owner: 'A', now, leaseEndedBy: now });
      await store.tryAcquireLease({
        ...lease,
        owner: 'B',
        now: now + 2000,
        leaseEndedBy: now + 2000,
        leaseUntil: now + 14_000,
      });
      const commit = {
        sessionKey: record.sessionKey,
        version: 1,
        sealed: { ciphertext: new Uint8Array([9]), encryptedDataKey: new Uint8Array([9]) },
        committedAt: now + 3000,
        idleExpiresAt: now + 86_400_000,
      };

      // Act
      const byB = await store.commit({ ...commit, owner: 'B' });
      const byA = await store.commit({ ...commit, owner: 'A' });

      // Assert
      expect(byB).toBe('committed');
      expect(byA).toBe('fenced');
      const stored = await store.get(record.sessionKey);
      expect(stored).toMatchObject({ version: 2, leaseOwner: undefined, committedAt: now + 3000 });
    });

    it('cannot resurrect a deleted session', async () => {
      const record = await session();
      await store.tryAcquireLease({
        sessionKey: record.sessionKey,
        owner: 'A',
        now,
        leaseEndedBy: now,
        leaseUntil: now + 9,
      });
      expect(await store.deleteVersion(record.sessionKey, 1)).toBe('deleted');

      const result = await store.commit({
        sessionKey: record.sessionKey,
        owner: 'A',
        version: 1,
        sealed: record.sealed,
        committedAt: now,
        idleExpiresAt: now + 1,
      });

      expect(result).toBe('fenced');
      expect(await store.get(record.sessionKey)).toBeUndefined();
    });
  });

  describe('Methods: releaseLease, deleteAsLeaseHolder', () => {
    it('only act for the lease owner', async () => {
      const record = await session();
      await store.tryAcquireLease({
        sessionKey: record.sessionKey,
        owner: 'A',
        now,
        leaseEndedBy: now,
        leaseUntil: now + 9,
      });

      await store.releaseLease({
        sessionKey: record.sessionKey,
        owner: 'B',
        failedAt: now,
        failureKind: 'unavailable',
      });
      const deletedByB = await store.deleteAsLeaseHolder(record.sessionKey, 'B');
      await store.releaseLease({
        sessionKey: record.sessionKey,
        owner: 'A',
        failedAt: now,
        failureKind: 'unavailable',
      });

      expect(deletedByB).toBe(false);
      expect(await store.get(record.sessionKey)).toMatchObject({
        leaseOwner: undefined,
        lastFailureAt: now,
        lastFailureKind: 'unavailable',
      });
    });
  });
});
