/**
 * Domain errors of the broker. Every error a client can see has a stable `code` (the
 * `error` member of the JSON body, see README "HTTP contract (v1)") and an HTTP status.
 * Adapters translate SDK and network failures into these types and keep the original
 * error as `cause`; `functions/http/responses.ts` maps them to HTTP in one place.
 */
export abstract class BrokerError extends Error {
  abstract readonly status: number;
  abstract readonly code: string;
  /** Text safe to show to a client: never carries upstream text or a secret. */
  readonly safeDescription: string;

  constructor(safeDescription: string, options?: ErrorOptions) {
    super(safeDescription, options);
    this.safeDescription = safeDescription;
    this.name = new.target.name;
  }
}

/** Malformed input: a bad body, parameter or `return_to`. */
export class InvalidRequestError extends BrokerError {
  override readonly status: number = 400;
  override readonly code = 'invalid_request';
}

/** A body larger than the 16 KB the broker accepts. */
export class PayloadTooLargeError extends InvalidRequestError {
  override readonly status = 413;
}

/** Unknown, expired, replayed or cookie-mismatched OAuth `state`. */
export class InvalidStateError extends BrokerError {
  override readonly status = 400;
  override readonly code = 'invalid_state';
}

/** The user declined the authorization at Salesforce. */
export class AccessDeniedError extends BrokerError {
  override readonly status = 400;
  override readonly code = 'access_denied';
}

/** The code exchange or the checks of its response failed. */
export class LoginFailedError extends BrokerError {
  override readonly status = 400;
  override readonly code = 'login_failed';
}

/** No, unknown, expired or deleted session handle. */
export class InvalidSessionError extends BrokerError {
  override readonly status = 401;
  override readonly code = 'invalid_session';
}

/**
 * A stored token set failed to decrypt or authenticate (copied ciphertext, flipped bit,
 * replayed version). Clients see `invalid_session`; operators see an integrity alarm.
 */
export class SessionIntegrityError extends InvalidSessionError {}

/** Salesforce answered `invalid_grant`: the refresh token is dead, the session is gone. */
export class ReauthenticationRequiredError extends BrokerError {
  override readonly status = 401;
  override readonly code = 'reauthentication_required';
}

/** Cookie credential without `X-CSRF: 1`, or with a foreign `Origin`. */
export class CsrfCheckFailedError extends BrokerError {
  override readonly status = 403;
  override readonly code = 'csrf_check_failed';
}

/**
 * A service API call that reached its function without the caller identity API Gateway's
 * `AWS_IAM` authorization adds: the route is misconfigured, so nothing is served.
 */
export class ServiceCallerUnknownError extends BrokerError {
  override readonly status = 403;
  override readonly code = 'forbidden';
}

export class NotFoundError extends BrokerError {
  override readonly status = 404;
  override readonly code = 'not_found';
}

export class MethodNotAllowedError extends BrokerError {
  override readonly status = 405;
  override readonly code = 'method_not_allowed';
  readonly allow: readonly string[];
  constructor(allow: readonly string[]) {
    super(`Use ${allow.join(', ')}.`);
    this.allow = allow;
  }
}

/**
 * Salesforce answered `invalid_client` / `invalid_client_id` even after the secret was
 * re-read: the connected app or the secret is misconfigured. Nothing is deleted.
 */
export class UpstreamMisconfiguredError extends BrokerError {
  override readonly status = 502;
  override readonly code = 'upstream_misconfigured';
}

/** The safe description of {@link UpstreamMisconfiguredError} for rejected credentials. */
export const UPSTREAM_MISCONFIGURED_DESCRIPTION =
  'Salesforce rejected the connected app credentials.';

/**
 * Salesforce answered `invalid_grant` with "ip restricted" or "invalid login hours": the
 * grant is alive, but Salesforce refuses the broker from where (or when) it calls. The
 * caller cannot fix it, an administrator can; the session is kept.
 */
export class UpstreamForbiddenError extends BrokerError {
  override readonly status = 502;
  override readonly code = 'upstream_forbidden';
}

/** The safe description of {@link UpstreamForbiddenError}: names the policy, no upstream text. */
export const UPSTREAM_FORBIDDEN_DESCRIPTION =
  "Salesforce refused the broker's request because of the connected app's IP restrictions " +
  "or the user's login hours; an administrator must allow the broker's egress IP addresses " +
  '(or relax the policy). The session is kept.';

/**
 * Salesforce or AWS is unavailable, slow or throttling, or a concurrent refresh did not
 * finish within the waiting budget. Nothing is deleted; the client retries after
 * `retryAfterSeconds`.
 */
export class TemporarilyUnavailableError extends BrokerError {
  override readonly status = 503;
  override readonly code = 'temporarily_unavailable';
  readonly retryAfterSeconds: number;
  constructor(safeDescription: string, retryAfterSeconds = 1, options?: ErrorOptions) {
    super(safeDescription, options);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/**
 * The OAuth token endpoint's own errors (RFC 6749 s5.2), answered by `POST /token`: their
 * `code` is the RFC's, not one of the broker's usual set.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.2
 */
/** Unknown, expired or spent broker code, or a verifier, redirect URI or client it is not bound to. */
export class InvalidGrantError extends BrokerError {
  override readonly status = 400;
  override readonly code = 'invalid_grant';
}

/** A `grant_type` other than `authorization_code`. */
export class UnsupportedGrantTypeError extends BrokerError {
  override readonly status = 400;
  override readonly code = 'unsupported_grant_type';
}

/** A `client_id` that is not a registered app. */
export class InvalidClientError extends BrokerError {
  override readonly status = 401;
  override readonly code = 'invalid_client';
}
