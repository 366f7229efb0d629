import { CsrfCheckFailedError } from '../broker/errors.ts';
import type { RequestHead } from './request.ts';
import type { HttpResponse } from './responses.ts';

/**
 * CORS for the routes browsers call cross-origin (`/refresh`, `/logout`), done in the
 * function because an HTTP API's CORS configuration applies to every route and
 * `/login` and `/callback` must have none. Only the exact origins of `ALLOWED_ORIGINS`
 * get `Access-Control-Allow-Origin` (never `*`, since credentials are allowed). The route
 * frame (`route.ts`) applies both functions when a route sets `cors`.
 * @see https://fetch.spec.whatwg.org/#http-cors-protocol
 */

/** How long a browser may cache a preflight answer (seconds). */
const PREFLIGHT_MAX_AGE = '600';

/** A CORS preflight: `OPTIONS` with `Access-Control-Request-Method` (a plain `OPTIONS` is `405`). */
export function isPreflight(request: RequestHead): boolean {
  return (
    request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined
  );
}

/**
 * The preflight's `204` for an allowed origin; any other origin is refused with
 * `403 csrf_check_failed` (thrown, so it goes through the one error map).
 */
export function preflightResponse(
  request: RequestHead,
  allowedOrigins: readonly string[],
  methods: readonly string[],
): HttpResponse {
  const origin = request.headers.origin;
  if (origin === undefined || !allowedOrigins.includes(origin)) {
    throw new CsrfCheckFailedError('This origin may not call the broker.');
  }
  return {
    statusCode: 204,
    headers: {
      ...corsHeaders(origin),
      'access-control-allow-methods': methods.join(', '),
      'access-control-allow-headers': 'authorization, content-type, x-csrf',
      'access-control-max-age': PREFLIGHT_MAX_AGE,
      'cache-control': 'no-store',
    },
  };
}

/** `Vary: Origin` on every answer, and the CORS headers when the origin is allowed. */
export function withCorsHeaders(
  response: HttpResponse,
  request: RequestHead,
  allowedOrigins: readonly string[],
): HttpResponse {
  const origin = request.headers.origin;
  const headers = { ...response.headers, vary: 'Origin' };
  const allowed = origin !== undefined && allowedOrigins.includes(origin);
  return { ...response, headers: allowed ? { ...headers, ...corsHeaders(origin) } : headers };
}

function corsHeaders(origin: string): Record<string, string> {
  return {
    'access-control-allow-origin': origin,
    'access-control-allow-credentials': 'true',
    vary: 'Origin',
  };
}
