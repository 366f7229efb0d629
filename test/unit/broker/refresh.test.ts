import { describe, expect, it } from 'vitest';
import { TokenVault } from '../../../functions/broker/envelope.ts';
import {
  InvalidRequestError,
  InvalidSessionError,
  ReauthenticationRequiredError,
  TemporarilyUnavailableError,
  UpstreamMisconfiguredError,
} from '../../../functions/broker/errors.ts';
import type {
  ClientCredentials,
  SessionRecord,
  TokenSet,
} from '../../../functions/broker/ports.ts';
import { type RefreshDependencies, refreshSession } from '../../../functions/broker/refresh.ts';
import { newSessionHandle, sessionKeyOf } from '../../../functions/broker/session-handle.ts';
import type { TokenResponse } from '../../../functions/broker/upstream.ts';
import {
  InvalidClientError,
  InvalidGrantError,
  SalesforceUnavailableError,
  TokenRequestInProgressError,
} from '../../../functions/salesforce/errors.ts';
import { CaptureLog } from '../../support/capture-log.ts';
import { DAY, tokenResponse as sharedTokenResponse } from '../../support/fixtures.ts';
import { MemoryDataKeys } from '../../support/memory-data-keys.ts';
import { MemorySessionStore } from '../../support/memory-session-store.ts';

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const yieldBriefly = () => new Promise<void>((resolve) => setTimeout(resolve, 1));

/** The n-th refresh's answer (rotating the refresh token unless told not to). */
function tokenResponse(n: number, rotate = true): TokenResponse {
  return sharedTokenResponse({
    accessToken: `access-${n}`,
    refreshToken: rotate ? `refresh-${n}` : undefined,
    issuedAt: String(1_700_000_000_000 + n),
  });
}

/** A broker wired to in-memory ports, a manual clock and a scripted Salesforce. */
async function setup(options: { committedAgoMs?: number } = {}) {
  const clock = { t: 1_700_000_000_000, now: () => clock.t };
  const store = new MemorySessionStore();
  const dataKeys = new MemoryDataKeys();
  const vault = new TokenVault(dataKeys);
  const log = new CaptureLog();
  const upstream: Array<{ refreshToken: string; credentials: ClientCredentials }> = [];
  let answer: (n: number) => Promise<TokenResponse> = async (n) => tokenResponse(n);
  let secretReads = 0;
  const deps: RefreshDependencies = {
    store,
    vault,
    clock,
    log,
    metrics: { count: () => {}, timing: () => {} },
    credentials: {
      get: async () => ({ clientId: 'id', clientSecret: 'secret' }),
      reload: async () => {
        secretReads++;
        return { clientId: 'id', clientSecret: 'rotated-secret' };
      },
    },
    salesforce: {
      refreshTokenGrant: async (credentials, refreshToken) => {
        upstream.push({ credentials, refreshToken });
        return answer(upstream.length);
      },
    },
    config: {
      reuseWindowMs: 5000,
      leaseMs: 12_000,
      waitBudgetMs: 10_000,
      sessionIdleTtlMs: 7 * DAY,
    },
    sleep: async (ms) => {
      clock.t += ms;
      await new Promise((resolve) => setImmediate(resolve));
    },
    random: () => 0.5,
  };
  const handle = newSessionHandle();
  const sessionKey = sessionKeyOf(handle);
  const tokens: TokenSet = {
    accessToken: 'access-0',
    refreshToken: 'refresh-0',
    instanceUrl: 'https://acme.my.salesforce.com',
    issuedAt: '1700000000000',
    scope: 'api refresh_token',
    identityUrl: 'https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS',
  };
  const dataKey = await vault.generateDataKey(sessionKey);
  const record: SessionRecord = {
    sessionKey,
    version: 1,
    sealed: vault.seal(dataKey, sessionKey, 1, tokens),
    committedAt: clock.t - (options.committedAgoMs ?? 60_000),
    createdAt: clock.t - 60_000,
    absoluteExpiresAt: clock.t + 30 * DAY,
    idleExpiresAt: clock.t + 7 * DAY,
    orgId: '00Dxx0000001gPLEAY',
    userId: '005xx000001Sv6AAAS',
  };
  await store.create(record);
  dataKeys.calls.generate = 0;
  return {
    deps,
    store,
    dataKeys,
    clock,
    log,
    handle,
    sessionKey,
    upstream,
    secretReads: () => secretReads,
    answerWith(fn: (n: number) => Promise<TokenResponse>) {
      answer = fn;
    },
    async stored() {
      const item = store.items.get(sessionKey);
      return item ? vault.open(item.sealed, sessionKey, item.version) : undefined;
    },
  };
}

describe('Function: refreshSession', () => {
  describe('when the stored token is older than the reuse window', () => {
    it('refreshes once, stores the rotated refresh token and bumps the version', async () => {
      // Prepare
      const ctx = await setup();

      // Act
      const result = await refreshSession(ctx.deps, ctx.handle);

      // Assess
      expect(result).toMatchObject({ accessToken: 'access-1', version: 2, outcome: 'refreshed' });
      expect(ctx.upstream).toEqual([
        { refreshToken: 'refresh-0', credentials: { clientId: 'id', clientSecret: 'secret' } },
      ]);
      expect(ctx.dataKeys.calls).toEqual({ generate: 1, decrypt: 1 });
      expect(await ctx.stored()).toMatchObject({
        accessToken: 'access-1',
        refreshToken: 'refresh-1',
      });
      expect(ctx.store.items.get(ctx.sessionKey)?.leaseOwner).toBeUndefined();
    });

    it('keeps the current refresh token when Salesforce does not rotate', async () => {
      const ctx = await setup();
      ctx.answerWith(async (n) => tokenResponse(n, false));

      await refreshSession(ctx.deps, ctx.handle);

      expect(await ctx.stored()).toMatchObject({
        accessToken: 'access-1',
        refreshToken: 'refresh-0',
      });
    });
  });

  describe('version hints and the reuse window', () => {
    it('returns a token committed within the reuse window without an upstream call', async () => {
      const ctx = await setup({ committedAgoMs: 1000 });

      const result = await refreshSession(ctx.deps, ctx.handle);

      expect(result).toMatchObject({ accessToken: 'access-0', version: 1, outcome: 'reused' });
      expect(ctx.upstream).toHaveLength(0);
    });

    it('refreshes within the reuse window when the hint names the stored version', async () => {
      const ctx = await setup({ committedAgoMs: 1000 });

      const result = await refreshSession(ctx.deps, ctx.handle, 1);

      expect(result).toMatchObject({ accessToken: 'access-1', version: 2 });
      expect(ctx.upstream).toHaveLength(1);
    });

    it('returns the stored token for a hint lower than the stored version', async () => {
      const ctx = await setup();

      const result = await refreshSession(ctx.deps, ctx.handle, 0);

      expect(result).toMatchObject({ accessToken: 'access-0', version: 1 });
      expect(ctx.upstream).toHaveLength(0);
    });

    it('rejects a hint newer than the session', async () => {
      const ctx = await setup();

      await expect(refreshSession(ctx.deps, ctx.handle, 7)).rejects.toBeInstanceOf(
        InvalidRequestError,
      );
      expect(ctx.upstream).toHaveLength(0);
    });
  });

  describe('concurrent callers', () => {
    it('lets one caller reach Salesforce and gives every waiter its result', async () => {
      // Prepare: the upstream call hangs until released; waiting takes real (not clock) time
      const ctx = await setup();
      ctx.deps.sleep = yieldBriefly;
      const gate = deferred<TokenResponse>();
      ctx.answerWith(() => gate.promise);

      // Act
      const calls = Array.from({ length: 20 }, () => refreshSession(ctx.deps, ctx.handle));
      await new Promise((resolve) => setTimeout(resolve, 20));
      gate.resolve(tokenResponse(1));
      const results = await Promise.all(calls);

      // Assess
      expect(ctx.upstream).toHaveLength(1);
      expect(new Set(results.map((r) => r.accessToken))).toEqual(new Set(['access-1']));
      expect(results.filter((r) => r.outcome === 'refreshed')).toHaveLength(1);
      expect(results.every((r) => r.version === 2)).toBe(true);
    });

    it('shares the holder failure with its waiters instead of calling again', async () => {
      const ctx = await setup();
      ctx.deps.sleep = yieldBriefly;
      const gate = deferred<TokenResponse>();
      ctx.answerWith(() => gate.promise);

      const calls = Array.from({ length: 5 }, () =>
        refreshSession(ctx.deps, ctx.handle).catch((e: unknown) => e),
      );
      await new Promise((resolve) => setTimeout(resolve, 20));
      gate.reject(new SalesforceUnavailableError('Salesforce answered HTTP 503'));
      const outcomes = await Promise.all(calls);

      expect(ctx.upstream).toHaveLength(1);
      expect(outcomes.every((e) => e instanceof TemporarilyUnavailableError)).toBe(true);
      expect(await ctx.stored()).toMatchObject({ refreshToken: 'refresh-0' });
    });

    it('answers 503 when the holder outlives the waiting budget', async () => {
      const ctx = await setup();
      const gate = deferred<TokenResponse>();
      ctx.answerWith(() => gate.promise);
      const holder = refreshSession(ctx.deps, ctx.handle);
      await new Promise((resolve) => setImmediate(resolve));

      const waiter = refreshSession(ctx.deps, ctx.handle).catch((e: unknown) => e);
      const error = await waiter;

      expect(error).toBeInstanceOf(TemporarilyUnavailableError);
      expect((error as TemporarilyUnavailableError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
      gate.resolve(tokenResponse(1));
      await holder;
    });
  });

  describe('a holder that dies', () => {
    it('blocks refreshes until its lease ends, then the next caller refreshes', async () => {
      // Prepare: a lease taken by a crashed invocation
      const ctx = await setup();
      const item = ctx.store.items.get(ctx.sessionKey);
      if (!item) throw new Error('no item');
      item.leaseOwner = 'crashed';
      item.leaseUntil = ctx.clock.t + 12_000;

      // Act: within the lease the caller waits out its budget
      const during = await refreshSession(ctx.deps, ctx.handle).catch((e: unknown) => e);
      ctx.clock.t = item.leaseUntil + 1;
      const after = await refreshSession(ctx.deps, ctx.handle);

      // Assess
      expect(during).toBeInstanceOf(TemporarilyUnavailableError);
      expect(after).toMatchObject({ version: 2, outcome: 'refreshed' });
      expect(ctx.upstream).toHaveLength(1);
    });

    it('cannot commit once its lease lapsed and another caller refreshed (fencing)', async () => {
      const ctx = await setup();
      const slow = deferred<TokenResponse>();
      let first = true;
      ctx.answerWith((n) => {
        if (first) {
          first = false;
          return slow.promise;
        }
        return Promise.resolve(tokenResponse(n));
      });
      const lapsed = refreshSession(ctx.deps, ctx.handle).catch((e: unknown) => e);
      await new Promise((resolve) => setImmediate(resolve));
      ctx.clock.t += 13_000; // the first holder's lease has lapsed

      const second = await refreshSession(ctx.deps, ctx.handle);
      slow.resolve(tokenResponse(99));
      const late = await lapsed;

      expect(second).toMatchObject({ accessToken: 'access-2', version: 2 });
      expect(late).toMatchObject({ accessToken: 'access-2', version: 2, outcome: 'coalesced' });
      expect(await ctx.stored()).toMatchObject({
        accessToken: 'access-2',
        refreshToken: 'refresh-2',
      });
      expect(ctx.log.events()).toContain('rotation_lost');
    });
  });

  describe('a logout that lands while Salesforce rotates', () => {
    async function raceLogout(revoke: (token: string) => Promise<void>) {
      const ctx = await setup();
      const gate = deferred<TokenResponse>();
      ctx.answerWith(() => gate.promise);
      const revoked: string[] = [];
      ctx.deps.salesforce.revoke = async (token) => {
        revoked.push(token);
        await revoke(token);
      };
      const refreshing = refreshSession(ctx.deps, ctx.handle).catch((e: unknown) => e);
      await new Promise((resolve) => setTimeout(resolve, 10));
      await ctx.store.delete(ctx.sessionKey);
      gate.resolve(tokenResponse(1));
      return { ctx, outcome: await refreshing, revoked };
    }

    it('revokes the freshly rotated refresh token and answers 401', async () => {
      const { ctx, outcome, revoked } = await raceLogout(async () => {});

      expect(outcome).toBeInstanceOf(InvalidSessionError);
      expect(revoked).toEqual(['refresh-1']);
      expect(ctx.log.events()).toContain('orphan_revoked');
      expect(ctx.store.items.has(ctx.sessionKey)).toBe(false);
    });

    it('logs revoke_failed when that revocation fails, and still answers 401', async () => {
      const { ctx, outcome } = await raceLogout(async () => {
        throw new SalesforceUnavailableError('Salesforce answered HTTP 503');
      });

      expect(outcome).toBeInstanceOf(InvalidSessionError);
      const entry = ctx.log.entries.find((e) => e.attributes.event === 'revoke_failed');
      expect(entry?.attributes).toMatchObject({ alarm: true, reason: 'orphaned' });
      expect(ctx.log.text()).not.toContain('refresh-1');
    });
  });

  describe('errors from Salesforce', () => {
    it('deletes the session on invalid_grant', async () => {
      const ctx = await setup();
      ctx.answerWith(async () => {
        throw new InvalidGrantError('rejected', {
          error: 'invalid_grant',
          description: 'expired access/refresh token',
        });
      });

      await expect(refreshSession(ctx.deps, ctx.handle)).rejects.toBeInstanceOf(
        ReauthenticationRequiredError,
      );
      expect(ctx.store.items.has(ctx.sessionKey)).toBe(false);
      // Its tombstone answers the handle from then on, without asking Salesforce again.
      ctx.answerWith(async () => {
        throw new Error('no upstream call expected');
      });
      await expect(refreshSession(ctx.deps, ctx.handle)).rejects.toBeInstanceOf(
        ReauthenticationRequiredError,
      );
      expect(ctx.store.tombstones.get(ctx.sessionKey)).toMatchObject({
        reason: 'reauthentication_required',
      });
    });

    it('answers invalid_session for a session gone without a tombstone', async () => {
      const ctx = await setup();
      await ctx.store.delete(ctx.sessionKey);

      await expect(refreshSession(ctx.deps, ctx.handle)).rejects.toBeInstanceOf(
        InvalidSessionError,
      );
    });

    it('keeps the session on the concurrency block', async () => {
      const ctx = await setup();
      ctx.answerWith(async () => {
        throw new TokenRequestInProgressError('busy', { error: 'invalid_grant' });
      });

      await expect(refreshSession(ctx.deps, ctx.handle)).rejects.toBeInstanceOf(
        TemporarilyUnavailableError,
      );
      expect(await ctx.stored()).toMatchObject({ refreshToken: 'refresh-0' });
      expect(ctx.store.items.get(ctx.sessionKey)?.version).toBe(1);
    });

    it('re-reads the secret once on invalid_client and succeeds with the new one', async () => {
      const ctx = await setup();
      ctx.answerWith(async (n) => {
        if (n === 1) throw new InvalidClientError('bad secret', { error: 'invalid_client' });
        return tokenResponse(n);
      });

      const result = await refreshSession(ctx.deps, ctx.handle);

      expect(result.version).toBe(2);
      expect(ctx.secretReads()).toBe(1);
      expect(ctx.upstream.map((u) => u.credentials.clientSecret)).toEqual([
        'secret',
        'rotated-secret',
      ]);
    });

    it('answers upstream_misconfigured after one re-read and deletes nothing', async () => {
      const ctx = await setup();
      ctx.answerWith(async () => {
        throw new InvalidClientError('bad secret', { error: 'invalid_client' });
      });

      await expect(refreshSession(ctx.deps, ctx.handle)).rejects.toBeInstanceOf(
        UpstreamMisconfiguredError,
      );
      expect(ctx.upstream).toHaveLength(2);
      expect(ctx.secretReads()).toBe(1);
      expect(await ctx.stored()).toMatchObject({ refreshToken: 'refresh-0' });
    });
  });

  describe('session lifetime', () => {
    it('treats an idle-expired session as unknown, without an upstream call', async () => {
      const ctx = await setup();
      ctx.clock.t += 7 * DAY + 1;

      await expect(refreshSession(ctx.deps, ctx.handle)).rejects.toBeInstanceOf(
        InvalidSessionError,
      );
      expect(ctx.upstream).toHaveLength(0);
    });
  });
});
