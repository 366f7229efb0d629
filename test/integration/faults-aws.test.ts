import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sessionKeyOf } from '../../functions/broker/session-handle.ts';
import type { DynamoDbFaultProxy } from '../../local/dynamodb-fault-proxy.ts';
import { type BrokerHarness, readJson, startBrokerHarness } from '../support/broker-harness.ts';
import {
  extraBroker,
  fakeOf,
  proxyOf,
  resetFaultsAndCaptures,
  sessionState,
  waitUntil,
} from '../support/fault-kit.ts';

/**
 * DynamoDB, KMS and Secrets Manager faults over real HTTP. DynamoDB faults come from a
 * proxy in front of dynalite; the AWS SDK retries throttling and 5xx itself (the runtime
 * sets `maxAttempts: 3`), so `times: 3` is what one failed SDK call takes.
 *
 * The three `UpdateItem`s of a refresh are told apart by their condition expressions.
 */
const ACQUIRE = 'attribute_exists(pk)';
const COMMIT = 'leaseOwner = :owner AND version = :version';
const RELEASE = 'SET lastFailureAt';

let broker: BrokerHarness;

beforeAll(async () => {
  broker = await startBrokerHarness({
    dynamodbFaultProxy: true,
    salesforce: {
      rotation: true,
      reuseDetection: true,
      concurrencyBlock: true,
      tokenLatencyMs: 20,
    },
    // Every refresh reads the secret, so a Secrets Manager outage meets a warm cache. The
    // lease leaves room for the SDK's throttling backoff (up to 1 s, then 2 s) before the
    // holder still needs 1 s for Salesforce and 1.5 s for the commit.
    env: {
      SECRET_CACHE_TTL_SECONDS: '0',
      LEASE_MS: '5000',
      UPSTREAM_TIMEOUT_MS: '1500',
      WAIT_BUDGET_MS: '4000',
    },
  });
});

afterAll(async () => {
  await broker?.close();
});

beforeEach(() => resetFaultsAndCaptures(broker));

const fake = () => fakeOf(broker);
const dynamo = () => proxyOf(broker);

/** Removes what is left of the injected faults, so the assertions read the real state. */
function clearAllFaults() {
  dynamo().clearFaults();
  broker.stack.kms.clearFaults();
  broker.stack.secretsManager.clearFaults();
}

const untouched = { exists: true, version: 1, keepsSeededToken: true, storedTokenActive: true };

describe('DynamoDB: the lease acquire', () => {
  it.each([
    ['ProvisionedThroughputExceeded', 'throughput', '2'],
    ['InternalServerError', 'internal', '1'],
  ] as const)('answers 503 when the acquire fails with %s', async (_name, kind, retryAfter) => {
    // Prepare
    const session = await broker.seedSession();
    dynamo().inject({ operation: 'UpdateItem', match: ACQUIRE, kind, times: 3 });

    // Act
    const response = await broker.refresh(session.handle);

    // Assert
    expect(response.status).toBe(503);
    expect(await readJson(response)).toMatchObject({ error: 'temporarily_unavailable' });
    expect(response.headers.get('retry-after')).toBe(retryAfter);
    expect(dynamo().faulted.UpdateItem).toBeGreaterThanOrEqual(3);
    expect(fake().calls.token).toBe(0);
    clearAllFaults();
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      ...untouched,
      leaseHeld: false,
    });
  });

  it('gets through a throttled attempt by the SDK retry alone', async () => {
    const session = await broker.seedSession();
    dynamo().inject({ operation: 'UpdateItem', match: ACQUIRE, kind: 'throttle' });

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(200);
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
    });
  });

  it('takes its own lease when the acquire was applied but answered 500', async () => {
    // Prepare: the write lands, the answer is a 500, the SDK's retry fails its condition
    const session = await broker.seedSession();
    dynamo().inject({ operation: 'UpdateItem', match: ACQUIRE, kind: 'apply-then-internal' });
    const started = Date.now();

    // Act
    const response = await broker.refresh(session.handle);

    // Assert: no wait for the lease it holds itself
    expect(response.status).toBe(200);
    expect(broker.log.events()).toContain('acquire_answer_lost');
    expect(Date.now() - started).toBeLessThan(1500);
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
      leaseHeld: false,
    });
  });
});

describe("DynamoDB: the waiter's read", () => {
  async function holderAndWaiter(fault: Parameters<DynamoDbFaultProxy['inject']>[0]) {
    const session = await broker.seedSession();
    fake().inject({ endpoint: 'token', kind: 'delay', ms: 500 });
    const holder = broker.refresh(session.handle);
    await waitUntil(() => fake().calls.tokenRefresh === 1);
    dynamo().inject(fault);
    const waiter = await broker.refresh(session.handle);
    return { session, holder: await holder, waiter };
  }

  it('answers the waiter 503 when its reads are throttled, and the holder still commits', async () => {
    const { session, holder, waiter } = await holderAndWaiter({
      operation: 'GetItem',
      kind: 'throughput',
      times: 3,
    });

    expect(waiter.status).toBe(503);
    expect(await readJson(waiter)).toMatchObject({ error: 'temporarily_unavailable' });
    expect(holder.status).toBe(200);
    expect(fake().calls.tokenRefresh).toBe(1);
    clearAllFaults();
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
    });
  });

  it('gives the waiter the holder result when the SDK absorbs two 500s', async () => {
    const { holder, waiter } = await holderAndWaiter({
      operation: 'GetItem',
      kind: 'internal',
      times: 2,
    });

    expect(waiter.status).toBe(200);
    expect(holder.status).toBe(200);
    expect((await readJson(waiter)).access_token).toBe((await readJson(holder)).access_token);
    expect(fake().calls.tokenRefresh).toBe(1);
  });
});

describe('DynamoDB: the commit after Salesforce rotated', () => {
  it('retries a failed commit within the lease and stores the rotated token', async () => {
    // Prepare: one whole SDK call of the commit fails (3 attempts)
    const session = await broker.seedSession();
    dynamo().inject({ operation: 'UpdateItem', match: COMMIT, kind: 'throughput', times: 3 });

    // Act
    const response = await broker.refresh(session.handle);

    // Assert
    expect(response.status).toBe(200);
    expect(broker.log.entries.map((entry) => entry.message)).toContain(
      'commit failed; retrying within the lease',
    );
    expect(broker.log.events()).not.toContain('rotation_lost');
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
      leaseHeld: false,
    });
  });

  it('reports rotation_lost when the store stays down for the whole lease', async () => {
    // Prepare
    const session = await broker.seedSession();
    dynamo().inject({
      operation: 'UpdateItem',
      match: COMMIT,
      kind: 'internal',
      times: Number.POSITIVE_INFINITY,
    });
    const revocationsBefore = fake().reuseRevocations;

    // Act
    const response = await broker.refresh(session.handle);
    clearAllFaults();
    const afterFailure = await sessionState(broker, fake(), session);
    const next = await broker.refresh(session.handle);

    // Assert: a distinct alarm; nothing deleted by the broker; the session is then lost
    // because Salesforce rotated the token the broker could not store.
    expect(response.status).toBe(503);
    expect(broker.log.events()).toContain('rotation_lost');
    expect(broker.metrics.get('RotationLost')).toBe(1);
    expect(afterFailure).toMatchObject({
      exists: true,
      version: 1,
      keepsSeededToken: true,
      storedTokenActive: false,
      leaseHeld: false,
    });
    expect(next.status).toBe(401);
    expect(await readJson(next)).toMatchObject({ error: 'reauthentication_required' });
    expect(fake().reuseRevocations - revocationsBefore).toBe(1);
    expect(fake().calls.tokenRefresh).toBe(2);
  });

  it('counts a commit that was applied but answered 500 as committed, with no false alarm', async () => {
    const session = await broker.seedSession();
    dynamo().inject({ operation: 'UpdateItem', match: COMMIT, kind: 'apply-then-internal' });

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(200);
    expect((await readJson(response)).version).toBe(2);
    expect(broker.log.events()).not.toContain('rotation_lost');
    expect(broker.metrics.get('RotationLost')).toBe(0);
    expect(broker.metrics.get('RefreshCommitted')).toBe(1);
    expect(broker.log.events()).toContain('commit_answer_lost');
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
    });
  });

  it('survives a dropped connection on the commit (the SDK retries the network error)', async () => {
    const session = await broker.seedSession();
    dynamo().inject({ operation: 'UpdateItem', match: COMMIT, kind: 'drop' });

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(200);
    expect(broker.log.events()).not.toContain('rotation_lost');
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
    });
  });
});

describe('DynamoDB: the lease release after a Salesforce failure', () => {
  it('answers 503 and lets the lease end by itself when the release fails', async () => {
    const session = await broker.seedSession();
    fake().inject({ endpoint: 'token', kind: 'status', status: 503 });
    dynamo().inject({ operation: 'UpdateItem', match: RELEASE, kind: 'internal', times: 3 });

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(503);
    expect(broker.log.entries.map((entry) => entry.message)).toContain(
      'lease release failed; it ends by itself',
    );
    clearAllFaults();
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      ...untouched,
      leaseHeld: true,
    });
  });
});

describe('KMS', () => {
  it('answers 503 without calling Salesforce when Decrypt is throttled', async () => {
    const session = await broker.seedSession();
    broker.stack.kms.inject({ operation: 'Decrypt', kind: 'throttle', times: 3 });

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(503);
    expect(await readJson(response)).toMatchObject({ error: 'temporarily_unavailable' });
    expect(fake().calls.token).toBe(0);
    clearAllFaults();
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      ...untouched,
      leaseHeld: false,
    });
  });

  it('gets a second data key when the first GenerateDataKey call fails', async () => {
    const session = await broker.seedSession();
    broker.stack.kms.inject({ operation: 'GenerateDataKey', kind: 'internal', times: 3 });

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(200);
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
    });
  });

  it('seals under the current data key when KMS cannot give a new one after Salesforce rotated', async () => {
    const session = await broker.seedSession();
    broker.stack.kms.inject({ operation: 'GenerateDataKey', kind: 'internal', times: 6 });

    const response = await broker.refresh(session.handle);
    const next = await broker.refresh(session.handle, { version: 2 });

    expect(response.status).toBe(200);
    expect(broker.log.events()).toContain('data_key_reused');
    expect(broker.log.events()).not.toContain('rotation_lost');
    expect(next.status).toBe(200);
    clearAllFaults();
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 3,
      storedTokenActive: true,
      leaseHeld: false,
    });
  });

  it('answers 503 and deletes nothing while the key is disabled, then recovers', async () => {
    const session = await broker.seedSession();
    broker.stack.kms.setKeyEnabled(broker.stack.keyId, false);

    const during = await broker.refresh(session.handle);
    broker.stack.kms.setKeyEnabled(broker.stack.keyId, true);
    const after = await broker.refresh(session.handle);

    expect(during.status).toBe(503);
    expect(after.status).toBe(200);
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
    });
  });

  it('answers 503, not 401, when IAM denies Decrypt for the encryption context', async () => {
    const session = await broker.seedSession();
    broker.stack.kms.inject({ operation: 'Decrypt', kind: 'access-denied' });

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(503);
    expect(broker.log.events()).not.toContain('integrity_error');
    expect(fake().calls.token).toBe(0);
    expect(await sessionState(broker, fake(), session)).toMatchObject(untouched);
  });
});

describe('Secrets Manager', () => {
  it('keeps refreshing from the cached secret while Secrets Manager is down', async () => {
    // Prepare: the cache is warm (one successful refresh)
    await broker.refresh((await broker.seedSession()).handle);
    const session = await broker.seedSession();
    const readsBefore = broker.stack.secretsManager.calls.GetSecretValue ?? 0;
    broker.stack.secretsManager.inject({
      operation: 'GetSecretValue',
      kind: 'internal',
      times: Number.POSITIVE_INFINITY,
    });

    // Act
    const response = await broker.refresh(session.handle);

    // Assert: the read was tried (the cache is stale by TTL) and its failure did not matter
    expect(response.status).toBe(200);
    expect(broker.stack.secretsManager.calls.GetSecretValue ?? 0).toBeGreaterThan(readsBefore);
    clearAllFaults();
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
    });
  });

  it('answers 503 on a cold start while Secrets Manager is down, and deletes nothing', async () => {
    const session = await broker.seedSession();
    const cold = await extraBroker(broker);
    broker.stack.secretsManager.inject({
      operation: 'GetSecretValue',
      kind: 'throttle',
      times: Number.POSITIVE_INFINITY,
    });

    const response = await cold.refresh(session.handle);

    expect(response.status).toBe(503);
    expect(await readJson(response)).toMatchObject({ error: 'temporarily_unavailable' });
    expect(fake().calls.token).toBe(0);
    clearAllFaults();
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      ...untouched,
      leaseHeld: false,
    });
    await cold.close();
  });

  it('answers 503, not 502, when the secret cannot be re-read after invalid_client', async () => {
    const session = await broker.seedSession();
    await broker.refresh((await broker.seedSession()).handle);
    fake().inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_client',
      description: 'invalid client credentials',
    });
    broker.stack.secretsManager.inject({
      operation: 'GetSecretValue',
      kind: 'internal',
      times: Number.POSITIVE_INFINITY,
    });

    const response = await broker.refresh(session.handle);

    expect(response.status).toBe(503);
    clearAllFaults();
    expect(await sessionState(broker, fake(), session)).toMatchObject(untouched);
  });
});

describe('A logout that lands between the rotation and the commit', () => {
  it('leaves no live refresh token behind: the rotated one is revoked', async () => {
    // Prepare: the commit is held 800 ms after Salesforce has rotated
    const session = await broker.seedSession();
    dynamo().inject({ operation: 'UpdateItem', match: COMMIT, kind: 'delay', ms: 800 });

    // Act: the logout deletes the session while the commit waits
    const refreshing = broker.refresh(session.handle);
    const until = Date.now() + 3000;
    while (fake().calls.tokenRefresh < 1 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    await broker.runtime.store.deleteVersion(sessionKeyOf(session.handle), 1);
    const response = await refreshing;

    // Assert
    expect(response.status).toBe(401);
    expect(await broker.rawItem(session.handle)).toBeUndefined();
    expect(fake().calls.revoke).toBe(1);
    expect(broker.log.events()).toContain('orphan_revoked');
    expect(broker.log.events()).not.toContain('rotation_lost');
    expect(fake().isRefreshTokenActive(session.refreshToken)).toBe(false);
  });
});
