import { expiresAtSeconds } from '../broker/expiry.ts';
import type { FreshAccessToken } from '../broker/refresh.ts';

/**
 * The wire form of a fresh access token (README "HTTP contract (v1)", `POST /refresh`):
 * the one answer of `/refresh` and of the service API's token route, which must not drift.
 * `site_url` only when the login named an Experience Cloud site; `expires_at` (epoch
 * seconds, a lower bound: Salesforce extends sessions with activity) only when
 * introspection told it (README "Access token expiry").
 */
export function accessTokenJson(token: FreshAccessToken): Record<string, unknown> {
  return {
    access_token: token.accessToken,
    instance_url: token.instanceUrl,
    token_type: 'Bearer',
    issued_at: token.issuedAt,
    version: token.version,
    ...(token.siteUrl === undefined ? {} : { site_url: token.siteUrl }),
    ...(token.expiresAt === undefined ? {} : { expires_at: expiresAtSeconds(token.expiresAt) }),
  };
}
