/**
 * Ended connections explain themselves (README "Ended connections"): over real HTTP on
 * loopback, against dynalite, the KMS and Secrets Manager emulators and the fake
 * Salesforce. A grant Salesforce ended (`invalid_grant`) or a connection the service API
 * ended keeps a token-free tombstone: `GET /connections/{id}` answers `status: ended`
 * with why and when, and `/refresh` with its handle answers `reauthentication_required`
 * without asking Salesforce. The user's own logout keeps none.
 */
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { endSession } from '../../functions/broker/logout.ts';
import { sessionKeyOf } from '../../functions/broker/session-handle.ts';
import { ITEM_PREFIX } from '../../functions/shared/constants.ts';
import { type BrokerHarness, readJson, startBrokerHarness } from '../support/broker-harness.ts';

describe('Ended connections: tombstones', () => {
  let broker: BrokerHarness;

  beforeAll(async () => {
    broker = await startBrokerHarness({ salesforce: { rotation: true } });
  });

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

  const describeConnection = async (connectionId: string) => {
    const response = await broker.service.fetch(`/connections/${connectionId}`);
    return { status: response.status, body: await readJson(response) };
  };

  it('a grant Salesforce ended: GET answers ended (reauthentication_required), /refresh 401 with no upstream call', async () => {
    // Prepare
    const session = await broker.seedSession();
    fake().inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_grant',
      description: 'expired access/refresh token',
      times: 1,
    });
    const endedBy = await broker.refresh(session.handle);
    expect(endedBy.status).toBe(401);
    fake().resetCalls();
    const before = Date.now();

    // Act
    const described = await describeConnection(session.connectionId);
    const again = await broker.refresh(session.handle);
    const listing = await readJson(
      await broker.service.fetch(`/connections?organization_id=${fake().orgId}`),
    );

    // Assert
    expect(described.status).toBe(200);
    expect(described.body).toMatchObject({
      connection_id: session.connectionId,
      organization_id: fake().orgId,
      status: 'ended',
      ended_reason: 'reauthentication_required',
    });
    expect(Date.parse(String(described.body.ended_at))).toBeLessThanOrEqual(before);
    expect(Object.keys(described.body).sort()).toEqual([
      'connection_id',
      'ended_at',
      'ended_reason',
      'organization_id',
      'status',
      'user_id',
    ]);
    expect(again.status).toBe(401);
    expect(await readJson(again)).toMatchObject({ error: 'reauthentication_required' });
    expect(fake().calls.tokenRefresh).toBe(0);
    // Listing shows live connections only.
    const listed = (listing.connections as { connection_id: string }[]).map((c) => c.connection_id);
    expect(listed).not.toContain(session.connectionId);
  });

  it('a connection the service API ended: GET answers ended (service_api), /refresh 401 with no upstream call', async () => {
    // Prepare
    const session = await broker.seedSession();
    const ended = await broker.service.fetch(`/connections/${session.connectionId}`, {
      method: 'DELETE',
    });
    expect(ended.status).toBe(204);
    fake().resetCalls();

    // Act
    const described = await describeConnection(session.connectionId);
    const again = await broker.refresh(session.handle);
    const token = await broker.service.fetch(`/connections/${session.connectionId}/token`, {
      method: 'POST',
    });

    // Assert
    expect(described.status).toBe(200);
    expect(described.body).toMatchObject({ status: 'ended', ended_reason: 'service_api' });
    expect(again.status).toBe(401);
    expect(await readJson(again)).toMatchObject({ error: 'reauthentication_required' });
    expect(token.status).toBe(404);
    expect(fake().calls.tokenRefresh).toBe(0);
  });

  it('keeps no token in the tombstones: only ids, the reason, the time and the TTL', async () => {
    // Prepare
    const session = await broker.seedSession();

    // Act
    await broker.service.fetch(`/connections/${session.connectionId}`, { method: 'DELETE' });
    const items = await Promise.all(
      [
        ITEM_PREFIX.ended + sessionKeyOf(session.handle),
        ITEM_PREFIX.connection + session.connectionId,
      ].map(async (pk) => {
        const result = await broker.stack.dynamodb.send(
          new GetItemCommand({
            TableName: broker.stack.tableName,
            Key: { pk: { S: pk } },
            ConsistentRead: true,
          }),
        );
        return result.Item;
      }),
    );

    // Assert
    for (const item of items) {
      expect(item).toBeDefined();
      const text = JSON.stringify(item);
      expect(text).not.toContain(session.refreshToken);
      expect(text).not.toContain(session.accessToken);
      expect(Object.keys(item ?? {})).not.toContain('ciphertext');
      expect(Number(item?.ttl?.N) * 1000).toBeGreaterThan(Date.now() + 29 * 86_400_000);
    }
  });

  it("the user's own logout keeps no tombstone: GET 404, /refresh invalid_session", async () => {
    // Prepare
    const session = await broker.seedSession();
    await endSession(broker.runtime, sessionKeyOf(session.handle), 'logout');

    // Act
    const described = await describeConnection(session.connectionId);
    const again = await broker.refresh(session.handle);

    // Assert
    expect(described.status).toBe(404);
    expect(await readJson(again)).toMatchObject({ error: 'invalid_session' });
  });
});
