import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { openUnderSecret, sealUnderSecret } from './secret-seal.ts';

/** How long a broker code may be redeemed after `/callback` minted it (the contract: 60 s). */
export const BROKER_CODE_TTL_MS = 60_000;

/**
 * How long a spent or expired code's item is kept (DynamoDB TTL), so that a replay is
 * recognised and ends the connection (RFC 6749 s4.1.2) rather than being a plain unknown
 * code. A day covers any honest retry and the replays worth catching.
 */
export const BROKER_CODE_RETENTION_MS = 24 * 60 * 60 * 1000;

/** 256 random bits, base64url: the shape of a code, a challenge or a handle. */
const RANDOM_256 = /^[A-Za-z0-9_-]{43}$/;
/** RFC 7636 s4.1: 43 to 128 unreserved characters. */
const CODE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

/** A fresh broker code: 256 random bits, base64url without padding. */
export function newBrokerCode(): string {
  return randomBytes(32).toString('base64url');
}

/** Whether a string has the shape of a broker code this broker mints. */
export function isWellFormedBrokerCode(value: string): boolean {
  return RANDOM_256.test(value);
}

/** Whether a string has the shape of an S256 `code_challenge` (a SHA-256, base64url). */
export function isWellFormedCodeChallenge(value: string): boolean {
  return RANDOM_256.test(value);
}

/** Whether a string is a `code_verifier` as RFC 7636 s4.1 defines it. */
export function isWellFormedCodeVerifier(value: string): boolean {
  return CODE_VERIFIER.test(value);
}

/** The storage key of a broker code: SHA-256 of the code (base64url). Only this is stored. */
export function brokerCodeKeyOf(code: string): string {
  return sha256(code);
}

/**
 * Seals the session handle under a key derived from the code (HKDF-SHA256), with the code
 * key as AES-GCM additional data: the table, which holds only the code's hash, never
 * yields the handle, and `/token` opens it without a KMS call.
 * @see https://www.rfc-editor.org/rfc/rfc5869
 */
export function sealHandle(code: string, handle: string): Uint8Array {
  return sealUnderSecret(code, handleSeal(code), handle);
}

/** Opens {@link sealHandle}'s output; throws when the code or the item is not the one sealed. */
export function openHandle(code: string, sealed: Uint8Array): string {
  return openUnderSecret(code, handleSeal(code), sealed);
}

function handleSeal(code: string) {
  return { info: 'token-broker/broker-code-handle', additionalData: brokerCodeKeyOf(code) };
}

/**
 * The PKCE check of RFC 7636 s4.6: base64url(SHA-256(ASCII(verifier))) equals the stored
 * challenge, compared in constant time.
 * @see https://www.rfc-editor.org/rfc/rfc7636#section-4.6
 */
export function verifierMatchesChallenge(codeVerifier: string, codeChallenge: string): boolean {
  const computed = createHash('sha256').update(codeVerifier, 'ascii').digest('base64url');
  return equalInConstantTime(computed, codeChallenge);
}

/**
 * Whether two strings are equal, in time that depends on neither (both are hashed first,
 * so lengths leak nothing either).
 */
export function equalInConstantTime(a: string, b: string): boolean {
  const digestA = createHash('sha256').update(a, 'utf8').digest();
  const digestB = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(digestA, digestB);
}

function sha256(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('base64url');
}
