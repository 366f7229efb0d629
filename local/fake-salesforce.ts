/**
 * A faithful fake Salesforce authorization server (it behaves as Salesforce's OAuth endpoints do), for
 * integration tests and as the embedded "mock org" of `npm start`: login/consent page,
 * authorization codes with PKCE, token endpoint with refresh-token rotation, reuse
 * detection, Salesforce's concurrency block and approvals limit, revoke, introspect,
 * userinfo, identity URL and a minimal REST API. Faults can be injected per endpoint.
 *
 * Only node:http and node:crypto; it never writes to stdout/stderr.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Context, ResolvedOptions } from './fake-salesforce/context.ts';
import { identityUrl } from './fake-salesforce/context.ts';
import { FaultQueue } from './fake-salesforce/faults.ts';
import {
  BodyTooLargeError,
  Sleeper,
  send,
  sendJson,
  sendOAuthError,
} from './fake-salesforce/http.ts';
import { IdTokenSigner, openIdConfiguration } from './fake-salesforce/id-token.ts';
import { newSalesforceId } from './fake-salesforce/ids.ts';
import {
  AUTHORIZE_PATH,
  handleAuthorize,
  handleIntrospect,
  handleRevoke,
  handleToken,
} from './fake-salesforce/oauth.ts';
import { handleIdentity, handleRest, handleUserinfo } from './fake-salesforce/resources.ts';
import { hasRefreshScope, OrgState } from './fake-salesforce/state.ts';

export interface FakeSalesforceOptions {
  /** Consumer key of the connected app. Default 'fake-client-id'. */
  clientId?: string;
  /** Consumer secret. Default 'fake-client-secret'. */
  clientSecret?: string;
  /** Allowed redirect_uri values; empty/undefined = accept any http(s) URL. */
  redirectUris?: string[];
  /** Refresh-token rotation. Default true. */
  rotation?: boolean;
  /** Presenting a rotated-out refresh token revokes the whole family. Default true. */
  reuseDetection?: boolean;
  /**
   * A 2nd refresh with the same refresh token while one is in flight gets
   * 400 invalid_grant 'token request is already being processed'. Default true.
   */
  concurrencyBlock?: boolean;
  /** Refresh-token families per user per client; the next one revokes the oldest. Default 5. */
  approvalsLimit?: number;
  /** Access-token lifetime. Default 2 h. */
  accessTokenTtlMs?: number;
  /** Artificial processing time of every token request. Default 0. */
  tokenLatencyMs?: number;
  /** Artificial processing time of every introspection request. Default 0. */
  introspectLatencyMs?: number;
  /** Require PKCE (S256) on authorize. Default true. */
  requirePkce?: boolean;
  /** GET /authorize redirects at once as if the user pressed Allow. Default false. */
  autoApprove?: boolean;
  /** Pre-filled on the login page. Default 'demo@example.com'. */
  username?: string;
  /**
   * More connected apps of this org, each with its own consumer key and secret (a
   * deployment of several apps); the token response is signed with the calling app's.
   */
  otherApps?: readonly { clientId: string; clientSecret: string }[];
  /** Listen address. Default '127.0.0.1'. */
  host?: string;
  /** Default 0 (ephemeral). */
  port?: number;
}

export interface FakeSalesforce {
  /** e.g. 'http://127.0.0.1:41234' (login URL AND instance_url AND id host). */
  readonly url: string;
  /** 18-char '00D...' id. */
  readonly orgId: string;
  /** Per-endpoint counters, live. */
  readonly calls: FakeCallCounters;
  resetCalls(): void;
  /** Queue a fault; faults are consumed in FIFO order per endpoint. */
  inject(fault: FakeFault): void;
  clearFaults(): void;
  /** The connected app's secret rotates (another app's, with its consumer key). */
  setClientSecret(secret: string, clientId?: string): void;
  /** Creates a grant directly, as if a user had logged in: returns the tokens. */
  seedGrant(opts?: { userId?: string; scope?: string }): {
    refreshToken: string;
    accessToken: string;
    userId: string;
    id: string;
  };
  /** Marks every access token as expired now (REST answers 401 INVALID_SESSION_ID). */
  expireAccessTokens(): void;
  /** Whether a refresh token currently works (not revoked, not rotated out). */
  isRefreshTokenActive(token: string): boolean;
  /** Count of refresh-token families revoked by reuse detection so far. */
  readonly reuseRevocations: number;
  close(): Promise<void>;
}

export interface FakeCallCounters {
  authorize: number;
  token: number;
  tokenRefresh: number;
  tokenCode: number;
  revoke: number;
  introspect: number;
  userinfo: number;
  identity: number;
  rest: number;
}

export type FakeFault =
  | {
      endpoint: 'token' | 'revoke' | 'introspect';
      kind: 'status';
      status: number;
      body?: string;
      contentType?: string;
      times?: number;
    }
  | { endpoint: 'token' | 'revoke' | 'introspect'; kind: 'maintenance'; times?: number }
  | { endpoint: 'token' | 'revoke' | 'introspect'; kind: 'delay'; ms: number; times?: number }
  | { endpoint: 'token'; kind: 'error'; error: string; description: string; times?: number }
  | { endpoint: 'token'; kind: 'drop-after-rotate'; times?: number }
  | { endpoint: 'token'; kind: 'malformed-json'; times?: number }
  | { endpoint: 'token'; kind: 'missing-field'; field: string; times?: number }
  | { endpoint: 'token'; kind: 'bad-signature'; times?: number }
  | { endpoint: 'token'; kind: 'foreign-instance-url'; url: string; times?: number };

const DEFAULT_SEED_SCOPE = 'api refresh_token';

function resolveOptions(o: FakeSalesforceOptions): ResolvedOptions {
  return {
    clientId: o.clientId ?? 'fake-client-id',
    redirectUris: [...(o.redirectUris ?? [])],
    rotation: o.rotation ?? true,
    reuseDetection: o.reuseDetection ?? true,
    concurrencyBlock: o.concurrencyBlock ?? true,
    approvalsLimit: o.approvalsLimit ?? 5,
    accessTokenTtlMs: o.accessTokenTtlMs ?? 2 * 60 * 60 * 1000,
    tokenLatencyMs: o.tokenLatencyMs ?? 0,
    introspectLatencyMs: o.introspectLatencyMs ?? 0,
    requirePkce: o.requirePkce ?? true,
    autoApprove: o.autoApprove ?? false,
    username: o.username ?? 'demo@example.com',
  };
}

function zeroCalls(): FakeCallCounters {
  return {
    authorize: 0,
    token: 0,
    tokenRefresh: 0,
    tokenCode: 0,
    revoke: 0,
    introspect: 0,
    userinfo: 0,
    identity: 0,
    rest: 0,
  };
}

function baseUrl(address: AddressInfo): string {
  let host = address.address;
  if (host === '0.0.0.0') host = '127.0.0.1';
  else if (host === '::') host = '::1';
  return `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
}

async function route(ctx: Context, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const parsed = new URL(req.url ?? '/', 'http://fake.invalid');
  const path = parsed.pathname;
  const query = parsed.searchParams;
  switch (path) {
    case AUTHORIZE_PATH:
      return handleAuthorize(ctx, req, res, query);
    case '/services/oauth2/token':
      return handleToken(ctx, req, res);
    case '/services/oauth2/revoke':
      return handleRevoke(ctx, req, res, query);
    case '/services/oauth2/introspect':
      return handleIntrospect(ctx, req, res);
    case '/services/oauth2/userinfo':
      return handleUserinfo(ctx, req, res);
    case '/id/keys':
      return sendJson(res, 200, await ctx.idTokens.jwks());
    case '/.well-known/openid-configuration':
      return sendJson(res, 200, openIdConfiguration(ctx.url()));
    default:
      break;
  }
  const identity = /^\/id\/([^/]+)\/([^/]+)\/?$/.exec(path);
  if (identity?.[1] && identity[2]) {
    return handleIdentity(ctx, req, res, identity[1], identity[2]);
  }
  if (path === '/services/data' || path.startsWith('/services/data/')) {
    return handleRest(ctx, req, res, path, query);
  }
  send(res, 404, 'Not Found', 'text/plain;charset=UTF-8');
}

export async function startFakeSalesforce(
  options: FakeSalesforceOptions = {},
): Promise<FakeSalesforce> {
  const resolved = resolveOptions(options);
  const secrets = new Map<string, string>([
    [resolved.clientId, options.clientSecret ?? 'fake-client-secret'],
    ...(options.otherApps ?? []).map((app): [string, string] => [app.clientId, app.clientSecret]),
  ]);
  let url = '';
  const orgId = newSalesforceId('00D');
  const state = new OrgState({
    orgId,
    rotation: resolved.rotation,
    reuseDetection: resolved.reuseDetection,
    approvalsLimit: resolved.approvalsLimit,
    accessTokenTtlMs: resolved.accessTokenTtlMs,
    now: () => Date.now(),
  });
  const defaultUser = state.userByName(resolved.username);
  const calls = zeroCalls();
  const faults = new FaultQueue();
  const sleeper = new Sleeper();
  const ctx: Context = {
    options: resolved,
    orgId,
    state,
    calls,
    faults,
    sleeper,
    idTokens: new IdTokenSigner(),
    url: () => url,
    secretOf: (clientId) => (clientId === null ? undefined : secrets.get(clientId)),
  };

  const server = createServer((req, res) => {
    route(ctx, req, res).catch((err: unknown) => {
      if (err instanceof BodyTooLargeError) {
        // Stop reading an oversized upload: the socket closes after this answer.
        send(
          res,
          413,
          JSON.stringify({ error: 'invalid_request', error_description: 'request body too large' }),
          'application/json;charset=UTF-8',
          { connection: 'close' },
        );
      } else if (!res.headersSent && !res.destroyed) {
        sendOAuthError(res, 500, 'server_error', 'internal error of the fake server');
      } else {
        res.destroy();
      }
    });
  });
  // Never let a socket-level error surface as an unhandled 'error' event (or a log line).
  server.on('clientError', (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      // Silent by design: a late server error must neither crash the test run nor log.
      server.on('error', () => {});
      resolve();
    });
  });
  url = baseUrl(server.address() as AddressInfo);

  let closing: Promise<void> | undefined;
  return {
    url,
    orgId,
    calls,
    get reuseRevocations() {
      return state.reuseRevocations;
    },
    resetCalls() {
      Object.assign(calls, zeroCalls());
    },
    inject(fault) {
      faults.add(fault);
    },
    clearFaults() {
      faults.clear();
    },
    setClientSecret(secret, clientId = resolved.clientId) {
      if (!secrets.has(clientId)) throw new Error(`no connected app ${clientId}`);
      secrets.set(clientId, secret);
    },
    seedGrant(opts = {}) {
      const user = opts.userId !== undefined ? state.userById(opts.userId) : defaultUser;
      let scope = opts.scope ?? DEFAULT_SEED_SCOPE;
      if (!hasRefreshScope(scope)) scope = `${scope} refresh_token`.trim();
      const issued = state.createGrant(user, resolved.clientId, scope, true);
      return {
        refreshToken: issued.refreshToken ?? '',
        accessToken: issued.accessToken,
        userId: user.id,
        id: identityUrl(ctx, user.id),
      };
    },
    expireAccessTokens() {
      state.expireAccessTokens();
    },
    isRefreshTokenActive(token) {
      return state.isRefreshTokenActive(token);
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        sleeper.close();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
