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
    const remove = t.store.delete.bind(t.store);
    t.store.delete = async (key) => {
      order.push('delete');
      return remove(key);
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
    t.store.delete = async () => {
      throw new TemporarilyUnavailableError('DynamoDB is temporarily unavailable.');
    };

    await expect(endSession(t.deps, t.sessionKey, 'logout')).rejects.toBeInstanceOf(
      TemporarilyUnavailableError,
    );
    expect(t.revoked).toHaveLength(0);
  });
});
