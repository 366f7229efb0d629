import { createHash, randomBytes } from 'node:crypto';

/** 256 bits of randomness, base64url without padding: 43 characters. */
const HANDLE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** Mints a new opaque session handle (256 random bits, base64url). */
export function newSessionHandle(): string {
  return randomBytes(32).toString('base64url');
}

/** Whether a string has the shape of a handle; anything else is rejected before any lookup. */
export function isWellFormedHandle(value: string): boolean {
  return HANDLE_PATTERN.test(value);
}

/**
 * The storage key of a session: SHA-256 of the handle. The handle has 256 bits of entropy,
 * so an unsalted hash is enough to make a leaked table useless for impersonation.
 */
export function sessionKeyOf(handle: string): string {
  return createHash('sha256').update(handle, 'utf8').digest('base64url');
}

/** A hash for correlating logs without revealing the value (first 12 base64url chars). */
export function logSafeId(value: string): string {
  return createHash('sha256').update(`log:${value}`, 'utf8').digest('base64url').slice(0, 12);
}
