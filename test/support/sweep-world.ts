/**
 * A table with many connections for the sweep (README "Keep-alive and expiry"): filler
 * sessions written straight to dynalite with `BatchWriteItem` (not due, dummy ciphertext:
 * the sweep must never open them), and a few real ones (sealed by the runtime's vault for
 * grants the fake Salesforce knows) made due for keep-alive or past their expiry.
 */
import { type AttributeValue, BatchWriteItemCommand } from '@aws-sdk/client-dynamodb';
import { sweepShardOf } from '../../functions/aws/dynamodb-session-store.ts';
import { sweepAtOf } from '../../functions/broker/connection.ts';
import type { Clock } from '../../functions/broker/ports.ts';
import { runSweep, type SweepDependencies } from '../../functions/broker/sweep.ts';
import { ITEM_PREFIX, SWEEP_INDEX } from '../../functions/shared/constants.ts';
import type { BrokerHarness, SeededSession } from './broker-harness.ts';
import { DAY } from './fixtures.ts';

/** Writes `count` sessions that are not due before `now + 1 day`, 25 per request. */
export async function seedFiller(broker: BrokerHarness, count: number, now: number) {
  const items: Record<string, AttributeValue>[] = [];
  for (let index = 0; index < count; index++) {
    const sessionKey = `filler${String(index).padStart(10, '0')}${Math.random().toString(36).slice(2, 10)}`;
    const committedAt = now - (index % 19) * DAY;
    const idleExpiresAt = now + 2 * DAY + (index % 5) * DAY;
    const absoluteExpiresAt = now + 25 * DAY;
    items.push({
      pk: { S: ITEM_PREFIX.session + sessionKey },
      kind: { S: 'session' },
      version: { N: '1' },
      ciphertext: { B: new Uint8Array(64) },
      encryptedDataKey: { B: new Uint8Array(32) },
      committedAt: { N: String(committedAt) },
      createdAt: { N: String(committedAt) },
      absoluteExpiresAt: { N: String(absoluteExpiresAt) },
      idleExpiresAt: { N: String(idleExpiresAt) },
      orgId: { S: '00Dxx0000001gPLEAY' },
      userId: { S: '005xx000001Sv6AAAS' },
      [SWEEP_INDEX.partitionKey]: { S: sweepShardOf(sessionKey) },
      [SWEEP_INDEX.sortKey]: {
        N: String(sweepAtOf({ committedAt, idleExpiresAt, absoluteExpiresAt })),
      },
    });
  }
  const batches: Record<string, AttributeValue>[][] = [];
  for (let start = 0; start < items.length; start += 25) {
    batches.push(items.slice(start, start + 25));
  }
  // A few requests at once: dynalite is one process.
  for (let start = 0; start < batches.length; start += 8) {
    await Promise.all(
      batches.slice(start, start + 8).map((batch) =>
        broker.stack.dynamodb.send(
          new BatchWriteItemCommand({
            RequestItems: {
              [broker.stack.tableName]: batch.map((Item) => ({ PutRequest: { Item } })),
            },
          }),
        ),
      ),
    );
  }
}

/** A real session whose last refresh is 21 days old: due for keep-alive. */
export async function seedKeepAliveDue(broker: BrokerHarness): Promise<SeededSession> {
  const session = await broker.seedSession({ committedAgoMs: 21 * DAY });
  const record = await broker.stored(session.handle);
  if (!record) throw new Error('not stored');
  const raw = (await broker.rawItem(session.handle)) ?? {};
  const read = (name: string) => Number((raw[name] as { N: string }).N);
  const committedAt = read('committedAt');
  const idleExpiresAt = read('idleExpiresAt');
  const absoluteExpiresAt = read('absoluteExpiresAt');
  await markDue(broker, session, sweepAtOf({ committedAt, idleExpiresAt, absoluteExpiresAt }));
  return session;
}

/** A real session past its idle expiry (an hour ago): due for expiry. */
export async function seedExpired(broker: BrokerHarness, now: number): Promise<SeededSession> {
  const session = await broker.seedSession();
  await broker.patchItem(session.handle, { idleExpiresAt: { N: String(now - 3_600_000) } });
  await markDue(broker, session, now - 3_600_000);
  return session;
}

async function markDue(broker: BrokerHarness, session: SeededSession, sweepAt: number) {
  const raw = (await broker.rawItem(session.handle)) ?? {};
  const pk = (raw.pk as { S: string }).S;
  await broker.patchItem(session.handle, {
    [SWEEP_INDEX.partitionKey]: { S: sweepShardOf(pk.slice(ITEM_PREFIX.session.length)) },
    [SWEEP_INDEX.sortKey]: { N: String(sweepAt) },
  });
}

/**
 * A clock that moves only when the sweep sleeps: pacing is read off it exactly, with no
 * wall time in the assertions. `calls` are the clock times the fake Salesforce was called.
 */
export function steppedTime(start: number): {
  clock: Clock;
  sleep: (milliseconds: number) => Promise<void>;
  slept: number[];
} {
  let now = start;
  const slept: number[] = [];
  return {
    clock: { now: () => now },
    sleep: async (milliseconds) => {
      slept.push(milliseconds);
      now += milliseconds;
    },
    slept,
  };
}

/** The sweep's dependencies on the harness's runtime, with `time` and call recording. */
export function sweepDependencies(
  broker: BrokerHarness,
  time: { clock: Clock; sleep: (milliseconds: number) => Promise<void> },
  upstreamCalls: number[] = [],
): SweepDependencies {
  const { runtime } = broker;
  const index = runtime.store as unknown as SweepDependencies['index'];
  const salesforce = runtime.salesforce;
  return {
    ...runtime,
    index,
    clock: time.clock,
    sleep: time.sleep,
    random: () => 0.5,
    salesforce: {
      refreshTokenGrant: (...args: Parameters<typeof salesforce.refreshTokenGrant>) => {
        upstreamCalls.push(time.clock.now());
        return salesforce.refreshTokenGrant(...args);
      },
      revoke: (...args: Parameters<typeof salesforce.revoke>) => {
        upstreamCalls.push(time.clock.now());
        return salesforce.revoke(...args);
      },
    },
  };
}

export { runSweep };
