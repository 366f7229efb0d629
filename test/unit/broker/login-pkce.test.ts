import { describe, expect, it } from 'vitest';
import { codeChallengeS256, newCodeVerifier } from '../../../functions/broker/pkce.ts';

describe('PKCE (RFC 7636)', () => {
  it('computes the S256 challenge of the appendix B test vector', () => {
    // Prepare: RFC 7636 appendix B
    const verifier = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';

    // Act
    const challenge = codeChallengeS256(verifier);

    // Assert
    expect(challenge).toBe('E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
  });

  it('mints 43-character unreserved verifiers (32 random bytes), fresh every time', () => {
    const verifiers = Array.from({ length: 200 }, () => newCodeVerifier());

    for (const verifier of verifiers) expect(verifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(new Set(verifiers).size).toBe(200);
    expect(Buffer.from(verifiers[0] ?? '', 'base64url')).toHaveLength(32);
  });
});
