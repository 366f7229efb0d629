import { readFile } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { build } from 'esbuild';
import { INDEX_BUILD } from '../../client/scripts/build.ts';
import type { HttpHandler } from '../../functions/http/route.ts';
import { isTrustedSalesforceUrl } from '../../functions/salesforce/oauth-client.ts';
import { SERVICE_ROUTE_KEYS } from '../../functions/shared/constants.ts';
import { type KeyedRoute, type LocalServer, startLocalServer } from '../lambda-http.ts';
import type { SigV4Verifier } from '../sigv4-verifier.ts';
import type { LocalStack } from '../stack.ts';

const DEMO_PAGE = new URL('./index.html', import.meta.url);

/**
 * The client package's `index.js`, built with the options `npm run build:client` ships it
 * with, for the demo page's client example (`/_demo/client.js`). Built on first request, so
 * `npm start` needs no build step and always serves the current source.
 */
let clientModule: Promise<string> | undefined;
function builtClient(): Promise<string> {
  clientModule ??= build({ ...INDEX_BUILD, write: false, logLevel: 'silent' }).then(
    (result) => result.outputFiles?.[0]?.text ?? '',
  );
  return clientModule;
}

/**
 * The local server: the four Lambda entry files (imported after the environment is set,
 * exactly as Lambda would load them) plus a demo page and two local-only helpers for it.
 */
export async function startDemo(options: {
  port: number;
  host?: string;
  /** Already listening (see `listen` in lambda-http.ts); otherwise one is started. */
  server?: Server;
  /** The origin the broker answers as (`PUBLIC_URL`); other loopback hosts are sent there. */
  publicUrl?: string;
  stack: LocalStack;
  /** Verifies the service API's SigV4 signatures (its `AWS_IAM` routes). */
  serviceVerifier: SigV4Verifier;
}): Promise<LocalServer> {
  const routes: Record<string, HttpHandler> = {};
  for (const route of ['login', 'callback', 'refresh', 'logout', 'session', 'token']) {
    const entry = (await import(`../../functions/${route}.ts`)) as { handler: HttpHandler };
    routes[`/${route}`] = entry.handler;
  }
  // The service API: one function behind its five IAM-authorized route keys, as deployed.
  const service = (await import('../../functions/service.ts')) as { handler: HttpHandler };
  const keyedRoutes: KeyedRoute[] = SERVICE_ROUTE_KEYS.map((routeKey) => ({
    routeKey,
    handler: service.handler,
    iam: true,
  }));
  const page = await readFile(DEMO_PAGE, 'utf8');
  const loginUrl = new URL(options.stack.env.SALESFORCE_LOGIN_URL ?? 'http://127.0.0.1');

  const publicUrl = options.publicUrl ? new URL(options.publicUrl) : undefined;

  return startLocalServer({
    routes,
    keyedRoutes,
    iamAuthorizer: (request) => options.serviceVerifier.verify(request),
    port: options.port,
    host: options.host ?? '127.0.0.1',
    ...(options.server ? { server: options.server } : {}),
    before: async (request, response) => {
      if (publicUrl && misdirected(request, response, publicUrl)) return true;
      const url = new URL(request.url ?? '/', 'http://local');
      if (url.pathname === '/' && request.method === 'GET') {
        send(response, 200, 'text/html; charset=utf-8', page, {
          'content-security-policy':
            "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; base-uri 'none'",
        });
        return true;
      }
      if (url.pathname === '/_demo/client.js' && request.method === 'GET') {
        send(response, 200, 'text/javascript; charset=utf-8', await builtClient());
        return true;
      }
      if (url.pathname === '/_demo/salesforce' && request.method === 'GET') {
        await proxyToSalesforce(request, response, url, loginUrl);
        return true;
      }
      if (url.pathname === '/_demo/events' && request.method === 'GET') {
        // The events the publisher put on the local bus, newest first (never a secret).
        const events = [...(options.stack.events?.bus.events ?? [])].reverse().slice(0, 50);
        send(response, 200, 'application/json', JSON.stringify({ events }));
        return true;
      }
      if (url.pathname === '/_demo/expire-access-tokens' && request.method === 'POST') {
        if (!options.stack.salesforce) {
          send(
            response,
            404,
            'application/json',
            '{"error":"not_found","error_description":"Only with the mock org."}',
          );
        } else {
          options.stack.salesforce.expireAccessTokens();
          send(response, 204, 'text/plain', '');
        }
        return true;
      }
      return false;
    },
  });
}

const LOOPBACK_HOSTNAME = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/**
 * Cookies belong to a host name: a login started at `127.0.0.1:3000` sets its cookie there,
 * but Salesforce sends the browser back to `PUBLIC_URL`'s `/callback` (`localhost:3000`),
 * where that cookie is missing. So a request naming another host is answered here:
 * GET and HEAD (pages, `/login`, `/callback`) with a 307 to the same path and query on
 * `PUBLIC_URL`; other methods carrying no `Authorization` header (the page's cookie calls:
 * a redirected POST would reach the other host without its cookie) with a JSON
 * `421 Misdirected Request` naming the right origin. Bearer calls and CORS preflights do
 * not depend on the host's cookies and are served. Only when `PUBLIC_URL` is a loopback URL: behind a tunnel or proxy
 * that rewrites `Host`, redirecting could loop.
 */
function misdirected(request: IncomingMessage, response: ServerResponse, publicUrl: URL): boolean {
  const host = request.headers.host;
  if (!host || !LOOPBACK_HOSTNAME.test(publicUrl.hostname)) return false;
  if (host.toLowerCase() === publicUrl.host.toLowerCase()) return false;
  const method = request.method ?? 'GET';
  if (method === 'GET' || method === 'HEAD') {
    // Path and query only: a request target like `//elsewhere/` must not pick the host.
    const asked = new URL(request.url ?? '/', 'http://local');
    const location = new URL(publicUrl.origin);
    location.pathname = asked.pathname;
    location.search = asked.search;
    response.writeHead(307, { location: location.href, 'cache-control': 'no-store' });
    response.end();
    return true;
  }
  // A CORS preflight carries no credentials; the Bearer call after it may be served.
  if (method === 'OPTIONS' || request.headers.authorization !== undefined) return false;
  send(
    response,
    421,
    'application/json',
    JSON.stringify({
      error: 'misdirected_request',
      error_description: `This server answers as ${publicUrl.origin} (PUBLIC_URL), where its cookies are set; send the request there.`,
    }),
  );
  return true;
}

/**
 * Browsers cannot call Salesforce's REST API cross-origin without CORS set up in the org,
 * so the demo page sends its REST calls here and this forwards them, with the page's own
 * access token, to the session's `instance_url` (a Salesforce host, or the mock org).
 */
async function proxyToSalesforce(
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
  loginUrl: URL,
): Promise<void> {
  const instanceUrl = String(request.headers['x-instance-url'] ?? '');
  const path = url.searchParams.get('path') ?? '';
  if (!isTrustedSalesforceUrl(instanceUrl, loginUrl) || !path.startsWith('/services/data/')) {
    send(
      response,
      400,
      'application/json',
      '{"error":"invalid_request","error_description":"Bad instance URL or path."}',
    );
    return;
  }
  try {
    const upstream = await fetch(new URL(path, instanceUrl), {
      headers: {
        authorization: String(request.headers.authorization ?? ''),
        accept: 'application/json',
      },
      signal: AbortSignal.timeout(10_000),
    });
    send(
      response,
      upstream.status,
      upstream.headers.get('content-type') ?? 'application/json',
      await upstream.text(),
    );
  } catch {
    send(
      response,
      502,
      'application/json',
      '{"error":"upstream_unreachable","error_description":"Salesforce did not answer."}',
    );
  }
}

function send(
  response: ServerResponse,
  status: number,
  contentType: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  response.writeHead(status, {
    'content-type': contentType,
    'cache-control': 'no-store',
    ...headers,
  });
  response.end(body);
}
