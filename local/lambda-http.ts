import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
} from 'aws-lambda';
import type { HttpHandler } from '../functions/http/route.ts';
import type { IamIdentity, SignedRequestParts } from './sigv4-verifier.ts';

/** Extra handling before routing (the local demo page); return true when answered. */
export type Middleware = (
  request: IncomingMessage,
  response: ServerResponse,
) => boolean | Promise<boolean>;

/**
 * A route with an API Gateway route key (`GET /connections/{connection_id}`): one method,
 * `{name}` matching one path segment into `pathParameters`; `iam` routes run only after
 * `iamAuthorizer` verified the request, as `AWS_IAM` authorization does.
 */
export interface KeyedRoute {
  routeKey: string;
  handler: HttpHandler;
  iam?: boolean;
}

export interface LocalServerOptions {
  /** Path (e.g. `/refresh`) to the Lambda handler serving it (any method, `ANY /path`). */
  routes: Readonly<Record<string, HttpHandler>>;
  /** Routes matched by method and path pattern, before `routes`. */
  keyedRoutes?: readonly KeyedRoute[];
  /**
   * Verifies the SigV4 signature of a request to an `iam` route; `undefined` is API
   * Gateway's own `403 {"message":"Forbidden"}`, and the handler is not invoked.
   */
  iamAuthorizer?: (request: SignedRequestParts) => Promise<IamIdentity | undefined>;
  /** Serves every other path (API Gateway's `$default` route); without it, a local 404. */
  defaultRoute?: HttpHandler;
  host?: string;
  port?: number;
  /**
   * A server that already listens (from {@link listen}): `npm start` binds its port first,
   * so that with `PORT=0` the real port is known before the entry files read their settings.
   */
  server?: Server;
  before?: Middleware;
}

export interface LocalServer {
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

/** API Gateway's own payload limit; the handlers enforce their smaller one themselves. */
const MAX_PAYLOAD_BYTES = 10 * 1024 * 1024;

/** Content types API Gateway passes as text; other bodies arrive base64-encoded. */
const TEXT_TYPES =
  /^(text\/|application\/(json|xml|x-www-form-urlencoded|javascript)|[^;]*\+(json|xml))/i;

/**
 * A local stand-in for an API Gateway HTTP API: turns each Node request into an HTTP API
 * payload format 2.0 event, invokes the same handler the Lambda runs, and writes its
 * result back. There is no second code path for local runs.
 * @see https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
 */
export async function startLocalServer(options: LocalServerOptions): Promise<LocalServer> {
  const server = options.server ?? (await listen(options.port ?? 0, options.host ?? '127.0.0.1'));
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    void handle(options, request, response).catch(() => {
      if (!response.headersSent) {
        response.writeHead(500, { 'content-type': 'application/json' });
      }
      response.end('{"error":"server_error","error_description":"Local server failure."}');
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** An HTTP server listening on `port` (0: an ephemeral one) that answers nothing yet. */
export async function listen(port: number, host: string): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

async function handle(
  options: LocalServerOptions,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  if (options.before && (await options.before(request, response))) return;
  const url = new URL(request.url ?? '/', 'http://local');
  const keyed = matchKeyedRoute(options.keyedRoutes ?? [], request.method ?? 'GET', url.pathname);
  const handler = keyed?.route.handler ?? options.routes[url.pathname] ?? options.defaultRoute;
  const body = await readBody(request);
  if (body === 'too-large') {
    return writeJson(response, 413, {
      error: 'invalid_request',
      error_description: 'Payload too large.',
    });
  }
  if (!handler) {
    return writeJson(response, 404, { error: 'not_found', error_description: 'No such route.' });
  }
  let iam: IamIdentity | undefined;
  if (keyed?.route.iam) {
    const target = request.url ?? '/';
    const queryAt = target.indexOf('?');
    iam = await options.iamAuthorizer?.({
      method: (request.method ?? 'GET').toUpperCase(),
      path: queryAt < 0 ? target : target.slice(0, queryAt),
      rawQuery: queryAt < 0 ? '' : target.slice(queryAt + 1),
      headers: joinedHeaders(request),
      body,
    });
    // API Gateway's own answer: no body of the contract, no call to the function.
    if (iam === undefined) return writeJson(response, 403, { message: 'Forbidden' });
  }
  const event = toEvent(
    request,
    url,
    body,
    keyed && { routeKey: keyed.route.routeKey, pathParameters: keyed.pathParameters, iam },
  );
  const result = await handler(event, lambdaContext(event.requestContext.requestId));
  writeResult(response, result);
}

/** The first keyed route whose method and path pattern match, with its path parameters. */
export function matchKeyedRoute(
  routes: readonly KeyedRoute[],
  method: string,
  path: string,
): { route: KeyedRoute; pathParameters: Record<string, string> } | undefined {
  const segments = path.split('/');
  for (const route of routes) {
    const [routeMethod, routePath = ''] = route.routeKey.split(' ');
    if (routeMethod !== method.toUpperCase()) continue;
    const pattern = routePath.split('/');
    if (pattern.length !== segments.length) continue;
    const pathParameters: Record<string, string> = {};
    const matches = pattern.every((part, index) => {
      const segment = segments[index] ?? '';
      const name = /^\{(\w+)\}$/.exec(part)?.[1];
      if (name === undefined) return part === segment;
      if (segment === '') return false;
      pathParameters[name] = decodeSegment(segment);
      return true;
    });
    if (matches) return { route, pathParameters };
  }
  return undefined;
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Header names in lower case, repeats comma-joined (cookies included, as signed). */
function joinedHeaders(request: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  const raw = request.rawHeaders;
  for (let index = 0; index + 1 < raw.length; index += 2) {
    const name = (raw[index] ?? '').toLowerCase();
    const value = raw[index + 1] ?? '';
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
  }
  return headers;
}

function readBody(request: IncomingMessage): Promise<Buffer | 'too-large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_PAYLOAD_BYTES) {
        request.destroy();
        resolve('too-large');
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

/** Builds the event API Gateway would send (headers lower-cased, repeats comma-joined). */
export function toEvent(
  request: IncomingMessage,
  url: URL,
  body: Buffer,
  route?: {
    routeKey: string;
    pathParameters: Record<string, string>;
    iam?: IamIdentity | undefined;
  },
): APIGatewayProxyEventV2 {
  const headers: Record<string, string> = {};
  const cookies: string[] = [];
  const raw = request.rawHeaders;
  for (let index = 0; index + 1 < raw.length; index += 2) {
    const name = (raw[index] ?? '').toLowerCase();
    const value = raw[index + 1] ?? '';
    if (name === 'cookie') {
      cookies.push(
        ...value
          .split(';')
          .map((pair) => pair.trim())
          .filter(Boolean),
      );
      continue;
    }
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
  }
  const rawQueryString = url.search.startsWith('?') ? url.search.slice(1) : '';
  const queryStringParameters: Record<string, string> = {};
  for (const [name, value] of url.searchParams) {
    const previous = queryStringParameters[name];
    queryStringParameters[name] = previous === undefined ? value : `${previous},${value}`;
  }
  const contentType = headers['content-type'] ?? '';
  const isText = body.length === 0 || TEXT_TYPES.test(contentType);
  const requestId = randomUUID();
  const now = new Date();
  const method = (request.method ?? 'GET').toUpperCase();
  const routeKey = route?.routeKey ?? '$default';
  return {
    version: '2.0',
    routeKey,
    rawPath: url.pathname,
    rawQueryString,
    ...(cookies.length > 0 ? { cookies } : {}),
    headers,
    ...(rawQueryString ? { queryStringParameters } : {}),
    ...(route && Object.keys(route.pathParameters).length > 0
      ? { pathParameters: route.pathParameters }
      : {}),
    requestContext: {
      ...(route?.iam ? { authorizer: { iam: route.iam } } : {}),
      accountId: '000000000000',
      apiId: 'local',
      domainName: headers.host ?? 'localhost',
      domainPrefix: 'localhost',
      http: {
        method,
        path: url.pathname,
        protocol: `HTTP/${request.httpVersion}`,
        sourceIp: request.socket.remoteAddress ?? '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId,
      routeKey,
      stage: '$default',
      time: now.toISOString(),
      timeEpoch: now.getTime(),
    },
    ...(body.length > 0 ? { body: isText ? body.toString('utf8') : body.toString('base64') } : {}),
    isBase64Encoded: body.length > 0 && !isText,
  };
}

function lambdaContext(requestId: string): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'local',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:local:000000000000:function:local',
    memoryLimitInMB: '256',
    awsRequestId: requestId,
    logGroupName: 'local',
    logStreamName: 'local',
    getRemainingTimeInMillis: () => 12_000,
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

function writeResult(response: ServerResponse, result: APIGatewayProxyStructuredResultV2): void {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(result.headers ?? {})) headers[name] = String(value);
  if (result.cookies && result.cookies.length > 0) headers['set-cookie'] = result.cookies;
  const body = result.body
    ? Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8')
    : Buffer.alloc(0);
  response.writeHead(result.statusCode ?? 200, headers);
  response.end(body);
}

function writeJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  response.end(JSON.stringify(body));
}
