/**
 * The port to the OAuth provider's token endpoint, as the domain sees it: the validated
 * token response and one failure type sorted into kinds. The Salesforce client
 * (`functions/salesforce/*`) produces both; the domain never imports it.
 */

/** A validated token endpoint response. Salesforce never sends `expires_in`. */
export interface TokenResponse {
  accessToken: string;
  /** Present on code exchange, and on refresh only when rotation is enabled. */
  refreshToken: string | undefined;
  instanceUrl: string;
  /** The identity URL; its path names the org and the user. */
  id: string;
  orgId: string;
  userId: string;
  /** 13-digit milliseconds since the epoch, as sent. */
  issuedAt: string;
  scope: string;
  tokenType: 'Bearer';
  /** An Experience Cloud login's site (`sfdc_site_url`, else `sfdc_community_url`). */
  siteUrl?: string | undefined;
}

/**
 * What token introspection (RFC 7662) says of an access token: inactive (revoked, expired
 * or unknown), or active until `expiresAt` (epoch ms, from `exp`). A lower bound: Salesforce
 * extends a session with activity, and says so only when asked again.
 */
export type TokenIntrospection = { active: false } | { active: true; expiresAt: number };

/**
 * What went wrong upstream, in the terms the domain decides on (README "The refresh path"):
 * - `invalid_grant`: the refresh token (or code) is dead: log in again;
 * - `access_restricted`: the grant may be alive, but the provider refuses the broker from
 *   where (or when) it calls (IP restrictions, login hours): only an administrator can fix it;
 * - `token_request_in_progress`: the provider's own block on two simultaneous requests with
 *   the same refresh token: transient;
 * - `invalid_client`: wrong client id or secret (e.g. mid-rotation);
 * - `request_rejected`: any other OAuth error (`invalid_request`, `redirect_uri_mismatch`);
 * - `unavailable`: 5xx, rate limit, timeout, network failure, maintenance page;
 * - `invalid_response`: a success response that failed validation.
 */
export type UpstreamFailureKind =
  | 'invalid_grant'
  | 'access_restricted'
  | 'token_request_in_progress'
  | 'invalid_client'
  | 'request_rejected'
  | 'unavailable'
  | 'invalid_response';

/**
 * Why the provider could not be used (`unavailable`): `timeout` and `network` (a connection
 * broken after the request went out) leave the outcome unknown; `unreachable` never sent it.
 */
export type UnavailableReason =
  | 'timeout'
  | 'network'
  | 'unreachable'
  | 'server'
  | 'rate_limited'
  | 'not_json';

/** Which check a success response failed (`invalid_response`). */
export type InvalidResponseReason =
  | 'field'
  | 'signature'
  | 'instance_url'
  | 'identity_url'
  | 'refresh_token_missing';

/** The provider's OAuth error body (`error`, `error_description`), when it sent one. */
export interface UpstreamErrorBody {
  error?: string | undefined;
  /** For logs only, never shown to clients. */
  description?: string | undefined;
}

/**
 * A failed call to the token endpoint, sorted into a {@link UpstreamFailureKind}. Each
 * subclass fixes its `kind` (the adapter's classes, {@link NoTimeForUpstreamError}).
 */
export abstract class UpstreamFailure extends Error {
  abstract readonly kind: UpstreamFailureKind;
  /** The provider's `error` value, when it sent one. */
  readonly upstreamError: string | undefined;
  /** The provider's `error_description`: for logs only, never shown to clients. */
  readonly upstreamDescription: string | undefined;
  /** Seconds, from the provider's `Retry-After` (or its known rate-limit window). */
  readonly retryAfterSeconds: number | undefined;
  /**
   * Stable, usable as a metric dimension: why the provider was `unavailable`, or which
   * check an `invalid_response` failed.
   */
  readonly reason: UnavailableReason | InvalidResponseReason | undefined;

  constructor(
    message: string,
    upstream?: UpstreamErrorBody,
    options?: ErrorOptions & {
      retryAfterSeconds?: number | undefined;
      reason?: UnavailableReason | InvalidResponseReason | undefined;
    },
  ) {
    super(message, options);
    this.name = new.target.name;
    this.upstreamError = upstream?.error;
    this.upstreamDescription = upstream?.description;
    this.retryAfterSeconds = options?.retryAfterSeconds;
    this.reason = options?.reason;
  }

  /**
   * The request may have reached the provider and be processed still (or have been): the
   * refresh token it carried must not be sent again until that is settled.
   */
  get outcomeUnknown(): boolean {
    // Only `unavailable` failures have these reasons.
    return this.reason === 'timeout' || this.reason === 'network';
  }
}

/**
 * The caller's time (lease or invocation) ran out before the request could be sent, so it
 * was not: `unavailable` with the reason `server`, as a provider failure would be answered.
 */
export class NoTimeForUpstreamError extends UpstreamFailure {
  readonly kind = 'unavailable';
  override readonly reason = 'server';
}
