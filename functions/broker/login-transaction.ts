import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { InvalidStateError } from './errors.ts';
import { openUnderSecret, sealUnderSecret } from './secret-seal.ts';

/** How long a login may take from `/login` to `/callback` (10 minutes). */
export const LOGIN_TRANSACTION_TTL_MS = 10 * 60 * 1000;

/** 256 random bits, base64url without padding. */
const RANDOM_VALUE = /^[A-Za-z0-9_-]{43}$/;

/**
 * A fresh OAuth `state`: 256 random bits, base64url (RFC 6749 asks for a value an attacker
 * cannot guess; the contract asks for at least 128 bits).
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-10.12
 */
export function newState(): string {
  return randomBytes(32).toString('base64url');
}

/** A fresh value for the `__Host-tb-login` cookie: 256 random bits, base64url. */
export function newLoginCookieValue(): string {
  return randomBytes(32).toString('base64url');
}

/** Whether a string has the shape of a state or login cookie this broker minted. */
export function isWellFormedRandomValue(value: string): boolean {
  return RANDOM_VALUE.test(value);
}

/** The storage key of a login transaction: SHA-256 of the state (base64url). */
export function stateKeyOf(state: string): string {
  return sha256(state);
}

/** What is stored of the login cookie: SHA-256 of its value (base64url). */
export function loginCookieHash(value: string): string {
  return sha256(value);
}

/**
 * Whether one of the login cookies the browser sent is the one bound to the transaction.
 * Compares hashes in constant time, so the comparison leaks nothing about the stored hash.
 */
export function matchesLoginCookie(cookieValues: readonly string[], cookieHash: string): boolean {
  const expected = Buffer.from(cookieHash, 'utf8');
  let matched = false;
  // A browser sends one; a few are tolerated (stale duplicates), every one is compared.
  for (const value of cookieValues.slice(0, 4)) {
    const actual = Buffer.from(loginCookieHash(value), 'utf8');
    if (actual.length === expected.length && timingSafeEqual(actual, expected)) matched = true;
  }
  return matched;
}

/**
 * Seals the PKCE verifier under a key derived from the state (HKDF-SHA256, RFC 5869), with
 * the state key as AES-GCM additional data: the table alone (which holds only the state's
 * hash) does not reveal the verifier.
 * @see https://www.rfc-editor.org/rfc/rfc5869
 */
export function sealVerifier(state: string, codeVerifier: string): Uint8Array {
  return sealUnderSecret(state, verifierSeal(state), codeVerifier);
}

/** Opens {@link sealVerifier}'s output; a damaged item is an unusable transaction. */
export function openVerifier(state: string, sealed: Uint8Array): string {
  try {
    return openUnderSecret(state, verifierSeal(state), sealed);
  } catch (cause) {
    throw new InvalidStateError('The login could not be completed; start it again.', { cause });
  }
}

function verifierSeal(state: string) {
  return { info: 'token-broker/login-verifier', additionalData: stateKeyOf(state) };
}

function sha256(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('base64url');
}
