/**
 * The publisher on stream records built from real item images: the session and alert
 * stores write to dynalite through the change capture (`local/dynamodb-change-capture.ts`),
 * which records what DynamoDB Streams would (`NEW_AND_OLD_IMAGES`); those records go
 * through the mapping (`functions/aws/stream-events.ts`), the mapping's filter patterns and
 * the publisher's batch logic with a bus that fails on demand.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbAlertStore } from '../../functions/aws/dynamodb-alert-store.ts';
import { DynamoDbSessionStore } from '../../functions/aws/dynamodb-session-store.ts';
import { eventsOfRecord, STREAM_FILTER_PATTERNS } from '../../functions/aws/stream-events.ts';
import { createPublisherHandler } from '../../functions/aws/stream-publisher.ts';
import { endedMark } from '../../functions/broker/connection.ts';
import type { BrokerEvent, EventBus, PutOutcome } from '../../functions/broker/events.ts';
import { matchesPattern } from '../../local/dynamodb-change-capture.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { ORG_ID, sessionRecord, USER_ID } from '../support/fixtures.ts';

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const T0 = Date.UTC(2026, 0, 5, 9, 0, 0);
const CONNECTION = 'con_AAAAAAAAAAAAAAAAAAAAAA';

let stack: LocalStack;
let records: readonly DynamoDBRecord[];
let createdAt = 0;

beforeAll(async () => {
  stack = await startLocalStack({
    salesforce: false,
    salesforceLoginUrl: 'http://127.0.0.1:9',
    events: true,
  });
  const client = new DynamoDBClient({
    endpoint: stack.env.AWS_ENDPOINT_URL_DYNAMODB,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const store = new DynamoDbSessionStore({ tableName: stack.tableName, client });
  const alerts = new DynamoDbAlertStore({ tableName: stack.tableName, client });
  const key = 'stream-records-session';
  const lease = (owner: string, now: number) =>
    store.tryAcquireLease({
      sessionKey: key,
      owner,
      now,
      leaseEndedBy: now,
      leaseUntil: now + 5_000,
    });
  const release = (owner: string, failedAt: number, reportFailing?: boolean) =>
    store.releaseLease({
      sessionKey: key,
      owner,
      failedAt,
      failureKind: 'unavailable',
      ...(reportFailing ? { reportFailing } : {}),
    });

  // A connection's life, as the broker writes it.
  const created = sessionRecord(T0, {
    sessionKey: key,
    connectionId: CONNECTION,
    orgId: ORG_ID,
    userId: USER_ID,
  });
  createdAt = created.createdAt;
  await store.create(created);
  await lease('a', T0 + 1_000);
  await release('a', T0 + 1_000); // the first transient failure: failingSince
  await lease('b', T0 + 901_000);
  await release('b', T0 + 901_000, true); // past failingAfterSeconds: failingReportedAt
  await lease('c', T0 + 902_000);
  await release('c', T0 + 902_000, true); // already reported: unchanged mark
  const held = await lease('d', T0 + 903_000);
  if (!held.acquired) throw new Error('no lease');
  await store.commit({
    sessionKey: key,
    owner: 'd',
    version: held.record.version,
    sealed: held.record.sealed,
    committedAt: T0 + 903_500,
    idleExpiresAt: T0 + 86_400_000,
  });
  await alerts.raise(
    { app: 'default', upstreamError: 'invalid_client', at: T0 + 904_000 },
    300_000,
  );
  await alerts.raise(
    { app: 'default', upstreamError: 'invalid_client', at: T0 + 905_000 },
    300_000,
  );
  await alerts.raise(
    { app: 'default', upstreamError: 'invalid_client', at: T0 + 1_300_000 },
    300_000,
  );
  await store.deleteVersion(
    key,
    held.record.version + 1,
    {},
    {
      ...endedMark({}, 'reauthentication_required', T0 + 2_000_000),
      upstreamError: 'invalid_grant',
      upstreamDescription: 'expired access/refresh token',
    },
  );
  records = [...(stack.events?.capture.records ?? [])];
}, 30_000);

afterAll(async () => {
  await stack?.close();
});

const passesFilters = (record: DynamoDBRecord) =>
  STREAM_FILTER_PATTERNS.some((pattern) => matchesPattern(record, pattern));

describe('stream records from real item images', () => {
  it('map to exactly the events of the connection, in order, with their details', () => {
    // Act
    const events = records.flatMap((record) => eventsOfRecord(record));

    // Assert
    expect(events.map((event) => [event.detailType, event.detail.at])).toEqual([
      ['Connection Created', new Date(createdAt).toISOString()],
      ['Connection Refresh Failing', new Date(T0 + 901_000).toISOString()],
      ['Connection Recovered', new Date(T0 + 903_500).toISOString()],
      ['Upstream Misconfigured', new Date(T0 + 904_000).toISOString()],
      ['Upstream Misconfigured', new Date(T0 + 1_300_000).toISOString()],
      ['Connection Ended', new Date(T0 + 2_000_000).toISOString()],
    ]);
    expect(events[1]?.detail).toMatchObject({
      connection_id: CONNECTION,
      organization_id: ORG_ID,
      user_id: USER_ID,
      failing_since: new Date(T0 + 1_000).toISOString(),
    });
    expect(events[3]?.detail).toMatchObject({
      connection_id: null,
      salesforce_app: 'default',
      salesforce_error: 'invalid_client',
    });
    expect(events[5]?.detail).toMatchObject({
      connection_id: CONNECTION,
      reason: 'reauthentication_required',
      salesforce_error: 'invalid_grant',
      salesforce_error_description: 'expired access/refresh token',
    });
    expect(new Set(events.map((event) => event.detail.event_id)).size).toBe(events.length);
  });

  it('pass the filters exactly when they make an event: lease writes never invoke the publisher', () => {
    // Act
    const filtered = records.filter(passesFilters);

    // Assert
    expect(records.length).toBeGreaterThan(filtered.length + 8);
    expect(filtered.map((record) => eventsOfRecord(record).length)).toEqual(filtered.map(() => 1));
    for (const record of records.filter((candidate) => !passesFilters(candidate))) {
      expect(eventsOfRecord(record)).toEqual([]);
    }
  });

  it('are answered with the first record the bus refused, whole call or single entry', async () => {
    // Prepare: a bus that refuses the 4th entry of its first call, then fails a call.
    const filtered = records.filter(passesFilters);
    const puts: BrokerEvent[][] = [];
    let call = 0;
    const bus: EventBus = {
      async put(events) {
        call += 1;
        puts.push([...events]);
        if (call === 2) throw new Error('EventBridge is down');
        return events.map(
          (_, index): PutOutcome => (call === 1 && index === 3 ? 'InternalFailure' : undefined),
        );
      },
    };
    const handler = createPublisherHandler({ bus, log: silent });

    // Act
    const first = await handler({ Records: filtered });
    const second = await handler({ Records: filtered.slice(3) });
    const third = await handler({ Records: filtered.slice(3) });

    // Assert
    const sequence = (index: number) => filtered[index]?.dynamodb?.SequenceNumber;
    expect(first.batchItemFailures).toEqual([{ itemIdentifier: sequence(3) }]);
    expect(second.batchItemFailures).toEqual([{ itemIdentifier: sequence(3) }]);
    expect(third.batchItemFailures).toEqual([]);
    expect(puts.map((events) => events.length)).toEqual([6, 3, 3]);
  });
});
