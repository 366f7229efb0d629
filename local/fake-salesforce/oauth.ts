/** The OAuth endpoints: authorize (login page), token, revoke, introspect. */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { FakeFault } from '../fake-salesforce.ts';
import type { Context } from './context.ts';
import { constantTimeEqual, identityUrl, tokenSignature } from './context.ts';
import {
  clientCredentials,
  formParams,
  readBody,
  redirect,
  send,
  sendJson,
  sendOAuthError,
  watchClient,
} from './http.ts';
import { SUPPORTED_SCOPES } from './id-token.ts';
import { errorPage, loginPage, maintenancePage, PAGE_CSP } from './pages.ts';
import type { Issued, Outcome, User } from './state.ts';
import { scopeList } from './state.ts';

export const AUTHORIZE_PATH = '/services/oauth2/authorize';
/** Granted when the request names no scope, like the scopes selected on the connected app. */
const DEFAULT_SCOPE = 'api id refresh_token';
const API_INSTANCE_URL = 'https://api.salesforce.com';
const JSON_TYPE = 'application/json;charset=UTF-8';
const HTML_TYPE = 'text/html;charset=UTF-8';
const CODE_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
/** Authorize parameters carried through the login form as hidden fields. */
const CARRIED = [
  'response_type',
  'client_id',
  'redirect_uri',
  'scope',
  'state',
  'code_challenge',
  'code_challenge_method',
  'nonce',
  'prompt',
];

// ---------------------------------------------------------------------------------------
// authorize

interface AuthorizeRequest {
  clientId: string;
  redirectUri: string;
  scope: string;
  state: string | null;
  codeChallenge: string | null;
  nonce: string | null;
  loginHint: string | null;
  prompt: string[];
  hidden: [string, string][];
}

type AuthorizeCheck =
  | { kind: 'page'; error: string; description: string }
  | { kind: 'redirect'; location: string }
  | { kind: 'ok'; request: AuthorizeRequest };

function redirectAllowed(ctx: Context, redirectUri: string): boolean {
  if (ctx.options.redirectUris.length > 0) return ctx.options.redirectUris.includes(redirectUri);
  try {
    const u = new URL(redirectUri);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hash === '';
  } catch {
    return false;
  }
}

/** redirect_uri with the given parameters added to its query. */
export function redirectTo(redirectUri: string, params: [string, string | null][]): string {
  const u = new URL(redirectUri);
  for (const [k, v] of params) if (v !== null) u.searchParams.append(k, v);
  return u.toString();
}

function checkAuthorize(ctx: Context, params: URLSearchParams): AuthorizeCheck {
  const clientId = params.get('client_id');
  if (clientId === null || ctx.secretOf(clientId) === undefined) {
    return { kind: 'page', error: 'invalid_client_id', description: 'client identifier invalid' };
  }
  const redirectUri = params.get('redirect_uri');
  if (redirectUri === null || !redirectAllowed(ctx, redirectUri)) {
    return {
      kind: 'page',
      error: 'redirect_uri_mismatch',
      description: 'redirect_uri must match configuration',
    };
  }
  // From here on, errors go back to the (verified) redirect_uri.
  const state = params.get('state');
  const back = (error: string, description: string): AuthorizeCheck => ({
    kind: 'redirect',
    location: redirectTo(redirectUri, [
      ['error', error],
      ['error_description', description],
      ['state', state],
    ]),
  });
  if (params.get('response_type') !== 'code') {
    return back('unsupported_response_type', 'response type not supported');
  }
  const requested = scopeList(params.get('scope') ?? '');
  if (requested.some((s) => !SUPPORTED_SCOPES.includes(s))) {
    return back('invalid_scope', 'the requested scope is not allowed');
  }
  const scope = requested.length > 0 ? [...new Set(requested)].join(' ') : DEFAULT_SCOPE;
  const codeChallenge = params.get('code_challenge') || null;
  const method = params.get('code_challenge_method');
  if (codeChallenge === null) {
    if (ctx.options.requirePkce) return back('invalid_request', 'missing required code challenge');
  } else {
    if (method !== null && method !== 'S256') {
      return back('invalid_request', 'invalid code challenge method');
    }
    if (!CODE_CHALLENGE.test(codeChallenge))
      return back('invalid_request', 'invalid code challenge');
  }
  const hidden: [string, string][] = [];
  for (const name of CARRIED) {
    const value = params.get(name);
    if (value !== null) hidden.push([name, value]);
  }
  return {
    kind: 'ok',
    request: {
      clientId,
      redirectUri,
      scope,
      state,
      codeChallenge,
      nonce: params.get('nonce'),
      loginHint: params.get('login_hint') || null,
      prompt: scopeList(params.get('prompt') ?? ''),
      hidden,
    },
  };
}

function approve(ctx: Context, request: AuthorizeRequest, user: User): string {
  const code = ctx.state.issueCode({
    clientId: request.clientId,
    redirectUri: request.redirectUri,
    codeChallenge: request.codeChallenge,
    scope: request.scope,
    user,
    nonce: request.nonce,
  });
  return redirectTo(request.redirectUri, [
    ['code', code],
    ['state', request.state],
  ]);
}

function sendErrorPage(res: ServerResponse, error: string, description: string): void {
  send(res, 400, errorPage(error, description), HTML_TYPE, {
    'content-security-policy': PAGE_CSP,
    'x-frame-options': 'DENY',
  });
}

export async function handleAuthorize(
  ctx: Context,
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
): Promise<void> {
  ctx.calls.authorize++;
  if (req.method === 'GET' || req.method === 'HEAD') {
    const check = checkAuthorize(ctx, query);
    if (check.kind === 'page') return sendErrorPage(res, check.error, check.description);
    if (check.kind === 'redirect') return redirect(res, check.location);
    const request = check.request;
    if (ctx.options.autoApprove) {
      const user = ctx.state.userByName(request.loginHint ?? ctx.options.username);
      return redirect(res, approve(ctx, request, user));
    }
    if (request.prompt.includes('none')) {
      return redirect(
        res,
        redirectTo(request.redirectUri, [
          ['error', 'login_required'],
          ['error_description', 'user must log in'],
          ['state', request.state],
        ]),
      );
    }
    const html = loginPage({
      action: AUTHORIZE_PATH,
      username: request.loginHint ?? ctx.options.username,
      orgId: ctx.orgId,
      scopes: scopeList(request.scope),
      hidden: request.hidden,
    });
    return send(res, 200, html, HTML_TYPE, {
      'content-security-policy': PAGE_CSP,
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
    });
  }
  if (req.method !== 'POST') return sendErrorPage(res, 'invalid_request', 'unsupported method');

  const params = formParams(req, await readBody(req));
  const check = checkAuthorize(ctx, params);
  if (check.kind === 'page') return sendErrorPage(res, check.error, check.description);
  if (check.kind === 'redirect') return redirect(res, check.location);
  const request = check.request;
  const decision = params.get('decision');
  if (decision === 'deny') {
    return redirect(
      res,
      redirectTo(request.redirectUri, [
        ['error', 'access_denied'],
        ['error_description', 'end-user denied authorization'],
        ['state', request.state],
      ]),
    );
  }
  if (decision !== 'allow') return sendErrorPage(res, 'invalid_request', 'missing decision');
  const username = (params.get('username') ?? '').trim() || ctx.options.username;
  return redirect(res, approve(ctx, request, ctx.state.userByName(username)));
}

// ---------------------------------------------------------------------------------------
// faults shared by token and revoke

/** Answers a fault that replaces the endpoint's work; false for the other kinds. */
function answerReplacingFault(res: ServerResponse, fault: FakeFault): boolean {
  switch (fault.kind) {
    case 'status': {
      const body =
        fault.body ??
        JSON.stringify({
          error: 'server_error',
          error_description: (STATUS_CODES[fault.status] ?? 'error').toLowerCase(),
        });
      const type =
        fault.contentType ?? (/^\s*[[{]/.test(body) ? JSON_TYPE : 'text/plain;charset=UTF-8');
      send(res, fault.status, body, type);
      return true;
    }
    case 'maintenance':
      send(res, 503, maintenancePage(), HTML_TYPE);
      return true;
    case 'error':
      sendOAuthError(res, 400, fault.error, fault.description);
      return true;
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------
// token

async function successBody(
  ctx: Context,
  issued: Issued,
  clientId: string,
): Promise<Record<string, string>> {
  const id = identityUrl(ctx, issued.user.id);
  const issuedAt = String(issued.issuedAt);
  const body: Record<string, string> = { access_token: issued.accessToken };
  if (issued.refreshToken !== undefined) body.refresh_token = issued.refreshToken;
  body.signature = tokenSignature(ctx.secretOf(clientId) ?? '', id, issuedAt);
  body.scope = issued.scope;
  if (scopeList(issued.scope).includes('openid')) {
    body.id_token = await ctx.idTokens.sign({
      issuer: ctx.url(),
      subject: id,
      audience: clientId,
      accessToken: issued.accessToken,
      issuedAtMs: issued.issuedAt,
      nonce: issued.nonce,
    });
  }
  body.instance_url = ctx.url();
  body.id = id;
  body.token_type = 'Bearer';
  body.issued_at = issuedAt;
  // An extra field real orgs send: clients must ignore what they do not use.
  body.api_instance_url = API_INSTANCE_URL;
  return body;
}

export async function handleToken(
  ctx: Context,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  ctx.calls.token++;
  const client = watchClient(res);
  const params = formParams(req, await readBody(req));
  const grantType = params.get('grant_type');
  if (grantType === 'refresh_token') ctx.calls.tokenRefresh++;
  else if (grantType === 'authorization_code') ctx.calls.tokenCode++;
  if (req.method !== 'POST')
    return sendOAuthError(res, 400, 'invalid_request', 'must use HTTP POST');

  const latency = ctx.options.tokenLatencyMs;
  const fail = async (error: string, description: string): Promise<void> => {
    await ctx.sleeper.sleep(latency);
    sendOAuthError(res, 400, error, description);
  };

  const fault = ctx.faults.take('token');
  if (
    fault &&
    (fault.kind === 'status' || fault.kind === 'maintenance' || fault.kind === 'error')
  ) {
    await ctx.sleeper.sleep(latency);
    answerReplacingFault(res, fault);
    return;
  }

  if (grantType !== 'authorization_code' && grantType !== 'refresh_token') {
    return fail('unsupported_grant_type', 'grant type not supported');
  }
  const { clientId, clientSecret } = clientCredentials(req, params);
  const expectedSecret = ctx.secretOf(clientId);
  if (clientId === null || expectedSecret === undefined) {
    return fail('invalid_client_id', 'client identifier invalid');
  }
  if (clientSecret === null || !constantTimeEqual(clientSecret, expectedSecret)) {
    return fail('invalid_client', 'invalid client credentials');
  }
  const refreshToken = grantType === 'refresh_token' ? params.get('refresh_token') || null : null;
  const code = grantType === 'authorization_code' ? params.get('code') || null : null;
  if (grantType === 'refresh_token' && refreshToken === null) {
    return fail('invalid_request', 'missing refresh token');
  }
  if (grantType === 'authorization_code' && code === null) {
    return fail('invalid_request', 'missing authorization code');
  }

  // Salesforce's concurrency block: one request per refresh token at a time.
  let release: (() => void) | undefined;
  if (refreshToken !== null && ctx.options.concurrencyBlock) {
    if (ctx.state.inFlight.has(refreshToken)) {
      return fail('invalid_grant', 'token request is already being processed');
    }
    ctx.state.inFlight.add(refreshToken);
    release = () => ctx.state.inFlight.delete(refreshToken);
  }
  let outcome: Outcome<Issued>;
  try {
    if (fault?.kind === 'delay') {
      await ctx.sleeper.sleep(fault.ms);
      // A client that gave up while the request was queued: it is never processed.
      if (client.gone || ctx.sleeper.closed) return;
    }
    await ctx.sleeper.sleep(latency);
    if (ctx.sleeper.closed) return;
    outcome =
      refreshToken !== null
        ? ctx.state.refresh({ refreshToken, clientId })
        : ctx.state.exchangeCode({
            code: code ?? '',
            clientId,
            redirectUri: params.get('redirect_uri'),
            codeVerifier: params.get('code_verifier'),
          });
  } finally {
    release?.();
  }
  if (!outcome.ok) return sendOAuthError(res, 400, outcome.error, outcome.description);

  let body = await successBody(ctx, outcome.value, clientId);
  switch (fault?.kind) {
    case 'drop-after-rotate':
      res.destroy(); // destroys the socket: the client sees the connection end, no answer
      return;
    case 'malformed-json': {
      const text = JSON.stringify(body);
      return send(res, 200, text.slice(0, Math.floor(text.length / 2)), JSON_TYPE);
    }
    case 'missing-field': {
      const field = fault.field;
      body = Object.fromEntries(Object.entries(body).filter(([k]) => k !== field));
      break;
    }
    case 'bad-signature':
      body.signature = tokenSignature(
        randomBytes(32).toString('base64'),
        body.id ?? '',
        body.issued_at ?? '',
      );
      break;
    case 'foreign-instance-url':
      body.instance_url = fault.url;
      break;
    default:
      break;
  }
  sendJson(res, 200, body);
}

// ---------------------------------------------------------------------------------------
// revoke and introspect

export async function handleRevoke(
  ctx: Context,
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
): Promise<void> {
  ctx.calls.revoke++;
  const client = watchClient(res);
  const body = await readBody(req);
  if (req.method !== 'POST' && req.method !== 'GET') {
    return sendOAuthError(res, 400, 'invalid_request', 'must use HTTP POST');
  }
  const params = req.method === 'GET' ? query : formParams(req, body);
  const fault = ctx.faults.take('revoke');
  if (fault) {
    if (answerReplacingFault(res, fault)) return;
    if (fault.kind === 'delay') {
      await ctx.sleeper.sleep(fault.ms);
      if (client.gone || ctx.sleeper.closed) return;
    }
  }
  const token = params.get('token');
  if (!token) return sendOAuthError(res, 400, 'unsupported_token_type', 'missing token parameter');
  if (!ctx.state.revoke(token)) return sendOAuthError(res, 400, 'invalid_token', 'invalid token');
  send(res, 200, '', null);
}

export async function handleIntrospect(
  ctx: Context,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  ctx.calls.introspect++;
  const client = watchClient(res);
  const params = formParams(req, await readBody(req));
  if (req.method !== 'POST')
    return sendOAuthError(res, 400, 'invalid_request', 'must use HTTP POST');
  if (ctx.options.introspectLatencyMs > 0) await ctx.sleeper.sleep(ctx.options.introspectLatencyMs);
  if (client.gone || ctx.sleeper.closed) return;
  const fault = ctx.faults.take('introspect');
  if (fault) {
    if (answerReplacingFault(res, fault)) return;
    if (fault.kind === 'delay') {
      await ctx.sleeper.sleep(fault.ms);
      if (client.gone || ctx.sleeper.closed) return;
    }
  }
  const { clientId, clientSecret } = clientCredentials(req, params);
  const expectedSecret = ctx.secretOf(clientId);
  if (clientId === null || expectedSecret === undefined) {
    return sendOAuthError(res, 400, 'invalid_client_id', 'client identifier invalid');
  }
  if (clientSecret === null || !constantTimeEqual(clientSecret, expectedSecret)) {
    return sendOAuthError(res, 400, 'invalid_client', 'invalid client credentials');
  }
  const token = params.get('token');
  if (!token) return sendOAuthError(res, 400, 'invalid_request', 'missing token parameter');
  const found = ctx.state.lookup(token);
  if (!found) return sendJson(res, 200, { active: false });
  const seconds = (ms: number) => Math.floor(ms / 1000);
  if (found.kind === 'access') {
    const r = found.record;
    return sendJson(res, 200, {
      active: true,
      scope: r.scope,
      client_id: r.clientId,
      username: r.user.username,
      sub: identityUrl(ctx, r.user.id),
      token_type: 'access_token',
      exp: seconds(r.expiresAt),
      iat: seconds(r.issuedAt),
      nbf: seconds(r.issuedAt),
    });
  }
  sendJson(res, 200, {
    active: true,
    scope: found.scope,
    client_id: found.familyClientId,
    username: found.user.username,
    sub: identityUrl(ctx, found.user.id),
    token_type: 'refresh_token',
    iat: seconds(found.issuedAt),
    nbf: seconds(found.issuedAt),
  });
}
