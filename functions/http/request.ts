import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { InvalidRequestError, PayloadTooLargeError } from '../broker/errors.ts';

/** Bodies above this are refused with `413` before they are parsed. */
export const MAX_BODY_BYTES = 16 * 1024;

/** The parts of an HTTP API (payload format 2.0) event the routes use, normalised. */
export interface HttpRequest {
  method: string;
  path: string;
  /** Header names in lower case; API Gateway joins repeated headers with commas. */
  headers: Readonly<Record<string, string>>;
  /** `name=value` pairs from `event.cookies` (or a `Cookie` header). */
  cookies: readonly string[];
  rawQueryString: string;
  /** The decoded body, or `undefined` when there is none. */
  body: string | undefined;
  requestId: string;
  /** API Gateway's route key (`GET /connections/{connection_id}`), `$default` when unset. */
  routeKey?: string | undefined;
  /** The route's path parameters, decoded by API Gateway (`{connection_id}`). */
  pathParameters?: Readonly<Record<string, string>> | undefined;
  /**
   * The caller API Gateway's `AWS_IAM` authorization verified (SigV4): only on the
   * service API's routes. `userArn` is the IAM principal (an assumed role's session ARN).
   * @see https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html
   */
  iamCaller?: { userArn: string; accountId: string } | undefined;
}

/** The request before its body is read: enough for the CORS preflight and the method check. */
export type RequestHead = Omit<HttpRequest, 'body'>;

/**
 * Normalises an HTTP API event's method, path, headers, cookies and query; checks nothing.
 * The route frame (`route.ts`) reads the body with {@link decodeBody} once the method is
 * known to be allowed, so a wrong method is `405` whatever the body.
 * @see https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
 */
export function parseHead(event: APIGatewayProxyEventV2): RequestHead {
  const rawMethod: unknown = event.requestContext?.http?.method;
  const method = typeof rawMethod === 'string' ? rawMethod.toUpperCase() : '';
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(event.headers ?? {})) {
    if (typeof value === 'string') headers[name.toLowerCase()] = value;
  }
  const cookies =
    event.cookies ??
    (headers.cookie ?? '')
      .split(';')
      .map((pair) => pair.trim())
      .filter(Boolean);

  return {
    method,
    path: event.rawPath ?? event.requestContext?.http?.path ?? '/',
    headers,
    cookies,
    rawQueryString: event.rawQueryString ?? '',
    requestId: event.requestContext?.requestId ?? '',
    routeKey: event.routeKey ?? event.requestContext?.routeKey ?? '$default',
    pathParameters: stringEntries(event.pathParameters),
    iamCaller: iamCallerOf(event),
  };
}

function stringEntries(values: Record<string, string | undefined> | undefined) {
  const entries: Record<string, string> = {};
  for (const [name, value] of Object.entries(values ?? {})) {
    if (typeof value === 'string') entries[name] = value;
  }
  return entries;
}

/** `requestContext.authorizer.iam` of an `AWS_IAM` route; `undefined` on any other. */
function iamCallerOf(event: APIGatewayProxyEventV2): HttpRequest['iamCaller'] {
  const context = event.requestContext as { authorizer?: { iam?: Record<string, unknown> } };
  const iam = context?.authorizer?.iam;
  if (typeof iam?.userArn !== 'string' || iam.userArn === '') return undefined;
  return {
    userArn: iam.userArn,
    accountId: typeof iam.accountId === 'string' ? iam.accountId : '',
  };
}

/** The decoded body, or `undefined`; over {@link MAX_BODY_BYTES} is `413`, bad UTF-8 `400`. */
export function decodeBody(event: APIGatewayProxyEventV2): string | undefined {
  if (event.body === undefined || event.body === null || event.body === '') return undefined;
  if (typeof event.body !== 'string') throw new InvalidRequestError('The body must be text.');
  const bytes = event.isBase64Encoded
    ? Buffer.from(event.body, 'base64')
    : Buffer.from(event.body, 'utf8');
  if (bytes.length > MAX_BODY_BYTES) {
    throw new PayloadTooLargeError(`The body must not exceed ${MAX_BODY_BYTES} bytes.`);
  }
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  if (text.includes('\uFFFD')) throw new InvalidRequestError('The body must be valid UTF-8.');
  return text;
}

/** Every value of the cookie `name` (a browser may send several with the same name). */
export function cookieValues(request: HttpRequest, name: string): string[] {
  const values: string[] = [];
  for (const cookie of request.cookies) {
    for (const pair of cookie.split(';')) {
      const index = pair.indexOf('=');
      if (index < 0) continue;
      if (pair.slice(0, index).trim() === name) values.push(pair.slice(index + 1).trim());
    }
  }
  return values;
}
