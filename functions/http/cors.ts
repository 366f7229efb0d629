import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
} from 'aws-lambda';
import { json } from './responses.ts';

type Handler = (
  event: APIGatewayProxyEventV2,
  context?: Context,
) => Promise<APIGatewayProxyStructuredResultV2>;

/** How long a browser may cache a preflight answer (seconds). */
const PREFLIGHT_MAX_AGE = '600';

/**
 * CORS for the routes browsers call cross-origin (`/refresh`, `/logout`), done in the
 * function because an HTTP API's CORS configuration applies to every route and
 * `/login` and `/callback` must have none. Only the exact origins of `ALLOWED_ORIGINS`
 * get `Access-Control-Allow-Origin` (never `*`, since credentials are allowed).
 * @see https://fetch.spec.whatwg.org/#http-cors-protocol
 */
export function withCors(
  handler: Handler,
  allowedOrigins: readonly string[],
  methods: readonly string[],
): Handler {
  return async (event, context) => {
    const origin = event.headers?.origin;
    const allowed = origin !== undefined && allowedOrigins.includes(origin);
    const method = event.requestContext?.http?.method?.toUpperCase();
    if (method === 'OPTIONS' && event.headers?.['access-control-request-method'] !== undefined) {
      if (!allowed) {
        return json(
          403,
          { error: 'csrf_check_failed', error_description: 'This origin may not call the broker.' },
          { vary: 'Origin' },
        );
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
    const result = await handler(event, context);
    const headers = { ...(result.headers ?? {}), vary: 'Origin' };
    return { ...result, headers: allowed ? { ...headers, ...corsHeaders(origin) } : headers };
  };
}

function corsHeaders(origin: string): Record<string, string> {
  return {
    'access-control-allow-origin': origin,
    'access-control-allow-credentials': 'true',
    vary: 'Origin',
  };
}
