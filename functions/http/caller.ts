import { CsrfCheckFailedError, InvalidSessionError } from '../broker/errors.ts';
import { isWellFormedHandle } from '../broker/session-handle.ts';
import { SESSION_COOKIE } from './cookies.ts';
import { cookieValues, type HttpRequest } from './request.ts';

/**
 * Finds the caller's session handle (README "HTTP contract (v1)"):
 * `Authorization: Bearer <handle>` wins when present; otherwise the `__Host-tb-session`
 * cookie, which is accepted only with `X-CSRF: 1` and, when an `Origin` is sent, an
 * allow-listed one. These checks come before any session lookup. A malformed handle is
 * rejected here, so it never reaches the store.
 */
export function callerHandle(request: HttpRequest, allowedOrigins: readonly string[]): string {
  const authorization = request.headers.authorization;
  if (authorization !== undefined) {
    const match = /^Bearer +(\S+)\s*$/i.exec(authorization);
    const bearer = match?.[1];
    if (bearer === undefined) {
      throw new InvalidSessionError('The Authorization header must be "Bearer <session handle>".');
    }
    // The header's form is right; only the handle is wrong. Saying "malformed or unknown"
    // (not which) tells a client to log in again without helping anyone probe handles.
    if (!isWellFormedHandle(bearer)) {
      throw new InvalidSessionError('The session handle is malformed or unknown.');
    }
    return bearer;
  }

  const cookies = cookieValues(request, SESSION_COOKIE);
  if (cookies.length === 0) throw new InvalidSessionError('No session credential was sent.');
  if (request.headers['x-csrf'] !== '1') {
    throw new CsrfCheckFailedError('Requests with the session cookie must send "X-CSRF: 1".');
  }
  const origin = request.headers.origin;
  if (origin !== undefined && !allowedOrigins.includes(origin)) {
    throw new CsrfCheckFailedError('This origin may not use the session cookie.');
  }
  const [handle] = cookies;
  if (cookies.length !== 1 || handle === undefined || !isWellFormedHandle(handle)) {
    throw new InvalidSessionError('The session cookie is not valid.');
  }
  return handle;
}
