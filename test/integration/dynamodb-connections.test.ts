import { DeleteItemCommand, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbSessionStore } from '../../functions/aws/dynamodb-session-store.ts';
import { newConnectionId } from '../../functions/broker/connection.ts';
import { InvalidRequestError } from '../../functions/broker/errors.ts';
import type { SessionRecord } from '../../functions/broker/ports.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { DAY, sessionRecord } from '../support/fixtures.ts';

/** Connections in the session table, against dynalite: the pointer items and the index. */
describe('Class: DynamoDbSessionStore (connections)', () => {
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

  async function connection(overrides: Partial<SessionRecord> = {}): Promise<SessionRecord> {
    counter++;
    const record = sessionRecord(now, {
      sessionKey: `connection-test-key-${counter}`,
      connectionId: newConnectionId(),
      instanceUrl: 'https://acme.my.salesforce.com',
      scope: 'api refresh_token',
      createdAt: now - 60_000 + counter,
      ...overrides,
    });
    expect(await store.create(record)).toBe(true);
    return record;
  }

  describe('Tombstones (deleteVersion / deleteAsLeaseHolder with an ended mark)', () => {
    const mark = {
      reason: 'service_api' as const,
      endedAt: now,
      retainUntil: now + 30 * DAY,
    };

    it('deleteVersion keeps a tombstone by connection id and by session key, no token', async () => {
      // Prepare
      const record = await connection();

      // Act
      const outcome = await store.deleteVersion(record.sessionKey, 1, undefined, mark);
      const byId = await store.findEndedConnection(record.connectionId ?? '');
      const byKey = await store.findEnded(record.sessionKey);

      // Assert
      expect(outcome).toBe('deleted');
      expect(await store.get(record.sessionKey)).toBeUndefined();
      expect(await store.findConnection(record.connectionId ?? '')).toBeUndefined();
      const expected = {
        connectionId: record.connectionId,
        orgId: record.orgId,
        userId: record.userId,
        reason: 'service_api',
        endedAt: now,
      };
      expect(byId).toEqual(expected);
      expect(byKey).toEqual(expected);
    });

    it('deleteAsLeaseHolder keeps one for its holder, and none when fenced', async () => {
      // Prepare
      const held = await connection({ leaseOwner: 'holder', leaseUntil: now + 10_000 });
      const fenced = await connection({ leaseOwner: 'other', leaseUntil: now + 10_000 });
      const ended = { ...mark, reason: 'reauthentication_required' as const };

      // Act
      const deleted = await store.deleteAsLeaseHolder(held.sessionKey, 'holder', ended);
      const refused = await store.deleteAsLeaseHolder(fenced.sessionKey, 'holder', ended);

      // Assert
      expect([deleted, refused]).toEqual([true, false]);
      expect(await store.findEnded(held.sessionKey)).toMatchObject({
        reason: 'reauthentication_required',
      });
      expect(await store.findEndedConnection(held.connectionId ?? '')).toMatchObject({
        reason: 'reauthentication_required',
      });
      // The fenced one lives on: its pointer, marked before the delete, still finds it.
      expect((await store.findConnection(fenced.connectionId ?? ''))?.sessionKey).toBe(
        fenced.sessionKey,
      );
    });

    it('a delete without a mark (logout) keeps none', async () => {
      // Prepare
      const record = await connection();

      // Act
      await store.deleteVersion(record.sessionKey, 1);

      // Assert
      expect(await store.findEnded(record.sessionKey)).toBeUndefined();
      expect(await store.findEndedConnection(record.connectionId ?? '')).toBeUndefined();
    });
  });

  describe('Method: findConnection', () => {
    it('finds a connection by id as soon as create returns', async () => {
      const record = await connection();

      const found = await store.findConnection(record.connectionId ?? '');

      expect(found?.sessionKey).toBe(record.sessionKey);
      expect(found?.instanceUrl).toBe('https://acme.my.salesforce.com');
      expect(found?.scope).toBe('api refresh_token');
    });

    it('finds nothing for an unknown id', async () => {
      expect(await store.findConnection(newConnectionId())).toBeUndefined();
    });

    it('removes the pointer with the session (delete by version)', async () => {
      const record = await connection();
      const pointerKey = { pk: { S: `connection#${record.connectionId}` } };

      expect(await store.deleteVersion(record.sessionKey, 1)).toBe('deleted');

      expect(await store.findConnection(record.connectionId ?? '')).toBeUndefined();
      const pointer = await stack.dynamodb.send(
        new GetItemCommand({ TableName: stack.tableName, Key: pointerKey, ConsistentRead: true }),
      );
      expect(pointer.Item).toBeUndefined();
    });

    it('removes the pointer with the session (delete as lease holder)', async () => {
      const record = await connection();
      await store.tryAcquireLease({
        sessionKey: record.sessionKey,
        owner: 'holder',
        now,
        leaseEndedBy: now,
        leaseUntil: now + 12_000,
      });

      expect(await store.deleteAsLeaseHolder(record.sessionKey, 'holder')).toBe(true);

      const pointer = await stack.dynamodb.send(
        new GetItemCommand({
          TableName: stack.tableName,
          Key: { pk: { S: `connection#${record.connectionId}` } },
          ConsistentRead: true,
        }),
      );
      expect(pointer.Item).toBeUndefined();
    });

    it('finds nothing through a pointer whose session is gone', async () => {
      const record = await connection();
      await stack.dynamodb.send(
        new DeleteItemCommand({
          TableName: stack.tableName,
          Key: { pk: { S: `session#${record.sessionKey}` } },
        }),
      );

      expect(await store.findConnection(record.connectionId ?? '')).toBeUndefined();
    });

    it('accepts its own pointer when a retried create finds it (an answer lost)', async () => {
      const record = sessionRecord(now, {
        sessionKey: 'connection-test-key-retried',
        connectionId: newConnectionId(),
      });
      expect(await store.create(record)).toBe(true);
      // The session put landed too; a retry of the whole create now collides on the session.
      await stack.dynamodb.send(
        new DeleteItemCommand({
          TableName: stack.tableName,
          Key: { pk: { S: `session#${record.sessionKey}` } },
        }),
      );

      expect(await store.create(record)).toBe(true);
      expect((await store.findConnection(record.connectionId ?? ''))?.sessionKey).toBe(
        record.sessionKey,
      );
    });

    it('refuses a connection id that points to another session', async () => {
      const first = await connection();

      const clash = sessionRecord(now, {
        sessionKey: 'connection-test-key-clash',
        connectionId: first.connectionId,
      });

      expect(await store.create(clash)).toBe(false);
      expect(await store.get(clash.sessionKey)).toBeUndefined();
    });
  });

  describe('Method: commit', () => {
    it('keeps the clear-text instance URL and scope current', async () => {
      const record = await connection();
      await store.tryAcquireLease({
        sessionKey: record.sessionKey,
        owner: 'holder',
        now,
        leaseEndedBy: now,
        leaseUntil: now + 12_000,
      });

      await store.commit({
        sessionKey: record.sessionKey,
        owner: 'holder',
        version: 1,
        sealed: record.sealed,
        committedAt: now,
        idleExpiresAt: now + DAY,
        instanceUrl: 'https://moved.my.salesforce.com',
        scope: 'api refresh_token id',
      });

      const found = await store.findConnection(record.connectionId ?? '');
      expect(found?.instanceUrl).toBe('https://moved.my.salesforce.com');
      expect(found?.scope).toBe('api refresh_token id');
      expect(found?.committedAt).toBe(now);
    });
  });

  describe('Method: listConnections', () => {
    const orgId = '00D0000000000PAGE';

    it('pages through every live connection of an organization, in order, once each', async () => {
      const created = [];
      for (let index = 0; index < 25; index++) {
        created.push(await connection({ orgId, userId: `005USER${index % 3}` }));
      }
      await connection({ orgId, userId: '005USER9', idleExpiresAt: now - 1 });
      await connection({ orgId: '00D0000000000OTHR' });

      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.listConnections({ orgId, limit: 10, cursor, now });
        expect(page.connections.length).toBeLessThanOrEqual(10);
        seen.push(...page.connections.map((c) => c.connectionId));
        cursor = page.nextCursor;
        pages++;
      } while (cursor !== undefined && pages < 10);

      expect(new Set(seen).size).toBe(25);
      expect(seen.sort()).toEqual(created.map((c) => c.connectionId ?? '').sort());
    });

    it('lists one user only', async () => {
      const userOnly = await store.listConnections({
        orgId,
        userId: '005USER1',
        limit: 100,
        now,
      });

      expect(userOnly.connections).toHaveLength(8);
      expect(userOnly.connections.every((c) => c.userId === '005USER1')).toBe(true);
      expect(userOnly.nextCursor).toBeUndefined();
    });

    it('answers metadata only', async () => {
      const page = await store.listConnections({ orgId, limit: 1, now });

      expect(Object.keys(page.connections[0] ?? {}).sort()).toEqual(
        [
          'absoluteExpiresAt',
          'connectionId',
          'createdAt',
          'idleExpiresAt',
          'instanceUrl',
          'lastRefreshedAt',
          'orgId',
          'scope',
          'userId',
          'version',
        ].sort(),
      );
    });

    it('refuses a forged cursor or one from another user', async () => {
      const page = await store.listConnections({ orgId, userId: '005USER0', limit: 2, now });

      await expect(
        store.listConnections({
          orgId,
          userId: '005USER1',
          limit: 2,
          cursor: page.nextCursor,
          now,
        }),
      ).rejects.toBeInstanceOf(InvalidRequestError);
      await expect(
        store.listConnections({ orgId, limit: 2, cursor: 'bm90LWpzb24', now }),
      ).rejects.toBeInstanceOf(InvalidRequestError);
    });
  });
});
