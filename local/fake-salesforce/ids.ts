/**
 * Identifier and token shapes of the fake Salesforce org: 18-character record ids with
 * their case-safe checksum suffix, access tokens that start with the 15-character org id,
 * refresh tokens and authorization codes that look like Salesforce's.
 */
import { randomInt } from 'node:crypto';

const DIGITS = '0123456789';
const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const BASE62 = DIGITS + UPPER + LOWER;
const TOKEN_CHARS = `${BASE62}._`;
const CODE_CHARS = `${BASE62}+/`;
const CHECKSUM_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345';

/** `n` characters drawn uniformly from `alphabet` (CSPRNG). */
export function randomChars(n: number, alphabet: string = BASE62): string {
  let out = '';
  for (let i = 0; i < n; i++) out += alphabet.charAt(randomInt(alphabet.length));
  return out;
}

/** The 3-character checksum that turns a case-sensitive 15-character id into 18 characters. */
export function checksumSuffix(id15: string): string {
  let suffix = '';
  for (let chunk = 0; chunk < 3; chunk++) {
    let bits = 0;
    for (let i = 0; i < 5; i++) {
      const c = id15.charAt(chunk * 5 + i);
      if (c >= 'A' && c <= 'Z') bits |= 1 << i;
    }
    suffix += CHECKSUM_CHARS.charAt(bits);
  }
  return suffix;
}

/** A random 18-character Salesforce id with a key prefix such as `00D`, `005` or `001`. */
export function newSalesforceId(keyPrefix: string): string {
  const id15 = `${keyPrefix}${randomChars(1, DIGITS)}${randomChars(1, LOWER)}0000${randomChars(6)}`;
  return id15 + checksumSuffix(id15);
}

/** `00Dxx0000001gPL!AQ...`: the org id (15 chars), `!`, then an opaque session part. */
export function newAccessToken(orgId: string): string {
  return `${orgId.slice(0, 15)}!AQ${randomChars(1, 'EIMQ')}AQ${randomChars(100, TOKEN_CHARS)}`;
}

/** `5Aep861...`: the prefix every Salesforce refresh token shares, then random characters. */
export function newRefreshToken(): string {
  return `5Aep861${randomChars(80, TOKEN_CHARS)}`;
}

/**
 * Authorization codes are standard base64 with `+`, `/` and `=` padding, so a client that
 * does not URL-decode the `code` parameter properly fails against the fake as it would
 * against Salesforce.
 */
export function newAuthorizationCode(): string {
  return `aPrx${randomChars(82, CODE_CHARS)}==`;
}
