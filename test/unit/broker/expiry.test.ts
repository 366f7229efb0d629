import { describe, expect, it } from 'vitest';
import {
  type ExpiryDependencies,
  expiresAtSeconds,
  INTROSPECTION_BUDGET_MS,
  introspectExpiry,
  settleExpiry,
} from '../../../functions/broker/expiry.ts';
import type { TokenIntrospection } from '../../../functions/broker/upstream.ts';
import { SalesforceUnavailableError } from '../../../functions/salesforce/errors.ts';
import { CaptureLog, CaptureMetrics } from '../../support/capture-log.ts';
import { sessionRecord } from '../../support/fixtures.ts';
import { MemorySessionStore } from '../../support/memory-session-store.ts';

const NOW = 1_700_000_000_000;
const ACCESS_TOKEN = '00Dxx0000001gPL!AQ.canary-access-token';
const LOGIN_URL = new URL('https://acme.my.salesforce.com');

/** Introspection against a scripted Salesforce, with what each call was given. */
function setup(
  answer: () => Promise<TokenIntrospection> = async () => ({
    active: true,
    expiresAt: NOW + 7_200_000,
  }),
  config: ExpiryDependencies['config'] = {},
) {
  const calls: Array<{ accessToken: string; timeoutMs?: number; loginUrl?: URL }> = [];
  const store = new MemorySessionStore();
  const log = new CaptureLog();
  const metrics = new CaptureMetrics();
  const deps: ExpiryDependencies = {
    salesforce: {
      introspect: async (_credentials, accessToken, options) => {
        calls.push({ accessToken, timeoutMs: options?.timeoutMs, loginUrl: options?.loginUrl });
        return answer();
      },
    },
    store,
    clock: { now: () => NOW },
    log,
    metrics,
    config,
  };
  const start = (deadline = NOW + 10_000) =>
    introspectExpiry(deps, {
      accessToken: ACCESS_TOKEN,
      credentials: Promise.resolve({ clientId: 'id', clientSecret: 'secret' }),
      loginUrl: LOGIN_URL,
      deadline,
      session: 'session-log-id',
    });
  return { deps, calls, store, log, metrics, start };
}

describe('Function: introspectExpiry', () => {
  it('asks for the token at the login host within the budget, bounded by the deadline', async () => {
    // Prepare
    const { calls, start } = setup();

    // Act
    const roomy = await start(NOW + 10_000);
    const tight = await start(NOW + 400);

    // Assert
    expect(roomy).toBe(NOW + 7_200_000);
    expect(tight).toBe(NOW + 7_200_000);
    expect(calls).toEqual([
      { accessToken: ACCESS_TOKEN, timeoutMs: INTROSPECTION_BUDGET_MS, loginUrl: LOGIN_URL },
      { accessToken: ACCESS_TOKEN, timeoutMs: 400, loginUrl: LOGIN_URL },
    ]);
  });

  it('turned off, makes no call and gives no expiry', async () => {
    // Prepare
    const { calls, metrics, start } = setup(undefined, { introspection: false });

    // Act
    const expiry = await start();

    // Assert
    expect(expiry).toBeUndefined();
    expect(calls).toHaveLength(0);
    expect(metrics.get('IntrospectionFailed')).toBe(0);
  });

  it('with the deadline reached, makes no call and counts the miss', async () => {
    // Prepare
    const { calls, metrics, start } = setup();

    // Act
    const expiry = await start(NOW);

    // Assert
    expect(expiry).toBeUndefined();
    expect(calls).toHaveLength(0);
    expect(metrics.get('IntrospectionFailed')).toBe(1);
  });

  it.each<[string, () => Promise<TokenIntrospection>, Record<string, unknown>]>([
    ['an inactive token', async () => ({ active: false }), { outcome: 'inactive' }],
    [
      'an expiry already past',
      async () => ({ active: true, expiresAt: NOW }),
      { outcome: 'expired' },
    ],
    [
      'a timeout',
      async () => {
        throw new SalesforceUnavailableError('Salesforce did not answer in time', undefined, {
          reason: 'timeout',
        });
      },
      { outcome: 'failed', kind: 'unavailable', reason: 'timeout' },
    ],
    [
      'a thrown non-error',
      async () => {
        throw ACCESS_TOKEN;
      },
      { outcome: 'failed', error: 'string' },
    ],
  ])(
    'on %s, resolves without an expiry, counts it and warns without the token',
    async (_why, answer, logged) => {
      // Prepare
      const { log, metrics, start } = setup(answer);

      // Act
      const expiry = await start();

      // Assert
      expect(expiry).toBeUndefined();
      expect(metrics.get('IntrospectionFailed')).toBe(1);
      const warning = log.entries.find(
        (entry) => entry.attributes.event === 'introspection_failed',
      );
      expect(warning?.level).toBe('warn');
      expect(warning?.attributes).toMatchObject({ session: 'session-log-id', ...logged });
      expect(log.text()).not.toContain(ACCESS_TOKEN);
    },
  );
});

describe('Function: settleExpiry', () => {
  it('notes the expiry on the version that holds the token and gives it', async () => {
    // Prepare
    const { deps, store } = setup();
    await store.create(sessionRecord(NOW, { version: 2 }));

    // Act
    const expiry = await settleExpiry(
      deps,
      Promise.resolve(NOW + 60_000),
      { sessionKey: 'key', version: 2, deadline: NOW + 5_000 },
      'session-log-id',
    );

    // Assert
    expect(expiry).toBe(NOW + 60_000);
    expect((await store.get('key'))?.accessTokenExpiresAt).toBe(NOW + 60_000);
  });

  it('never gives a newer version the older token’s expiry, yet answers its own', async () => {
    // Prepare: version 3 was committed while version 2's token was introspected.
    const { deps, store } = setup();
    await store.create(sessionRecord(NOW, { version: 3 }));

    // Act
    const expiry = await settleExpiry(
      deps,
      Promise.resolve(NOW + 60_000),
      { sessionKey: 'key', version: 2, deadline: NOW + 5_000 },
      'session-log-id',
    );

    // Assert
    expect(expiry).toBe(NOW + 60_000);
    expect((await store.get('key'))?.accessTokenExpiresAt).toBeUndefined();
  });

  it('answers the expiry when its write fails, with a warning', async () => {
    // Prepare
    const { deps, log } = setup();
    const failing: ExpiryDependencies = {
      ...deps,
      store: {
        noteAccessTokenExpiry: async () => {
          throw new Error('throttled');
        },
      },
    };

    // Act
    const expiry = await settleExpiry(
      failing,
      Promise.resolve(NOW + 60_000),
      { sessionKey: 'key', version: 2, deadline: NOW + 5_000 },
      'session-log-id',
    );

    // Assert
    expect(expiry).toBe(NOW + 60_000);
    expect(log.events()).toContain('expiry_not_stored');
  });

  it('writes nothing when no expiry was learnt', async () => {
    // Prepare
    const { deps, store } = setup();
    await store.create(sessionRecord(NOW, { version: 2 }));
    let writes = 0;
    const counting: ExpiryDependencies = {
      ...deps,
      store: {
        noteAccessTokenExpiry: async (input) => {
          writes++;
          return store.noteAccessTokenExpiry(input);
        },
      },
    };

    // Act
    const expiry = await settleExpiry(
      counting,
      Promise.resolve(undefined),
      { sessionKey: 'key', version: 2, deadline: NOW + 5_000 },
      'session-log-id',
    );

    // Assert
    expect(expiry).toBeUndefined();
    expect(writes).toBe(0);
  });
});

describe('Function: expiresAtSeconds', () => {
  it('rounds epoch ms down to whole seconds, so the answer stays a lower bound', () => {
    expect(expiresAtSeconds(1_700_000_000_999)).toBe(1_700_000_000);
    expect(expiresAtSeconds(undefined)).toBeUndefined();
  });
});
