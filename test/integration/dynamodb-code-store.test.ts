import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  BROKER_CODE_RETENTION_MS,
  brokerCodeKeyOf,
  newBrokerCode,
  sealHandle,
} from '../../functions/broker/broker-code.ts';
import { TemporarilyUnavailableError } from '../../functions/broker/errors.ts';
import { issueBrokerCode } from '../../functions/broker/handoff.ts';
import type { BrokerCodeRecord } from '../../functions/broker/ports.ts';
import { newSessionHandle } from '../../functions/broker/session-handle.ts';
import { type BrokerHarness, startBrokerHarness } from '../support/broker-harness.ts';
import { proxyOf, resetFaultsAndCaptures } from '../support/fault-kit.ts';

/**
 * The broker codes of the handoff in DynamoDB (dynalite behind the fault proxy): stored as
 * a hash only, spent exactly once by a conditional write, kept a day so that a replay is
 * recognised, and a redeeming write whose answer is lost recognised as the caller's own.
 */
let broker: BrokerHarness;

beforeAll(async () => {
  broker = await startBrokerHarness({ dynamodbFaultProxy: true });
});

afterAll(async () => {
  await broker?.close();
});

beforeEach(() => resetFaultsAndCaptures(broker));

const codes = () => broker.runtime.codes;
const dynamo = () => proxyOf(broker);

function newRecord(): { code: string; record: BrokerCodeRecord } {
  const code = newBrokerCode();
  const now = Date.now();
  return {
    code,
    record: {
      codeKey: brokerCodeKeyOf(code),
      clientId: 'ios',
      redirectUri: 'com.example.app:/oauth2redirect',
      codeChallenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      connectionId: 'con_AAAAAAAAAAAAAAAAAAAAAA',
      sessionKey: 'session-key',
      sealedHandle: sealHandle(code, newSessionHandle()),
      createdAt: now,
      expiresAt: now + 60_000,
    },
  };
}

describe('DynamoDbBrokerCodeStore', () => {
  it('stores the code under its hash, never in clear, kept a day past its expiry', async () => {
    // Prepare
    const { code, record } = newRecord();

    // Act
    const created = await codes().create(record);
    const again = await codes().create(record);

    // Assert
    expect(created).toBe(true);
    expect(again).toBe(false);
    const raw = await broker.stack.dynamodb.send(
      new GetItemCommand({
        TableName: broker.stack.tableName,
        Key: { pk: { S: `code#${record.codeKey}` } },
        ConsistentRead: true,
      }),
    );
    expect(raw.Item?.kind?.S).toBe('code');
    expect(Number(raw.Item?.ttl?.N)).toBe(
      Math.ceil((record.expiresAt + BROKER_CODE_RETENTION_MS) / 1000),
    );
    expect(JSON.stringify(raw.Item)).not.toContain(code);
    expect(await codes().get(record.codeKey)).toEqual({
      ...record,
      sealedHandle: expect.any(Uint8Array),
      redeemedAt: undefined,
      redemptionId: undefined,
    });
  });

  it('spends a code exactly once among concurrent redemptions, then knows it as replayed', async () => {
    // Prepare
    const { record } = newRecord();
    await codes().create(record);

    // Act
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, (_, index) =>
        codes().redeem(record.codeKey, { redemptionId: `r${index}`, now: Date.now() }),
      ),
    );
    const later = await codes().redeem(record.codeKey, { redemptionId: 'late', now: Date.now() });

    // Assert
    expect(outcomes.filter((o) => o.outcome === 'first')).toHaveLength(1);
    expect(outcomes.filter((o) => o.outcome === 'replayed')).toHaveLength(9);
    expect(later.outcome).toBe('replayed');
    expect(
      await codes().redeem(brokerCodeKeyOf(newBrokerCode()), { redemptionId: 'x', now: 1 }),
    ).toEqual({ outcome: 'unknown' });
  });

  it('recognises its own redeeming write when the answer was lost', async () => {
    // Prepare: the update lands, then the answer is a 500; the SDK's retry fails its condition
    const { record } = newRecord();
    await codes().create(record);
    dynamo().inject({ operation: 'UpdateItem', kind: 'apply-then-internal', match: 'code#' });

    // Act
    const outcome = await codes().redeem(record.codeKey, { redemptionId: 'mine', now: 1 });

    // Assert
    expect(dynamo().faulted.UpdateItem).toBe(1);
    expect(outcome.outcome).toBe('first');
  });

  it('leaves the code unspent when the write never landed, so the app can retry', async () => {
    // Prepare: every attempt of the SDK fails before the write applies
    const { record } = newRecord();
    await codes().create(record);
    dynamo().inject({ operation: 'UpdateItem', kind: 'internal', match: 'code#', times: 3 });

    // Act
    const failed = codes().redeem(record.codeKey, { redemptionId: 'one', now: 1 });

    // Assert
    await expect(failed).rejects.toBeInstanceOf(TemporarilyUnavailableError);
    const retried = await codes().redeem(record.codeKey, { redemptionId: 'two', now: 1 });
    expect(retried.outcome).toBe('first');
  });

  it('issueBrokerCode reads back a put whose answer was lost', async () => {
    // Prepare
    dynamo().inject({ operation: 'PutItem', kind: 'apply-then-internal', match: 'code#' });
    const grant = {
      handoff: {
        clientId: 'ios',
        redirectUri: 'com.example.app:/oauth2redirect',
        appState: 'state',
        codeChallenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      },
      connectionId: 'con_AAAAAAAAAAAAAAAAAAAAAA',
      sessionKey: 'session-key',
      handle: newSessionHandle(),
    };

    // Act
    const code = await issueBrokerCode(
      { codes: codes(), clock: { now: () => Date.now() } },
      grant,
      { timeoutMs: 3000 },
    );

    // Assert
    expect(dynamo().faulted.PutItem).toBe(1);
    expect(code).toBeDefined();
    expect(await codes().get(brokerCodeKeyOf(code ?? ''))).toMatchObject({ clientId: 'ios' });
  });
});
