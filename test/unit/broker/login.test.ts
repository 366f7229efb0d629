import { describe, expect, it } from 'vitest';
import { InvalidStateError } from '../../../functions/broker/errors.ts';
import { type LoginDependencies, startLogin } from '../../../functions/broker/login.ts';
import {
  isWellFormedRandomValue,
  LOGIN_TRANSACTION_TTL_MS,
  loginCookieHash,
  matchesLoginCookie,
  newLoginCookieValue,
  newState,
  openVerifier,
  sealVerifier,
  stateKeyOf,
} from '../../../functions/broker/login-transaction.ts';
import { codeChallengeS256 } from '../../../functions/broker/pkce.ts';
import { SalesforceOAuthClient } from '../../../functions/salesforce/oauth-client.ts';
import { CaptureLog, CaptureMetrics } from '../../support/capture-log.ts';
import { MemoryLoginStore } from '../../support/memory-login-store.ts';

const LOGIN_URL = new URL('https://login.salesforce.com');
const CALLBACK_URL = new URL('https://broker.example.com/callback');

function setup() {
  const clock = { t: 1_800_000_000_000, now: () => clock.t };
  const transactions = new MemoryLoginStore();
  const log = new CaptureLog();
  const deps: LoginDependencies = {
    transactions,
    credentials: {
      get: async () => ({ clientId: 'client-id-123', clientSecret: 'secret-never-sent' }),
      reload: async () => ({ clientId: 'client-id-123', clientSecret: 'secret-never-sent' }),
    },
    salesforce: new SalesforceOAuthClient({ loginUrl: LOGIN_URL, timeoutMs: 1000 }),
    clock,
    log,
    metrics: new CaptureMetrics(),
    config: {
      scopes: 'api refresh_token',
      invocationDeadlineMs: 10_000,
      callbackUrl: CALLBACK_URL,
    },
  };
  return { deps, clock, transactions, log };
}

describe('Function: startLogin', () => {
  it('redirects to the authorize endpoint with PKCE S256 and the configured redirect_uri', async () => {
    // Prepare
    const { deps, transactions } = setup();

    // Act
    const started = await startLogin(deps, { returnTo: '/app' });

    // Assert
    const url = started.authorizeUrl;
    expect(url.origin + url.pathname).toBe(
      'https://login.salesforce.com/services/oauth2/authorize',
    );
    expect([...url.searchParams.keys()]).toEqual([
      'response_type',
      'client_id',
      'redirect_uri',
      'scope',
      'state',
      'code_challenge',
      'code_challenge_method',
    ]);
    expect(url.searchParams.get('response_type')).toBe('code');
    expect(url.searchParams.get('client_id')).toBe('client-id-123');
    expect(url.searchParams.get('redirect_uri')).toBe('https://broker.example.com/callback');
    expect(url.searchParams.get('scope')).toBe('api refresh_token');
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.toString()).not.toContain('secret-never-sent');

    const state = url.searchParams.get('state') ?? '';
    expect(isWellFormedRandomValue(state)).toBe(true);
    const stored = transactions.items.get(stateKeyOf(state));
    if (!stored) throw new Error('no transaction stored under the hash of the state');
    const verifier = openVerifier(state, stored.sealedVerifier);
    expect(url.searchParams.get('code_challenge')).toBe(codeChallengeS256(verifier));
  });

  it('stores the transaction for 10 minutes, bound to the cookie, without the state or cookie in clear', async () => {
    const { deps, clock, transactions } = setup();

    const started = await startLogin(deps, { returnTo: '/app/x', currentSessionKey: 'old-key' });

    const state = started.authorizeUrl.searchParams.get('state') ?? '';
    const [stored] = [...transactions.items.values()];
    expect(stored).toMatchObject({
      stateKey: stateKeyOf(state),
      returnTo: '/app/x',
      cookieHash: loginCookieHash(started.loginCookieValue),
      createdAt: clock.t,
      expiresAt: clock.t + LOGIN_TRANSACTION_TTL_MS,
      replacesSessionKey: 'old-key',
    });
    expect(LOGIN_TRANSACTION_TTL_MS).toBe(600_000);
    const serialized = JSON.stringify(stored, (_key, value) =>
      value instanceof Uint8Array ? Buffer.from(value).toString('latin1') : value,
    );
    expect(serialized).not.toContain(state);
    expect(serialized).not.toContain(started.loginCookieValue);
    expect(isWellFormedRandomValue(started.loginCookieValue)).toBe(true);
  });

  it('passes prompt and login_hint through', async () => {
    const { deps } = setup();

    const started = await startLogin(deps, {
      returnTo: '/',
      prompt: 'login consent',
      loginHint: 'user@example.com',
    });

    expect(started.authorizeUrl.searchParams.get('prompt')).toBe('login consent');
    expect(started.authorizeUrl.searchParams.get('login_hint')).toBe('user@example.com');
  });

  it('uses a fresh state, verifier and cookie for every login, and logs none of them', async () => {
    const { deps, transactions, log } = setup();

    const logins = await Promise.all(
      Array.from({ length: 20 }, () => startLogin(deps, { returnTo: '/' })),
    );

    const states = logins.map((login) => login.authorizeUrl.searchParams.get('state') ?? '');
    const challenges = logins.map((l) => l.authorizeUrl.searchParams.get('code_challenge'));
    expect(new Set(states).size).toBe(20);
    expect(new Set(challenges).size).toBe(20);
    expect(new Set(logins.map((login) => login.loginCookieValue)).size).toBe(20);
    expect(transactions.items.size).toBe(20);
    const text = log.text();
    for (const [index, login] of logins.entries()) {
      expect(text).not.toContain(states[index]);
      expect(text).not.toContain(login.loginCookieValue);
      expect(text).not.toContain(challenges[index]);
    }
  });
});

describe('Login transaction checks', () => {
  it('mints 256-bit base64url states and cookie values', () => {
    for (const value of [newState(), newLoginCookieValue()]) {
      expect(value).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(value, 'base64url')).toHaveLength(32);
    }
  });

  it('hashes the state with SHA-256 (base64url)', () => {
    // SHA-256("abc"), FIPS 180-2 appendix B.1
    expect(Buffer.from(stateKeyOf('abc'), 'base64url').toString('hex')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });

  it('matches the login cookie by hash, among the values the browser sent', () => {
    const value = newLoginCookieValue();
    const hash = loginCookieHash(value);

    expect(matchesLoginCookie([value], hash)).toBe(true);
    expect(matchesLoginCookie(['stale', value], hash)).toBe(true);
    expect(matchesLoginCookie([], hash)).toBe(false);
    expect(matchesLoginCookie([newLoginCookieValue()], hash)).toBe(false);
    expect(matchesLoginCookie([hash], hash)).toBe(false);
    expect(matchesLoginCookie([`${value}x`], hash)).toBe(false);
  });

  it('opens the sealed verifier only with its own state', () => {
    const state = newState();
    const sealed = sealVerifier(state, 'the-verifier');

    expect(openVerifier(state, sealed)).toBe('the-verifier');
    expect(() => openVerifier(newState(), sealed)).toThrow(InvalidStateError);
    const flipped = Buffer.from(sealed);
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 1;
    expect(() => openVerifier(state, flipped)).toThrow(InvalidStateError);
    expect(() => openVerifier(state, new Uint8Array(10))).toThrow(InvalidStateError);
  });

  it('recognises only the shape of values the broker mints', () => {
    expect(isWellFormedRandomValue(newState())).toBe(true);
    expect(isWellFormedRandomValue('')).toBe(false);
    expect(isWellFormedRandomValue(`${newState()}A`)).toBe(false);
    expect(isWellFormedRandomValue(`${newState().slice(1)}=`)).toBe(false);
  });
});
