import { describe, expect, it } from 'vitest';
import { TokenVault } from '../../../functions/broker/envelope.ts';
import { TemporarilyUnavailableError } from '../../../functions/broker/errors.ts';
import { type EndSessionDependencies, endSession } from '../../../functions/broker/logout.ts';
import type { SessionRecord } from '../../../functions/broker/ports.ts';
import {
  logSafeId,
  newSessionHandle,
  sessionKeyOf,
} from '../../../functions/broker/session-handle.ts';
import {
  OAuthRequestError,
  SalesforceUnavailableError,
} from '../../../functions/salesforce/errors.ts';
import { CaptureLog, CaptureMetrics } from '../../support/capture-log.ts';
import { MemoryDataKeys } from '../../support/memory-data-keys.ts';
import { MemorySessionStore } from '../../support/memory-session-store.ts';

async function setup() {
  const store = new MemorySessionStore();
  const vault = new TokenVault(new MemoryDataKeys());
  const log = new CaptureLog();
  const metrics = new CaptureMetrics();
  const revoked: string[] = [];
  let revokeAnswer: () => Promise<void> = async () => {};
  const deps: EndSessionDependencies = {
    store,
    vault,
    log,
    metrics,
    salesforce: {
      revoke: async (token) => {
        revoked.push(token);
        return revokeAnswer();
      },
    },
  };
  const handle = newSessionHandle();
  const sessionKey = sessionKeyOf(handle);
  const now = Date.now();
  const record: SessionRecord = {
    sessionKey,
    version: 2,
    sealed: vault.seal(await vault.generateDataKey(sessionKey), sessionKey, 2, {
      accessToken: 'access-canary',
      refreshToken: 'refresh-canary',
      instanceUrl: 'https://acme.my.salesforce.com',
      issuedAt: String(now),
      scope: 'api refresh_token',
      identityUrl: 'https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS',
    }),
    committedAt: now,
    createdAt: now,
    absoluteExpiresAt: now + 60_000,
    idleExpiresAt: now + 60_000,
    orgId: '00Dxx0000001gPLEAY',
    userId: '005xx000001Sv6AAAS',
  };
  await store.create(record);
  return {
    deps,
    store,
    log,
    metrics,
    revoked,
    handle,
    sessionKey,
    record,
    revokeAnswer(fn: () => Promise<void>) {
      revokeAnswer = fn;
    },
  };
}

describe('Function: endSession', () => {
  it('deletes the session, then revokes its refresh token', async () => {
    // Prepare
    const t = await setup();
    const order: string[] = [];
    const remove = t.store.deleteVersion.bind(t.store);
    t.store.deleteVersion = async (key, version) => {
      order.push('delete');
      return remove(key, version);
    };
    t.revokeAnswer(async () => {
      order.push('revoke');
    });

    // Act
    const outcome = await endSession(t.deps, t.sessionKey, 'logout');

    // Assert
    expect(outcome).toBe('revoked');
    expect(order).toEqual(['delete', 'revoke']);
    expect(t.store.items.size).toBe(0);
    expect(t.revoked).toEqual(['refresh-canary']);
  });

  it('is idempotent: an absent session is not an error and calls nobody', async () => {
    const t = await setup();
    await endSession(t.deps, t.sessionKey, 'logout');

    const outcome = await endSession(t.deps, t.sessionKey, 'logout');

    expect(outcome).toBe('absent');
    expect(t.revoked).toHaveLength(1);
  });

  it.each([
    ['Salesforce 503', () => new SalesforceUnavailableError('Salesforce answered HTTP 503')],
    ['a timeout', () => new SalesforceUnavailableError('Salesforce did not answer within 8 ms')],
    [
      'unsupported_token_type',
      () => new OAuthRequestError('x', { error: 'unsupported_token_type' }),
    ],
  ])('logs revoke_failed (alarm, log-safe id, no token) on %s', async (_why, fail) => {
    const t = await setup();
    t.revokeAnswer(async () => {
      throw fail();
    });

    const outcome = await endSession(t.deps, t.sessionKey, 'logout');

    expect(outcome).toBe('revoke_failed');
    expect(t.store.items.size).toBe(0);
    const entry = t.log.entries.find((e) => e.attributes.event === 'revoke_failed');
    expect(entry?.level).toBe('error');
    expect(entry?.attributes).toMatchObject({ alarm: true, session: logSafeId(t.sessionKey) });
    expect(t.metrics.get('RevokeFailed')).toBe(1);
    const text = t.log.text();
    for (const secret of ['refresh-canary', 'access-canary', t.handle, t.sessionKey]) {
      expect(text).not.toContain(secret);
    }
  });

  it('logs revoke_failed when the deleted item does not decrypt', async () => {
    const t = await setup();
    const damaged = { ...t.record, version: 9 };
    t.store.items.set(t.sessionKey, damaged);

    const outcome = await endSession(t.deps, t.sessionKey, 'logout');

    expect(outcome).toBe('revoke_failed');
    expect(t.revoked).toHaveLength(0);
    expect(
      t.log.entries.find((e) => e.attributes.event === 'revoke_failed')?.attributes,
    ).toMatchObject({ integrity: true });
  });

  it('propagates a store failure: nothing was deleted, the caller must retry', async () => {
    const t = await setup();
    t.store.deleteVersion = async () => {
      throw new TemporarilyUnavailableError('DynamoDB is temporarily unavailable.');
    };

    await expect(endSession(t.deps, t.sessionKey, 'logout')).rejects.toBeInstanceOf(
      TemporarilyUnavailableError,
    );
    expect(t.revoked).toHaveLength(0);
  });

  it('revokes when the delete landed but its answer was lost (the SDK retry finds nothing)', async () => {
    // Prepare: the delete is applied, then the answer is lost; the SDK's retry fails its
    // condition against the missing item
    const t = await setup();
    const remove = t.store.deleteVersion.bind(t.store);
    t.store.deleteVersion = async (key, version) => {
      await remove(key, version);
      return 'changed';
    };

    // Act
    const outcome = await endSession(t.deps, t.sessionKey, 'logout');

    // Assert: the grant is ended at Salesforce with the token read before the delete
    expect(outcome).toBe('revoked');
    expect(t.store.items.size).toBe(0);
    expect(t.revoked).toEqual(['refresh-canary']);
  });

  it('ends the version a refresh committed between its read and its delete', async () => {
    // Prepare: a refresh commits version 3 (a rotated refresh token) after the first read
    const t = await setup();
    const read = t.store.get.bind(t.store);
    let reads = 0;
    t.store.get = async (key) => {
      const record = await read(key);
      reads++;
      if (reads === 1 && record) {
        const stored = t.store.items.get(key);
        if (stored) {
          stored.version = 3;
          stored.sealed = t.deps.vault.seal(await t.deps.vault.generateDataKey(key), key, 3, {
            accessToken: 'access-3',
            refreshToken: 'refresh-rotated',
            instanceUrl: 'https://acme.my.salesforce.com',
            issuedAt: String(Date.now()),
            scope: 'api refresh_token',
            identityUrl: 'https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS',
          });
        }
      }
      return record;
    };

    // Act
    const outcome = await endSession(t.deps, t.sessionKey, 'logout');

    // Assert: the rotated token is the one revoked, not the rotated-out one
    expect(outcome).toBe('revoked');
    expect(t.store.items.size).toBe(0);
    expect(t.revoked).toEqual(['refresh-rotated']);
  });

  it('bounds the revocation by the deadline it is given', async () => {
    // Prepare: 1.5 s left of the invocation
    const t = await setup();
    const timeouts: (number | undefined)[] = [];
    t.deps.salesforce.revoke = async (_token, options) => {
      timeouts.push(options?.timeoutMs);
    };
    let now = 1_000_000;

    // Act
    await endSession(t.deps, t.sessionKey, 'logout', { at: now + 1500, now: () => now++ });

    // Assert
    expect(timeouts).toHaveLength(1);
    expect(timeouts[0]).toBeGreaterThan(0);
    expect(timeouts[0]).toBeLessThanOrEqual(1500);
  });
});
