import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import {
  BrokerError,
  MethodNotAllowedError,
  SessionIntegrityError,
  TemporarilyUnavailableError,
} from '../broker/errors.ts';
import type { Log } from '../broker/ports.ts';
import { describeError } from '../shared/describe-error.ts';

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

/** `location` with `parameters` added to its query (a relative `return_to` stays relative). */
export function withQuery(location: string, parameters: Record<string, string>): string {
  const base = 'https://placeholder.invalid';
  const url = new URL(location, base);
  for (const [name, value] of Object.entries(parameters)) url.searchParams.set(name, value);
  return url.origin === base ? `${url.pathname}${url.search}${url.hash}` : url.toString();
}

/**
 * A small self-contained HTML page for a browser that reached an error with nowhere to be
 * sent back to (the login transaction is unknown): the reason, and a link to start again.
 * No script, no external resource; every text is escaped.
 */
export function htmlErrorPage(
  statusCode: number,
  page: { title: string; message: string; link?: { href: string; text: string } | undefined },
): HttpResponse {
  const body = [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(page.title)}</title>`,
    '<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}</style>',
    '</head><body>',
    `<h1>${escapeHtml(page.title)}</h1>`,
    `<p>${escapeHtml(page.message)}</p>`,
    ...(page.link
      ? [`<p><a href="${escapeHtml(page.link.href)}">${escapeHtml(page.link.text)}</a></p>`]
      : []),
    '</body></html>',
  ].join('\n');
  return {
    statusCode,
    headers: {
      ...BASE_HEADERS,
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'",
    },
    body,
  };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

/** Whether the client asked for HTML first (a browser navigating), not JSON. */
export function prefersHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  const html = accept.indexOf('text/html');
  const json = accept.indexOf('application/json');
  return html >= 0 && (json < 0 || html < json);
}

/** What the contract answers for an error (README "HTTP contract (v1)"). */
export interface ErrorAnswer {
  status: number;
  /** The `error` member: a stable code. */
  code: string;
  /** The `error_description` member: safe to show, never upstream text or a secret. */
  description: string;
  /** `Retry-After` for a `503`, `Allow` for a `405`. */
  headers: Record<string, string>;
}

/**
 * The one place where errors become HTTP answers: a {@link BrokerError} answers its own
 * status and code; anything else is a `500 server_error` whose details go to the log
 * only, never to the client. Logs the error as its status calls for: `5xx` as a warning
 * with its cause, other rejections as info (an integrity failure is already logged, with
 * its alarm, where it is found), the unexpected as an error.
 */
export function recordError(error: unknown, log: Log): ErrorAnswer {
  const answer = errorAnswer(error);
  if (!(error instanceof BrokerError)) {
    log.error('unexpected error', { error: describeError(error) });
  } else if (answer.status >= 500) {
    log.warn('request failed', {
      status: answer.status,
      error: answer.code,
      cause: describeError(error.cause),
    });
  } else if (!(error instanceof SessionIntegrityError)) {
    log.info('request rejected', { status: answer.status, error: answer.code });
  }
  return answer;
}

/** {@link recordError}'s answer without the log line: for the `404` function, which logs nothing. */
export function errorAnswer(error: unknown): ErrorAnswer {
  if (!(error instanceof BrokerError)) {
    return {
      status: 500,
      code: 'server_error',
      description: 'The broker hit an unexpected error.',
      headers: {},
    };
  }
  const headers: Record<string, string> = {};
  if (error instanceof TemporarilyUnavailableError) {
    headers['retry-after'] = String(error.retryAfterSeconds);
  }
  if (error instanceof MethodNotAllowedError) headers.allow = error.allow.join(', ');
  return { status: error.status, code: error.code, description: error.safeDescription, headers };
}

/** The JSON `{"error","error_description"}` response of an {@link ErrorAnswer}. */
export function errorJson(answer: ErrorAnswer): HttpResponse {
  return json(
    answer.status,
    { error: answer.code, error_description: answer.description },
    answer.headers,
  );
}

/** Logs `error` and answers it as JSON: how every route answers an error it does not handle. */
export function errorResponse(error: unknown, log: Log): HttpResponse {
  return errorJson(recordError(error, log));
}
