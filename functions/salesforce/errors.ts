/**
 * Failures of the Salesforce OAuth endpoints, each class one `UpstreamFailureKind` of the
 * domain's port (README "The refresh path"). Salesforce's own `error_description` is kept
 * for logs (`upstreamDescription`) but never shown to clients.
 */
import {
  type InvalidResponseReason,
  type UnavailableReason,
  type UpstreamErrorBody,
  UpstreamFailure,
} from '../broker/upstream.ts';

/**
 * `invalid_grant`: the refresh token (or code) is expired, revoked, evicted or reused, or
 * its user or org is inactive. The grant is dead: log in again.
 */
export class InvalidGrantError extends UpstreamFailure {
  readonly kind = 'invalid_grant';
}

/**
 * `invalid_grant` / "ip restricted" or "invalid login hours": the grant may be alive, but
 * Salesforce refuses the broker from where (or when) it calls: the connected app's IP
 * relaxation policy or the profile's login IP ranges and hours. Only an administrator can
 * fix it; the session must be kept.
 * @see https://help.salesforce.com/s/articleView?id=sf.connected_app_edit_ip_ranges.htm
 */
export class AccessRestrictedError extends UpstreamFailure {
  readonly kind = 'access_restricted';
}

/**
 * `invalid_grant` / "token request is already being processed": Salesforce's own block on
 * two simultaneous requests with the same refresh token (since Summer '24). Transient.
 */
export class TokenRequestInProgressError extends UpstreamFailure {
  readonly kind = 'token_request_in_progress';
}

/**
 * `invalid_client`, `invalid_client_id`, `invalid_client_credentials` or
 * `unauthorized_client`: wrong consumer key or secret (e.g. mid-rotation).
 */
export class InvalidClientError extends UpstreamFailure {
  readonly kind = 'invalid_client';
}

/** Any other OAuth error (`invalid_request`, `unsupported_grant_type`, `redirect_uri_mismatch`). */
export class OAuthRequestError extends UpstreamFailure {
  readonly kind = 'request_rejected';
}

/**
 * 5xx, 429 or `rate_limit_exceeded`, timeout, network failure or a non-JSON (maintenance)
 * page. Nothing about the grant is known; nothing is deleted. `outcomeUnknown` (inherited)
 * tells a request that may still be processed.
 */
export class SalesforceUnavailableError extends UpstreamFailure {
  readonly kind = 'unavailable';
  declare readonly reason: UnavailableReason;
  constructor(
    message: string,
    retryAfterSeconds?: number,
    options?: ErrorOptions & { reason?: UnavailableReason; upstream?: UpstreamErrorBody },
  ) {
    super(message, options?.upstream, {
      ...options,
      retryAfterSeconds,
      reason: options?.reason ?? 'server',
    });
  }
}

/**
 * A 200 response that fails validation: a missing or mistyped field, a bad `signature`,
 * a foreign `instance_url`. The message names the field.
 */
export class InvalidTokenResponseError extends UpstreamFailure {
  readonly kind = 'invalid_response';
  declare readonly reason: InvalidResponseReason;
  constructor(message: string, reason: InvalidResponseReason) {
    super(message, undefined, { reason });
  }
}
