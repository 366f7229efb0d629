import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isTrustedSalesforceUrl } from '../../functions/salesforce/oauth-client.ts';
import { type LambdaHttpHandler, type LocalServer, startLocalServer } from '../lambda-http.ts';
import type { LocalStack } from '../stack.ts';

const DEMO_PAGE = new URL('./index.html', import.meta.url);

/**
 * The local server: the four Lambda entry files (imported after the environment is set,
 * exactly as Lambda would load them) plus a demo page and two local-only helpers for it.
 */
export async function startDemo(options: {
  port: number;
  host?: string;
  stack: LocalStack;
}): Promise<LocalServer> {
  const routes: Record<string, LambdaHttpHandler> = {};
  for (const route of ['login', 'callback', 'refresh', 'logout']) {
    const entry = (await import(`../../functions/${route}.ts`)) as { handler: LambdaHttpHandler };
    routes[`/${route}`] = entry.handler;
  }
  const page = await readFile(DEMO_PAGE, 'utf8');
  const loginUrl = new URL(options.stack.env.SALESFORCE_LOGIN_URL ?? 'http://127.0.0.1');

  return startLocalServer({
    routes,
    port: options.port,
    host: options.host ?? '127.0.0.1',
    before: async (request, response) => {
      const url = new URL(request.url ?? '/', 'http://local');
      if (url.pathname === '/' && request.method === 'GET') {
        send(response, 200, 'text/html; charset=utf-8', page, {
          'content-security-policy':
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; base-uri 'none'",
        });
        return true;
      }
      if (url.pathname === '/_demo/salesforce' && request.method === 'GET') {
        await proxyToSalesforce(request, response, url, loginUrl);
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
