import { createHash, randomBytes } from 'node:crypto';

/**
 * A fresh PKCE `code_verifier`: 32 random bytes, base64url without padding (43 characters
 * from the unreserved set), as RFC 7636 section 4.1 recommends.
 * @see https://www.rfc-editor.org/rfc/rfc7636#section-4.1
 */
export function newCodeVerifier(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * The `S256` `code_challenge`: base64url(SHA-256(ASCII(code_verifier))). The `plain`
 * method is never used.
 * @see https://www.rfc-editor.org/rfc/rfc7636#section-4.2
 */
export function codeChallengeS256(codeVerifier: string): string {
  return createHash('sha256').update(codeVerifier, 'ascii').digest('base64url');
}
