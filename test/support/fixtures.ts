/**
 * The values and builders the tests share, in one place: a day in ms, the identity of the
 * fake user, a validated token response and a stored session record.
 */
import type { SessionRecord } from '../../functions/broker/ports.ts';
import type { TokenResponse } from '../../functions/broker/upstream.ts';

export const DAY = 86_400_000;

export const ORG_ID = '00Dxx0000001gPLEAY';
export const USER_ID = '005xx000001Sv6AAAS';
/** Salesforce's identity URL for {@link ORG_ID} and {@link USER_ID}. */
export const IDENTITY_URL = `https://login.salesforce.com/id/${ORG_ID}/${USER_ID}`;

/** A token response as the OAuth client hands it to the domain (validated). */
export function tokenResponse(overrides: Partial<TokenResponse> = {}): TokenResponse {
  return {
    accessToken: 'access-token',
    refreshToken: 'refresh-token',
    instanceUrl: 'https://acme.my.salesforce.com',
    id: IDENTITY_URL,
    orgId: ORG_ID,
    userId: USER_ID,
    issuedAt: '1800000000000',
    scope: 'api refresh_token',
    tokenType: 'Bearer',
    ...overrides,
  };
}

/** A live session at version 1, committed a minute before `now`, with no lease. */
export function sessionRecord(now: number, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    sessionKey: 'key',
    version: 1,
    sealed: { ciphertext: new Uint8Array([1, 2, 3]), encryptedDataKey: new Uint8Array([9]) },
    committedAt: now - 60_000,
    createdAt: now - 60_000,
    absoluteExpiresAt: now + 30 * DAY,
    idleExpiresAt: now + 7 * DAY,
    orgId: ORG_ID,
    userId: USER_ID,
    ...overrides,
  };
}
