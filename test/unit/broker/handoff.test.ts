import { describe, expect, it } from 'vitest';
import {
  brokerCodeKeyOf,
  newBrokerCode,
  openHandle,
  sealHandle,
  verifierMatchesChallenge,
} from '../../../functions/broker/broker-code.ts';
import { TokenVault } from '../../../functions/broker/envelope.ts';
import {
  InvalidClientError,
  InvalidGrantError,
  InvalidRequestError,
  UnsupportedGrantTypeError,
} from '../../../functions/broker/errors.ts';
import {
  issueBrokerCode,
  type RedeemDependencies,
  redeemBrokerCode,
  type TokenRequest,
  validateHandoff,
} from '../../../functions/broker/handoff.ts';
import { codeChallengeS256, newCodeVerifier } from '../../../functions/broker/pkce.ts';
import type { BrokerCodeRecord } from '../../../functions/broker/ports.ts';
import { newSessionHandle, sessionKeyOf } from '../../../functions/broker/session-handle.ts';
import { CaptureLog, CaptureMetrics } from '../../support/capture-log.ts';
import { sessionRecord } from '../../support/fixtures.ts';
import { MemoryBrokerCodeStore } from '../../support/memory-code-store.ts';
import { MemoryDataKeys } from '../../support/memory-data-keys.ts';
import { MemorySessionStore } from '../../support/memory-session-store.ts';

const REDIRECT = 'com.example.app:/oauth2redirect';
const CLIENT_APPS = [
  { clientId: 'ios', redirectUris: [REDIRECT] },
  { clientId: 'desktop', redirectUris: ['http://127.0.0.1/cb'] },
];

describe('Broker code: the handle sealed under the code', () => {
  it('opens with the code only; the sealed blob and the key reveal neither', () => {
    // Prepare
    const code = newBrokerCode();
    const handle = newSessionHandle();

    // Act
    const sealed = sealHandle(code, handle);

    // Assert
    expect(openHandle(code, sealed)).toBe(handle);
    expect(() => openHandle(newBrokerCode(), sealed)).toThrow();
    const flipped = Uint8Array.from(sealed);
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 1;
    expect(() => openHandle(code, flipped)).toThrow();
    expect(Buffer.from(sealed).toString('latin1')).not.toContain(handle);
    expect(brokerCodeKeyOf(code)).not.toBe(code);
    expect(code).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('checks PKCE S256 as RFC 7636 Appendix B computes it', () => {
    const verifier = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
    const challenge = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';

    expect(verifierMatchesChallenge(verifier, challenge)).toBe(true);
    expect(verifierMatchesChallenge(`${verifier.slice(0, -1)}l`, challenge)).toBe(false);
    expect(verifierMatchesChallenge(challenge, challenge)).toBe(false);
  });
});

describe('validateHandoff: the /login parameters of a registered app', () => {
  const good = {
    clientId: 'desktop',
    redirectUri: 'http://127.0.0.1:8123/cb',
    state: 'opaque app state',
    codeChallenge: codeChallengeS256(newCodeVerifier()),
    codeChallengeMethod: 'S256',
  };

  it('returns what the transaction binds, the redirect URI with its port', () => {
    expect(validateHandoff(good, CLIENT_APPS)).toEqual({
      clientId: 'desktop',
      redirectUri: 'http://127.0.0.1:8123/cb',
      appState: 'opaque app state',
      codeChallenge: good.codeChallenge,
    });
  });

  it.each([
    ['an unknown client', { clientId: 'android' }],
    ['a malformed client id', { clientId: 'a b' }],
    ['a redirect URI of another app', { redirectUri: REDIRECT }],
    ['no state', { state: undefined }],
    ['an empty state', { state: '' }],
    ['a state of 513 characters', { state: 'x'.repeat(513) }],
    ['a non-ASCII state', { state: 'é' }],
    ['a tab in the state', { state: 'a\tb' }],
    ['a short challenge', { codeChallenge: 'abc' }],
    ['the plain method', { codeChallengeMethod: 'plain' }],
    ['a lower-case method', { codeChallengeMethod: 's256' }],
  ])('refuses %s with invalid_request', (_name, change) => {
    expect(() => validateHandoff({ ...good, ...change }, CLIENT_APPS)).toThrow(InvalidRequestError);
  });

  it('accepts a state of exactly 512 printable characters, spaces included', () => {
    const state = ' ~'.repeat(256);

    expect(validateHandoff({ ...good, state }, CLIENT_APPS).appState).toBe(state);
  });
});

/** A stored session and its broker code, on in-memory ports. */
async function setup(options: { expiresInMs?: number } = {}) {
  const codes = new MemoryBrokerCodeStore();
  const store = new MemorySessionStore();
  const vault = new TokenVault(new MemoryDataKeys());
  const log = new CaptureLog();
  const metrics = new CaptureMetrics();
  const revoked: string[] = [];
  const now = Date.now();
  const handle = newSessionHandle();
  const sessionKey = sessionKeyOf(handle);
  const sealed = vault.seal(await vault.generateDataKey(sessionKey), sessionKey, 1, {
    accessToken: 'access-canary',
    refreshToken: 'refresh-canary',
    instanceUrl: 'https://acme.my.salesforce.com',
    issuedAt: String(now),
    scope: 'api refresh_token',
    identityUrl: 'https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS',
  });
  await store.create(sessionRecord(now, { sessionKey, sealed, connectionId: 'con_test' }));
  const verifier = newCodeVerifier();
  const code = newBrokerCode();
  const record: BrokerCodeRecord = {
    codeKey: brokerCodeKeyOf(code),
    clientId: 'ios',
    redirectUri: REDIRECT,
    codeChallenge: codeChallengeS256(verifier),
    connectionId: 'con_test',
    sessionKey,
    sealedHandle: sealHandle(code, handle),
    createdAt: now,
    expiresAt: now + (options.expiresInMs ?? 60_000),
  };
  await codes.create(record);
  const deps: RedeemDependencies = {
    codes,
    store,
    vault,
    log,
    metrics,
    clock: { now: () => Date.now() },
    salesforce: {
      revoke: async (token) => {
        revoked.push(token);
      },
    },
    config: { clientApps: CLIENT_APPS, invocationDeadlineMs: 5_000 },
  };
  const request: TokenRequest = {
    grantType: 'authorization_code',
    code,
    redirectUri: REDIRECT,
    clientId: 'ios',
    codeVerifier: verifier,
  };
  return { deps, request, codes, store, log, metrics, revoked, handle, sessionKey, record };
}

describe('redeemBrokerCode: POST /token', () => {
  it('hands over the handle once, with no upstream call', async () => {
    // Prepare
    const { deps, request, handle, revoked, codes, record } = await setup();

    // Act
    const handedOver = await redeemBrokerCode(deps, request);

    // Assert
    expect(handedOver).toEqual({ handle, connectionId: 'con_test' });
    expect(revoked).toEqual([]);
    expect((await codes.get(record.codeKey))?.redeemedAt).toBeTypeOf('number');
  });

  it('refuses another grant type before it looks at the client or the code', async () => {
    const { deps, request, codes, record } = await setup();

    await expect(
      redeemBrokerCode(deps, { ...request, grantType: 'refresh_token', clientId: 'nobody' }),
    ).rejects.toBeInstanceOf(UnsupportedGrantTypeError);
    expect((await codes.get(record.codeKey))?.redeemedAt).toBeUndefined();
  });

  it('answers invalid_client to an unknown client and leaves the code unspent', async () => {
    // Prepare
    const { deps, request, codes, record } = await setup();

    // Act
    const refused = redeemBrokerCode(deps, { ...request, clientId: 'android' });

    // Assert
    await expect(refused).rejects.toBeInstanceOf(InvalidClientError);
    await expect(refused).rejects.toMatchObject({ status: 401, code: 'invalid_client' });
    expect((await codes.get(record.codeKey))?.redeemedAt).toBeUndefined();
    await expect(redeemBrokerCode(deps, request)).resolves.toMatchObject({
      connectionId: 'con_test',
    });
  });

  it('ends the connection when the code is presented again, and logs code_replayed', async () => {
    // Prepare
    const { deps, request, store, sessionKey, revoked, log } = await setup();
    await redeemBrokerCode(deps, request);

    // Act
    const replay = redeemBrokerCode(deps, request);

    // Assert
    await expect(replay).rejects.toBeInstanceOf(InvalidGrantError);
    expect(await store.get(sessionKey)).toBeUndefined();
    expect(revoked).toEqual(['refresh-canary']);
    const entry = log.entries.find((e) => e.attributes.event === 'code_replayed');
    expect(entry?.attributes.connection).toBe('con_test');
    expect(log.text()).not.toContain(request.code);
  });

  it.each([
    ['a wrong verifier', { codeVerifier: newCodeVerifier() }, 'verifier_mismatch'],
    ['another registered client', { clientId: 'desktop' }, 'client_mismatch'],
    ['another redirect URI', { redirectUri: 'com.example.app:/x' }, 'redirect_uri_mismatch'],
  ])('%s: invalid_grant, the code spent and its session ended', async (_name, change, reason) => {
    // Prepare
    const { deps, request, store, sessionKey, revoked, log } = await setup();

    // Act
    const refused = redeemBrokerCode(deps, { ...request, ...change });

    // Assert
    await expect(refused).rejects.toBeInstanceOf(InvalidGrantError);
    expect(await store.get(sessionKey)).toBeUndefined();
    expect(revoked).toEqual(['refresh-canary']);
    expect(log.entries.find((e) => e.attributes.event === 'code_rejected')?.attributes.reason).toBe(
      reason,
    );
    await expect(redeemBrokerCode(deps, request)).rejects.toBeInstanceOf(InvalidGrantError);
  });

  it('refuses an expired code and ends its session', async () => {
    const { deps, request, store, sessionKey } = await setup({ expiresInMs: -1 });

    await expect(redeemBrokerCode(deps, request)).rejects.toBeInstanceOf(InvalidGrantError);
    expect(await store.get(sessionKey)).toBeUndefined();
  });

  it('raises the integrity alarm for an item whose sealed handle does not open', async () => {
    // Prepare: the item of another code copied under this code's key
    const { deps, request, codes, record, store, sessionKey, metrics, log } = await setup();
    codes.items.set(record.codeKey, {
      ...record,
      sealedHandle: sealHandle(newBrokerCode(), newSessionHandle()),
    });

    // Act
    const refused = redeemBrokerCode(deps, request);

    // Assert
    await expect(refused).rejects.toBeInstanceOf(InvalidGrantError);
    expect(metrics.counts.get('IntegrityError')).toBe(1);
    expect(log.entries.find((e) => e.attributes.event === 'integrity_error')?.level).toBe('error');
    expect(await store.get(sessionKey)).toBeUndefined();
  });

  it('refuses an unknown or malformed code without touching any session', async () => {
    const { deps, request, store, sessionKey } = await setup();

    await expect(
      redeemBrokerCode(deps, { ...request, code: newBrokerCode() }),
    ).rejects.toBeInstanceOf(InvalidGrantError);
    await expect(redeemBrokerCode(deps, { ...request, code: 'x' })).rejects.toBeInstanceOf(
      InvalidGrantError,
    );
    expect(await store.get(sessionKey)).toBeDefined();
  });
});

describe('issueBrokerCode: /callback stores the code', () => {
  const grant = () => ({
    handoff: { clientId: 'ios', redirectUri: REDIRECT, appState: 's', codeChallenge: 'c' },
    connectionId: 'con_test',
    sessionKey: 'key',
    handle: newSessionHandle(),
  });
  const clock = { now: () => Date.now() };

  it('stores only the hash of the code, for 60 seconds', async () => {
    const codes = new MemoryBrokerCodeStore();

    const code = await issueBrokerCode({ codes, clock }, grant(), {});

    const stored = [...codes.items.values()];
    expect(stored).toHaveLength(1);
    expect(stored[0]?.codeKey).toBe(brokerCodeKeyOf(code ?? ''));
    expect((stored[0]?.expiresAt ?? 0) - (stored[0]?.createdAt ?? 0)).toBe(60_000);
    expect(JSON.stringify(stored)).not.toContain(code);
  });

  it('reads a put back when its answer was lost, and says so when it did not land', async () => {
    // Prepare: one store whose put lands but throws, one whose put throws before landing
    const landed = new MemoryBrokerCodeStore();
    const create = landed.create.bind(landed);
    landed.create = async (record) => {
      await create(record);
      throw new Error('socket hang up');
    };
    const lost = new MemoryBrokerCodeStore();
    lost.create = async () => {
      throw new Error('socket hang up');
    };

    // Act
    const fromLanded = await issueBrokerCode({ codes: landed, clock }, grant(), {});
    const fromLost = await issueBrokerCode({ codes: lost, clock }, grant(), {});

    // Assert
    expect(fromLanded).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(fromLost).toBeUndefined();
  });
});
