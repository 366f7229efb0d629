import { describe, expect, it } from 'vitest';
import {
  type CallbackDependencies,
  completeLogin,
  LoginRedirectError,
} from '../../../functions/broker/callback.ts';
import { TokenVault } from '../../../functions/broker/envelope.ts';
import {
  AccessDeniedError,
  type BrokerError,
  InvalidRequestError,
  InvalidStateError,
  LoginFailedError,
  TemporarilyUnavailableError,
  UpstreamMisconfiguredError,
} from '../../../functions/broker/errors.ts';
import { type LoginDependencies, startLogin } from '../../../functions/broker/login.ts';
import { LOGIN_TRANSACTION_TTL_MS } from '../../../functions/broker/login-transaction.ts';
import { codeChallengeS256 } from '../../../functions/broker/pkce.ts';
import type {
  ClientCredentials,
  SessionRecord,
  TokenSet,
} from '../../../functions/broker/ports.ts';
import { newSessionHandle, sessionKeyOf } from '../../../functions/broker/session-handle.ts';
import type { TokenResponse } from '../../../functions/broker/upstream.ts';
import {
  InvalidClientError,
  InvalidGrantError,
  InvalidTokenResponseError,
  OAuthRequestError,
  SalesforceUnavailableError,
} from '../../../functions/salesforce/errors.ts';
import { SalesforceOAuthClient } from '../../../functions/salesforce/oauth-client.ts';
import { CaptureLog, CaptureMetrics } from '../../support/capture-log.ts';
import { DAY, tokenResponse as sharedTokenResponse } from '../../support/fixtures.ts';
import { MemoryBrokerCodeStore } from '../../support/memory-code-store.ts';
import { MemoryDataKeys } from '../../support/memory-data-keys.ts';
import { MemoryLoginStore } from '../../support/memory-login-store.ts';
import { MemorySessionStore } from '../../support/memory-session-store.ts';

const CALLBACK_URL = new URL('https://broker.example.com/callback');

/** The code exchange's answer. */
function tokenResponse(overrides: Partial<TokenResponse> = {}): TokenResponse {
  return sharedTokenResponse({
    accessToken: 'access-token-from-code',
    refreshToken: 'refresh-token-from-code',
    ...overrides,
  });
}

/** /login then /callback on in-memory ports, a manual clock and a scripted Salesforce. */
function setup() {
  const clock = { t: 1_800_000_000_000, now: () => clock.t };
  const transactions = new MemoryLoginStore();
  const store = new MemorySessionStore();
  const dataKeys = new MemoryDataKeys();
  const vault = new TokenVault(dataKeys);
  const log = new CaptureLog();
  const metrics = new CaptureMetrics();
  const exchanges: Array<{ credentials: ClientCredentials; code: string; verifier: string }> = [];
  const revoked: string[] = [];
  let answer: () => Promise<TokenResponse> = async () => tokenResponse();
  let revokeAnswer: () => Promise<void> = async () => {};
  let secretReads = 0;
  const credentials = {
    get: async () => ({ clientId: 'id', clientSecret: 'secret' }),
    reload: async () => {
      secretReads++;
      return { clientId: 'id', clientSecret: 'rotated-secret' };
    },
  };
  const salesforce = {
    authorizationUrl: (p: Parameters<SalesforceOAuthClient['authorizationUrl']>[0]) =>
      new SalesforceOAuthClient({
        loginUrl: new URL('https://login.salesforce.com'),
        timeoutMs: 1000,
      }).authorizationUrl(p),
    authorizationCodeGrant: async (
      creds: ClientCredentials,
      grant: { code: string; codeVerifier: string; redirectUri: string },
    ) => {
      expect(grant.redirectUri).toBe(CALLBACK_URL.toString());
      exchanges.push({ credentials: creds, code: grant.code, verifier: grant.codeVerifier });
      return answer();
    },
    revoke: async (token: string) => {
      revoked.push(token);
      return revokeAnswer();
    },
  };
  const common = { transactions, credentials, salesforce, clock, log, metrics };
  const loginDeps: LoginDependencies = {
    ...common,
    config: {
      scopes: 'api refresh_token',
      invocationDeadlineMs: 10_000,
      callbackUrl: CALLBACK_URL,
    },
  };
  const deps: CallbackDependencies = {
    ...common,
    store,
    codes: new MemoryBrokerCodeStore(),
    vault,
    config: {
      sessionAbsoluteTtlMs: 30 * DAY,
      sessionIdleTtlMs: 7 * DAY,
      invocationDeadlineMs: 11_000,
      callbackUrl: CALLBACK_URL,
    },
  };
  return {
    deps,
    clock,
    store,
    transactions,
    vault,
    log,
    metrics,
    exchanges,
    revoked,
    dataKeys,
    get secretReads() {
      return secretReads;
    },
    answer(fn: () => Promise<TokenResponse>) {
      answer = fn;
    },
    revokeAnswer(fn: () => Promise<void>) {
      revokeAnswer = fn;
    },
    /** Runs /login; returns what the browser holds afterwards. */
    async login(currentSessionKey?: string) {
      const started = await startLogin(loginDeps, { returnTo: '/app/x', currentSessionKey });
      return {
        state: started.authorizeUrl.searchParams.get('state') ?? '',
        challenge: started.authorizeUrl.searchParams.get('code_challenge') ?? '',
        cookie: started.loginCookieValue,
      };
    },
  };
}

/**
 * The domain error a failed callback ends with. After the transaction was found it comes
 * wrapped in a {@link LoginRedirectError} (the route sends the browser back to
 * `return_to`); this unwraps it, having checked the wrapper carries the transaction's
 * `return_to` and the contract's error code.
 */
async function rejection(promise: Promise<unknown>): Promise<BrokerError> {
  try {
    await promise;
  } catch (error) {
    if (!(error instanceof LoginRedirectError)) return error as BrokerError;
    const cause = error.cause as BrokerError;
    expect(error.returnTo).toBe('/app/x');
    expect(error.error).toBe(cause.code === 'access_denied' ? 'access_denied' : 'login_failed');
    expect(error.errorDescription).toBe(cause.safeDescription);
    return cause;
  }
  throw new Error('expected a rejection');
}

const callback = (state: string | undefined, cookie: string | undefined, extra = {}) => ({
  state,
  code: 'the-code',
  error: undefined,
  loginCookies: cookie === undefined ? [] : [cookie],
  sessionHandles: [],
  ...extra,
});

describe('Function: completeLogin', () => {
  describe('on success', () => {
    it('exchanges the code with the verifier and stores version 1, sealed, with both expiries', async () => {
      // Prepare
      const t = setup();
      const browser = await t.login();
      t.clock.t += 30_000;

      // Act
      const result = await completeLogin(t.deps, callback(browser.state, browser.cookie));

      // Assert
      expect(result.returnTo).toBe('/app/x');
      expect(result.handle).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(t.exchanges).toHaveLength(1);
      expect(t.exchanges[0]?.code).toBe('the-code');
      expect(codeChallengeS256(t.exchanges[0]?.verifier ?? '')).toBe(browser.challenge);
      const record = t.store.items.get(sessionKeyOf(result.handle));
      expect(record).toMatchObject({
        version: 1,
        committedAt: t.clock.t,
        createdAt: t.clock.t,
        absoluteExpiresAt: t.clock.t + 30 * DAY,
        idleExpiresAt: t.clock.t + 7 * DAY,
        orgId: '00Dxx0000001gPLEAY',
        userId: '005xx000001Sv6AAAS',
      });
      if (!record) throw new Error('no session');
      const tokens = await t.vault.open(record.sealed, record.sessionKey, 1);
      expect(tokens).toEqual({
        accessToken: 'access-token-from-code',
        refreshToken: 'refresh-token-from-code',
        instanceUrl: 'https://acme.my.salesforce.com',
        issuedAt: '1800000000000',
        scope: 'api refresh_token',
        identityUrl: 'https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS',
      } satisfies TokenSet);
      expect(t.transactions.items.size).toBe(0);
      expect(t.log.events()).toContain('login_completed');
    });

    it('caps the idle expiry at the absolute expiry', async () => {
      const t = setup();
      t.deps.config = { ...t.deps.config, sessionAbsoluteTtlMs: DAY, sessionIdleTtlMs: 7 * DAY };
      const browser = await t.login();

      const result = await completeLogin(t.deps, callback(browser.state, browser.cookie));

      const record = t.store.items.get(sessionKeyOf(result.handle));
      expect(record?.idleExpiresAt).toBe(record?.absoluteExpiresAt);
    });

    it('re-reads the secret once on invalid_client, then succeeds', async () => {
      const t = setup();
      const browser = await t.login();
      let calls = 0;
      t.answer(async () => {
        calls++;
        if (calls === 1) throw new InvalidClientError('bad secret', { error: 'invalid_client' });
        return tokenResponse();
      });

      await completeLogin(t.deps, callback(browser.state, browser.cookie));

      expect(t.secretReads).toBe(1);
      expect(t.exchanges.map((e) => e.credentials.clientSecret)).toEqual([
        'secret',
        'rotated-secret',
      ]);
    });

    it('ends the session the browser held at /login: deleted, refresh token revoked', async () => {
      const t = setup();
      const old = await seedSession(t, 'old-refresh-token');
      const browser = await t.login(sessionKeyOf(old));

      const result = await completeLogin(t.deps, callback(browser.state, browser.cookie));

      expect(t.store.items.has(sessionKeyOf(old))).toBe(false);
      expect(t.store.items.has(sessionKeyOf(result.handle))).toBe(true);
      expect(t.revoked).toEqual(['old-refresh-token']);
    });

    it('ends a session whose cookie came with the callback too', async () => {
      const t = setup();
      const old = await seedSession(t, 'old-refresh-token');
      const browser = await t.login();

      await completeLogin(
        t.deps,
        callback(browser.state, browser.cookie, { sessionHandles: [old] }),
      );

      expect(t.store.items.has(sessionKeyOf(old))).toBe(false);
      expect(t.revoked).toEqual(['old-refresh-token']);
    });

    it('still logs the user in when the old session cannot be revoked', async () => {
      const t = setup();
      const old = await seedSession(t, 'old-refresh-token');
      const browser = await t.login(sessionKeyOf(old));
      t.revokeAnswer(async () => {
        throw new SalesforceUnavailableError('Salesforce answered HTTP 503');
      });

      const result = await completeLogin(t.deps, callback(browser.state, browser.cookie));

      expect(t.store.items.has(sessionKeyOf(result.handle))).toBe(true);
      expect(t.store.items.has(sessionKeyOf(old))).toBe(false);
      expect(t.log.events()).toContain('revoke_failed');
    });
  });

  describe('the access token expiry (README "Access token expiry")', () => {
    /** Scripts introspection; `spendMs` is how long Salesforce takes to answer it. */
    function introspecting(t: ReturnType<typeof setup>, spendMs = 0) {
      const asked: Array<{ accessToken: string; timeoutMs: number | undefined }> = [];
      t.deps.salesforce.introspect = async (_credentials, accessToken, options) => {
        asked.push({ accessToken, timeoutMs: options?.timeoutMs });
        t.clock.t += spendMs;
        return { active: true, expiresAt: t.clock.t + 7_200_000 };
      };
      return asked;
    }

    it('introspects the new access token and notes its expiry on version 1', async () => {
      // Prepare
      const t = setup();
      const asked = introspecting(t);
      const browser = await t.login();

      // Act
      const result = await completeLogin(t.deps, callback(browser.state, browser.cookie));

      // Assert
      expect(asked).toEqual([{ accessToken: 'access-token-from-code', timeoutMs: 2_000 }]);
      const record = t.store.items.get(sessionKeyOf(result.handle));
      expect(record?.accessTokenExpiresAt).toBe(t.clock.t + 7_200_000);
    });

    it('after a slow code exchange, leaves the steps after it 1.5 s of the deadline', async () => {
      // Prepare: the exchange ends 2.5 s before the deadline (11 s after the callback).
      const t = setup();
      const asked = introspecting(t, 1_000);
      const browser = await t.login();
      const deadline = t.clock.t + 11_000;
      t.answer(async () => {
        t.clock.t = deadline - 2_500;
        return tokenResponse();
      });

      // Act
      const result = await completeLogin(t.deps, callback(browser.state, browser.cookie));

      // Assert: 1 s for the introspection, not the 2 s budget.
      expect(asked).toEqual([{ accessToken: 'access-token-from-code', timeoutMs: 1_000 }]);
      expect(t.store.items.has(sessionKeyOf(result.handle))).toBe(true);
    });

    it('with less than that left, logs in without asking, and counts the miss', async () => {
      // Prepare
      const t = setup();
      const asked = introspecting(t);
      const browser = await t.login();
      const deadline = t.clock.t + 11_000;
      t.answer(async () => {
        t.clock.t = deadline - 1_200;
        return tokenResponse();
      });

      // Act
      const result = await completeLogin(t.deps, callback(browser.state, browser.cookie));

      // Assert
      expect(asked).toHaveLength(0);
      const record = t.store.items.get(sessionKeyOf(result.handle));
      expect(record?.version).toBe(1);
      expect(record?.accessTokenExpiresAt).toBeUndefined();
      expect(t.metrics.get('IntrospectionFailed')).toBe(1);
    });
  });

  describe('state and transaction checks (400 invalid_state)', () => {
    it.each([
      ['a missing state', undefined, 'missing'],
      ['an empty state', '', 'missing'],
      ['a malformed state', 'short', 'malformed'],
      ['an unknown state', 'A'.repeat(43), 'unknown_or_replayed'],
    ])('rejects %s', async (_why, state, reason) => {
      const t = setup();
      const browser = await t.login();

      const error = await rejection(completeLogin(t.deps, callback(state, browser.cookie)));

      expect(error).toBeInstanceOf(InvalidStateError);
      expect([error.status, error.code]).toEqual([400, 'invalid_state']);
      expect(t.exchanges).toHaveLength(0);
      expect(t.log.entries.some((entry) => entry.attributes.reason === reason)).toBe(true);
    });

    it('consumes the transaction once: a replay is invalid_state', async () => {
      const t = setup();
      const browser = await t.login();
      await completeLogin(t.deps, callback(browser.state, browser.cookie));

      const error = await rejection(completeLogin(t.deps, callback(browser.state, browser.cookie)));

      expect(error).toBeInstanceOf(InvalidStateError);
      expect(t.exchanges).toHaveLength(1);
      expect(t.store.items.size).toBe(1);
    });

    it('rejects an expired transaction (10 minutes, checked by the code) and consumes it', async () => {
      const t = setup();
      const browser = await t.login();
      t.clock.t += LOGIN_TRANSACTION_TTL_MS;

      const error = await rejection(completeLogin(t.deps, callback(browser.state, browser.cookie)));

      expect(error).toBeInstanceOf(InvalidStateError);
      expect(t.transactions.items.size).toBe(0);
      expect(t.exchanges).toHaveLength(0);
    });

    it('accepts a transaction one millisecond before its expiry', async () => {
      const t = setup();
      const browser = await t.login();
      t.clock.t += LOGIN_TRANSACTION_TTL_MS - 1;

      await expect(
        completeLogin(t.deps, callback(browser.state, browser.cookie)),
      ).resolves.toBeDefined();
    });

    it.each([
      ['no login cookie', () => undefined],
      ['another login cookie', () => 'B'.repeat(43)],
    ])('rejects %s and burns the transaction', async (_why, cookie) => {
      const t = setup();
      const browser = await t.login();

      const error = await rejection(completeLogin(t.deps, callback(browser.state, cookie())));

      expect(error).toBeInstanceOf(InvalidStateError);
      expect(t.transactions.items.size).toBe(0);
      expect(t.exchanges).toHaveLength(0);
      // Even with the right cookie now, the transaction is gone.
      await expect(
        completeLogin(t.deps, callback(browser.state, browser.cookie)),
      ).rejects.toBeInstanceOf(InvalidStateError);
    });

    it("rejects another browser's state (its own cookie, a foreign state)", async () => {
      const t = setup();
      const victim = await t.login();
      const attacker = await t.login();

      const error = await rejection(completeLogin(t.deps, callback(victim.state, attacker.cookie)));

      expect(error).toBeInstanceOf(InvalidStateError);
      expect(t.store.items.size).toBe(0);
    });

    it('rejects swapped states of two logins in the same browser', async () => {
      const t = setup();
      const first = await t.login();
      const second = await t.login();

      const error = await rejection(completeLogin(t.deps, callback(first.state, second.cookie)));

      expect(error).toBeInstanceOf(InvalidStateError);
    });
  });

  describe('errors after the state checks', () => {
    it('maps error=access_denied to 400 access_denied without reflecting the description', async () => {
      const t = setup();
      const browser = await t.login();

      const error = await rejection(
        completeLogin(
          t.deps,
          callback(browser.state, browser.cookie, { code: undefined, error: 'access_denied' }),
        ),
      );

      expect(error).toBeInstanceOf(AccessDeniedError);
      expect([error.status, error.code]).toEqual([400, 'access_denied']);
      expect(t.transactions.items.size).toBe(0);
      expect(t.exchanges).toHaveLength(0);
    });

    it.each(['server_error', 'invalid_scope', '<script>'])(
      'maps error=%s to 400 login_failed',
      async (upstream) => {
        const t = setup();
        const browser = await t.login();

        const error = await rejection(
          completeLogin(t.deps, callback(browser.state, browser.cookie, { error: upstream })),
        );

        expect(error).toBeInstanceOf(LoginFailedError);
        expect(error.safeDescription).not.toContain(upstream);
        expect(t.log.text()).not.toContain('<script>');
      },
    );

    it.each([
      [undefined, 'missing'],
      ['a b', 'space'],
      ['x'.repeat(2049), 'too long'],
    ])(
      'answers invalid_request for a code %j (%s)',
      async (code: string | undefined, _why: string) => {
        const t = setup();
        const browser = await t.login();

        const error = await rejection(
          completeLogin(t.deps, callback(browser.state, browser.cookie, { code })),
        );

        expect(error).toBeInstanceOf(InvalidRequestError);
        expect(t.exchanges).toHaveLength(0);
      },
    );

    it.each([
      [
        'invalid_grant',
        () => new InvalidGrantError('x', { error: 'invalid_grant', description: 'expired' }),
        LoginFailedError,
        'login_failed',
      ],
      [
        'redirect_uri_mismatch',
        () => new OAuthRequestError('x', { error: 'redirect_uri_mismatch' }),
        LoginFailedError,
        'login_failed',
      ],
      [
        'a bad signature',
        () => new InvalidTokenResponseError('signature', 'signature'),
        LoginFailedError,
        'login_failed',
      ],
      [
        'a foreign instance_url',
        () => new InvalidTokenResponseError('instance_url', 'instance_url'),
        LoginFailedError,
        'login_failed',
      ],
      [
        'Salesforce 503',
        () => new SalesforceUnavailableError('Salesforce answered HTTP 503', 7),
        TemporarilyUnavailableError,
        'temporarily_unavailable',
      ],
      [
        'invalid_client twice',
        () => new InvalidClientError('x', { error: 'invalid_client' }),
        UpstreamMisconfiguredError,
        'upstream_misconfigured',
      ],
    ])('maps %s to its contract error and stores nothing', async (_why, fail, type, code) => {
      const t = setup();
      const browser = await t.login();
      t.answer(async () => {
        throw fail();
      });

      const error = await rejection(completeLogin(t.deps, callback(browser.state, browser.cookie)));

      expect(error).toBeInstanceOf(type);
      expect(error.code).toBe(code);
      expect(t.store.items.size).toBe(0);
      expect(t.transactions.items.size).toBe(0);
    });

    it('gives Retry-After from Salesforce on 503', async () => {
      const t = setup();
      const browser = await t.login();
      t.answer(async () => {
        throw new SalesforceUnavailableError('Salesforce answered HTTP 503', 7);
      });

      const error = await rejection(completeLogin(t.deps, callback(browser.state, browser.cookie)));

      expect((error as TemporarilyUnavailableError).retryAfterSeconds).toBe(7);
    });

    it('tells the admin to add the refresh_token scope when none was granted', async () => {
      const t = setup();
      const browser = await t.login();
      t.answer(async () => {
        throw new InvalidTokenResponseError('no refresh_token', 'refresh_token_missing');
      });

      const error = await rejection(completeLogin(t.deps, callback(browser.state, browser.cookie)));

      expect(error).toBeInstanceOf(LoginFailedError);
      expect(error.safeDescription).toMatch(/refresh_token.*scope/);
    });

    it('revokes the fresh grant when the session cannot be stored', async () => {
      const t = setup();
      const browser = await t.login();
      t.store.create = async () => {
        throw new TemporarilyUnavailableError('DynamoDB is temporarily unavailable.');
      };

      const error = await rejection(completeLogin(t.deps, callback(browser.state, browser.cookie)));

      expect(error).toBeInstanceOf(TemporarilyUnavailableError);
      expect(t.revoked).toEqual(['refresh-token-from-code']);
    });

    it('revokes the fresh grant when no data key can be made', async () => {
      const t = setup();
      const browser = await t.login();
      t.dataKeys.generate = async () => {
        throw new TemporarilyUnavailableError('KMS is temporarily unavailable.');
      };

      const error = await rejection(completeLogin(t.deps, callback(browser.state, browser.cookie)));

      expect(error).toBeInstanceOf(TemporarilyUnavailableError);
      expect(t.revoked).toEqual(['refresh-token-from-code']);
      expect(t.store.items.size).toBe(0);
    });
  });
});

/** A stored session holding `refreshToken`, as a previous login would have left it. */
async function seedSession(t: ReturnType<typeof setup>, refreshToken: string): Promise<string> {
  const handle = newSessionHandle();
  const sessionKey = sessionKeyOf(handle);
  const dataKey = await t.vault.generateDataKey(sessionKey);
  const record: SessionRecord = {
    sessionKey,
    version: 3,
    sealed: t.vault.seal(dataKey, sessionKey, 3, {
      accessToken: 'old-access',
      refreshToken,
      instanceUrl: 'https://acme.my.salesforce.com',
      issuedAt: '1700000000000',
      scope: 'api refresh_token',
      identityUrl: 'https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS',
    }),
    committedAt: t.clock.t,
    createdAt: t.clock.t,
    absoluteExpiresAt: t.clock.t + DAY,
    idleExpiresAt: t.clock.t + DAY,
    orgId: '00Dxx0000001gPLEAY',
    userId: '005xx000001Sv6AAAS',
  };
  await t.store.create(record);
  return handle;
}
