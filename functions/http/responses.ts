import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import {
  BrokerError,
  MethodNotAllowedError,
  SessionIntegrityError,
  TemporarilyUnavailableError,
} from '../broker/errors.ts';
import type { Log } from '../broker/ports.ts';

export type HttpResponse = APIGatewayProxyStructuredResultV2 & {
  statusCode: number;
  headers: Record<string, string>;
};

/** Headers on every response: no caching of anything that may carry a token. */
const BASE_HEADERS = {
  'cache-control': 'no-store',
  pragma: 'no-cache',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export function json(
  statusCode: number,
  body: unknown,
  headers: Record<string, string> = {},
): HttpResponse {
  return {
    statusCode,
    headers: { ...BASE_HEADERS, 'content-type': 'application/json; charset=utf-8', ...headers },
    body: JSON.stringify(body),
  };
}

export function noContent(headers: Record<string, string> = {}, cookies?: string[]): HttpResponse {
  return {
    statusCode: 204,
    headers: { ...BASE_HEADERS, ...headers },
    ...(cookies ? { cookies } : {}),
  };
}

export function redirect(location: string, cookies: string[] = []): HttpResponse {
  return {
    statusCode: 302,
    headers: { ...BASE_HEADERS, location },
    cookies,
  };
}

/**
 * The one place where errors become HTTP responses (README "HTTP contract (v1)"): a JSON
 * `{"error","error_description"}` body with the contract's status. Unknown errors are a
 * `500 server_error` whose details go to the log only, never to the client.
 */
export function errorResponse(error: unknown, log: Log): HttpResponse {
  if (error instanceof BrokerError) {
    const headers: Record<string, string> = {};
    if (error instanceof TemporarilyUnavailableError) {
      headers['retry-after'] = String(error.retryAfterSeconds);
    }
    if (error instanceof MethodNotAllowedError) headers.allow = error.allow.join(', ');
    if (error.status >= 500) {
      log.warn('request failed', {
        status: error.status,
        error: error.code,
        cause: describeCause(error.cause),
      });
    } else if (!(error instanceof SessionIntegrityError)) {
      log.info('request rejected', { status: error.status, error: error.code });
    }
    return json(
      error.status,
      { error: error.code, error_description: error.safeDescription },
      headers,
    );
  }
  log.error('unexpected error', { error: describeCause(error) });
  return json(500, {
    error: 'server_error',
    error_description: 'The broker hit an unexpected error.',
  });
}

function describeCause(cause: unknown): string | undefined {
  if (cause === undefined) return undefined;
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : typeof cause;
}
