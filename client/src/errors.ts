/**
 * The errors a broker client throws. Each carries the broker's stable `error` code and the
 * HTTP status; none carries a token, a session handle or a response body.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.2 (the `error` / `error_description` shape)
 */
export class BrokerError extends Error {
  override name = 'BrokerError';
  /** The broker's `error` code (`invalid_request`, `upstream_misconfigured`, ...), or the client's own. */
  readonly code: string;
  /** HTTP status of the answer; 0 when there was none (network failure, timeout). */
  readonly status: number;

  constructor(
    code: string,
    status: number,
    description: string,
    options?: { cause?: unknown; loginUrl?: string; retryAfterSeconds?: number | undefined },
  ) {
    super(description, options);
    this.code = code;
    this.status = status;
    // The subclasses' own fields (`loginUrl`, `retryAfterSeconds`): one constructor for all.
    Object.assign(this, options);
  }
}

/**
 * `401 reauthentication_required`: Salesforce refused the grant (expired, revoked, the user
 * deactivated), and the broker deleted the session. The user must log in again at `loginUrl`.
 */
export class ReauthenticationRequiredError extends BrokerError {
  override name = 'ReauthenticationRequiredError';
  /** The broker's `/login`, where to send the user. */
  declare readonly loginUrl: string;
}

/**
 * `401 invalid_session`: the broker knows no live session for this credential (logged out,
 * expired, never logged in). A new login at `loginUrl` creates a new one.
 */
export class SessionEndedError extends BrokerError {
  override name = 'SessionEndedError';
  /** The broker's `/login`, where to send the user. */
  declare readonly loginUrl: string;
}

/**
 * `503 temporarily_unavailable` (Salesforce or AWS unavailable, a refresh still running),
 * API Gateway's own `429` / `503`, or no answer at all. Nothing was deleted: retry later.
 * `getAccessToken` has already retried within its budget when it throws this.
 */
export class TemporarilyUnavailableError extends BrokerError {
  override name = 'TemporarilyUnavailableError';
  /** The broker's `Retry-After` in seconds; undefined when the answer had none. */
  declare readonly retryAfterSeconds: number | undefined;
}

/**
 * `403`: the broker refused the caller itself: a cookie call without `X-CSRF: 1` or from a
 * foreign `Origin` (`csrf_check_failed`), or API Gateway's IAM check (`{"message":"Forbidden"}`:
 * a bad signature or no `execute-api:Invoke` permission). Retrying does not help.
 */
export class ForbiddenError extends BrokerError {
  override name = 'ForbiddenError';
}
