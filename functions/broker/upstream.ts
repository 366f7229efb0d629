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
}

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

export interface UpstreamFailureDetails {
  /** The provider's `error` value, when it sent one. */
  upstreamError?: string | undefined;
  /** The provider's `error_description`: for logs only, never shown to clients. */
  upstreamDescription?: string | undefined;
  /** Seconds, from the provider's `Retry-After` (or its known rate-limit window). */
  retryAfterSeconds?: number | undefined;
  /** `unavailable`: why (defaults to `server`); `invalid_response`: which check failed. */
  reason?: UnavailableReason | InvalidResponseReason | undefined;
}

/** A failed call to the token endpoint, sorted into a {@link UpstreamFailureKind}. */
export class UpstreamFailure extends Error {
  readonly kind: UpstreamFailureKind;
  readonly upstreamError: string | undefined;
  readonly upstreamDescription: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  /** Stable, usable as a metric dimension; see {@link UpstreamFailureDetails.reason}. */
  readonly reason: UnavailableReason | InvalidResponseReason | undefined;

  constructor(
    kind: UpstreamFailureKind,
    message: string,
    details: UpstreamFailureDetails = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
    this.kind = kind;
    this.upstreamError = details.upstreamError;
    this.upstreamDescription = details.upstreamDescription;
    this.retryAfterSeconds = details.retryAfterSeconds;
    this.reason = details.reason ?? (kind === 'unavailable' ? 'server' : undefined);
  }

  /**
   * The request may have reached the provider and be processed still (or have been): the
   * refresh token it carried must not be sent again until that is settled.
   */
  get outcomeUnknown(): boolean {
    return this.kind === 'unavailable' && (this.reason === 'timeout' || this.reason === 'network');
  }
}
