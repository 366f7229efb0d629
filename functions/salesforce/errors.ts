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

/** `invalid_grant`: the refresh token (or code) is expired, revoked, evicted or reused. */
export class InvalidGrantError extends SalesforceError {}

/**
 * `invalid_grant` / "token request is already being processed": Salesforce's own block on
 * two simultaneous requests with the same refresh token (since Summer '24). Transient.
 */
export class TokenRequestInProgressError extends SalesforceError {}

/** `invalid_client` / `invalid_client_id`: wrong consumer key or secret. */
export class InvalidClientError extends SalesforceError {}

/** The user said no at the authorize page (`error=access_denied` on the redirect). */
export class AuthorizationDeniedError extends SalesforceError {}

/** Any other OAuth error (`invalid_request`, `unsupported_grant_type`, `redirect_uri_mismatch`). */
export class OAuthRequestError extends SalesforceError {}

/** 5xx, 429, timeout, network failure or a non-JSON (maintenance) page. Nothing is known. */
export class SalesforceUnavailableError extends SalesforceError {
  /** Seconds, from Salesforce's `Retry-After` when it sent one. */
  readonly retryAfterSeconds: number | undefined;
  constructor(message: string, retryAfterSeconds?: number, options?: ErrorOptions) {
    super(message, undefined, options);
    this.retryAfterSeconds = retryAfterSeconds;
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
