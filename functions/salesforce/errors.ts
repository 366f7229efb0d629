/**
 * Failures of the Salesforce OAuth endpoints, classified the way the refresh path needs
 * them (README "The refresh path"). Salesforce's own `error_description` is kept for logs
 * (`upstreamDescription`) but never shown to clients.
 */
export abstract class SalesforceError extends Error {
  /** Salesforce's `error` value, when it sent one. */
  readonly upstreamError: string | undefined;
  readonly upstreamDescription: string | undefined;

  constructor(
    message: string,
    upstream?: { error?: string | undefined; description?: string | undefined },
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
    this.upstreamError = upstream?.error;
    this.upstreamDescription = upstream?.description;
  }
}

/**
 * `invalid_grant`: the refresh token (or code) is expired, revoked, evicted or reused, or
 * its user or org is inactive. The grant is dead: log in again.
 */
export class InvalidGrantError extends SalesforceError {}

/**
 * `invalid_grant` / "ip restricted" or "invalid login hours": the grant may be alive, but
 * Salesforce refuses the broker from where (or when) it calls: the connected app's IP
 * relaxation policy or the profile's login IP ranges and hours. Only an administrator can
 * fix it; the session must be kept.
 * @see https://help.salesforce.com/s/articleView?id=sf.connected_app_edit_ip_ranges.htm
 */
export class AccessRestrictedError extends SalesforceError {}

/**
 * `invalid_grant` / "token request is already being processed": Salesforce's own block on
 * two simultaneous requests with the same refresh token (since Summer '24). Transient.
 */
export class TokenRequestInProgressError extends SalesforceError {}

/**
 * `invalid_client`, `invalid_client_id`, `invalid_client_credentials` or
 * `unauthorized_client`: wrong consumer key or secret (e.g. mid-rotation).
 */
export class InvalidClientError extends SalesforceError {}

/** Any other OAuth error (`invalid_request`, `unsupported_grant_type`, `redirect_uri_mismatch`). */
export class OAuthRequestError extends SalesforceError {}

/**
 * Why Salesforce could not be used: `timeout` and `network` (a connection broken after the
 * request went out) leave the outcome unknown; `unreachable` never sent it.
 */
export type UnavailableReason =
  | 'timeout'
  | 'network'
  | 'unreachable'
  | 'server'
  | 'rate_limited'
  | 'not_json';

/**
 * 5xx, 429 or `rate_limit_exceeded`, timeout, network failure or a non-JSON (maintenance)
 * page. Nothing about the grant is known; nothing is deleted.
 */
export class SalesforceUnavailableError extends SalesforceError {
  /** Seconds, from Salesforce's `Retry-After` when it sent one. */
  readonly retryAfterSeconds: number | undefined;
  readonly reason: UnavailableReason;
  constructor(
    message: string,
    retryAfterSeconds?: number,
    options?: ErrorOptions & {
      reason?: UnavailableReason;
      upstream?: { error?: string | undefined; description?: string | undefined };
    },
  ) {
    super(message, options?.upstream, options);
    this.retryAfterSeconds = retryAfterSeconds;
    this.reason = options?.reason ?? 'server';
  }

  /**
   * The request may have reached Salesforce and be processed still (or have been): the
   * refresh token it carried must not be sent again until that is settled.
   */
  get outcomeUnknown(): boolean {
    return this.reason === 'timeout' || this.reason === 'network';
  }
}

/**
 * A 200 response that fails validation: a missing or mistyped field, a bad `signature`,
 * a foreign `instance_url`. The message names the field.
 */
export class InvalidTokenResponseError extends SalesforceError {
  /** Stable reason, usable as a metric dimension. */
  readonly reason:
    | 'field'
    | 'signature'
    | 'instance_url'
    | 'identity_url'
    | 'refresh_token_missing';
  constructor(message: string, reason: InvalidTokenResponseError['reason']) {
    super(message);
    this.reason = reason;
  }
}
