import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AuthorizationUrlParameters } from '../broker/login.ts';
import type { ClientCredentials } from '../broker/ports.ts';
import type { TokenIntrospection, TokenResponse } from '../broker/upstream.ts';
import { isLoopbackUrl } from '../shared/urls.ts';
import {
  AccessRestrictedError,
  InvalidClientError,
  InvalidGrantError,
  InvalidTokenResponseError,
  OAuthRequestError,
  SalesforceUnavailableError,
  TokenRequestInProgressError,
} from './errors.ts';

export interface SalesforceOAuthClientOptions {
  /** `https://login.salesforce.com`, `https://test.salesforce.com` or a My Domain origin. */
  loginUrl: URL;
  /** Default timeout of one request, in ms. */
  timeoutMs: number;
  fetch?: typeof fetch;
}

/** Per call: the deadline, and the login host's origin when it is not the configured one. */
export interface SalesforceCallOptions {
  timeoutMs?: number | undefined;
  /** The origin of the connection's login host (`https://acme.my.salesforce.com`). */
  loginUrl?: URL | undefined;
}

/** Domains Salesforce serves orgs from; `instance_url` and `id` must be one of them. */
const SALESFORCE_DOMAINS = [
  'salesforce.com',
  // Experience Cloud sites (`acme.my.site.com`, and the older `*.force.com` below).
  'site.com',
  'force.com',
  'cloudforce.com',
  'salesforce.mil',
  'crmforce.mil',
  'sfcrmproducts.cn',
];

const ID_PATH =
  /^\/id\/(00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?)\/(005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?)$/;

/**
 * Client for Salesforce's OAuth 2.0 endpoints: the refresh token grant, the authorization
 * code grant (with PKCE) and token revocation. Requests and response validation are
 * separate (`processTokenResponse`) so validation is testable without a network.
 * @see https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_refresh_token_flow.htm
 * @see https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_web_server_flow.htm
 */
export class SalesforceOAuthClient {
  readonly loginUrl: URL;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;

  constructor(options: SalesforceOAuthClientOptions) {
    this.loginUrl = options.loginUrl;
    this.#timeoutMs = options.timeoutMs;
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  /**
   * RFC 6749 section 6: `grant_type=refresh_token`.
   * @see https://www.rfc-editor.org/rfc/rfc6749#section-6
   */
  async refreshTokenGrant(
    credentials: ClientCredentials,
    refreshToken: string,
    options?: SalesforceCallOptions,
  ): Promise<TokenResponse> {
    // Salesforce rotates the refresh token only when the app's policy says so.
    return this.#tokenGrant(
      credentials,
      { grant_type: 'refresh_token', refresh_token: refreshToken },
      { requireRefreshToken: false },
      options,
    );
  }

  /**
   * RFC 6749 section 4.1.3 with RFC 7636 `code_verifier`.
   * @see https://www.rfc-editor.org/rfc/rfc7636#section-4.5
   */
  async authorizationCodeGrant(
    credentials: ClientCredentials,
    grant: { code: string; codeVerifier: string; redirectUri: string },
    options?: SalesforceCallOptions,
  ): Promise<TokenResponse> {
    // The broker exists to hold the refresh token: a login without one is misconfigured.
    return this.#tokenGrant(
      credentials,
      {
        grant_type: 'authorization_code',
        code: grant.code,
        code_verifier: grant.codeVerifier,
        redirect_uri: grant.redirectUri,
      },
      { requireRefreshToken: true },
      options,
    );
  }

  /** One POST to the token endpoint with the client's credentials in the body, validated. */
  async #tokenGrant(
    credentials: ClientCredentials,
    grant: Record<string, string>,
    expect: { requireRefreshToken: boolean },
    options: SalesforceCallOptions | undefined,
  ): Promise<TokenResponse> {
    const loginUrl = options?.loginUrl ?? this.loginUrl;
    const response = await this.#post(
      loginUrl,
      '/services/oauth2/token',
      {
        ...grant,
        client_id: credentials.clientId,
        client_secret: credentials.clientSecret,
        format: 'json',
      },
      options?.timeoutMs,
    );
    return processTokenResponse(response, {
      clientSecret: credentials.clientSecret,
      loginUrl,
      requireRefreshToken: expect.requireRefreshToken,
    });
  }

  /**
   * RFC 7009 token revocation. `400 invalid_token` and `400 unsupported_token_type` count
   * as already revoked: Salesforce answers them for a token it no longer knows.
   * @see https://www.rfc-editor.org/rfc/rfc7009#section-2.2.1
   */
  async revoke(token: string, options?: SalesforceCallOptions): Promise<void> {
    const response = await this.#post(
      options?.loginUrl ?? this.loginUrl,
      '/services/oauth2/revoke',
      { token },
      options?.timeoutMs,
    );
    if (response.ok) {
      await response.body?.cancel();
      return;
    }
    const text = await response.text();
    const body = parseErrorBody(text);
    if (response.status === 400 && ALREADY_REVOKED.has(body?.error ?? '')) return;
    throw classifyErrorResponse(response, body, text);
  }

  /**
   * RFC 7662 token introspection of an access token, with the client's credentials: the
   * only way Salesforce tells when an access token expires (`exp`).
   * @see https://www.rfc-editor.org/rfc/rfc7662#section-2
   * @see https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oidc_token_introspection_endpoint.htm
   */
  async introspect(
    credentials: ClientCredentials,
    accessToken: string,
    options?: SalesforceCallOptions,
  ): Promise<TokenIntrospection> {
    const response = await this.#post(
      options?.loginUrl ?? this.loginUrl,
      '/services/oauth2/introspect',
      {
        token: accessToken,
        token_type_hint: 'access_token',
        client_id: credentials.clientId,
        client_secret: credentials.clientSecret,
      },
      options?.timeoutMs,
    );
    return processIntrospectionResponse(response);
  }

  /** The authorize URL of the Web Server Flow (PKCE S256). */
  authorizationUrl(parameters: AuthorizationUrlParameters): URL {
    const url = new URL('/services/oauth2/authorize', parameters.loginUrl ?? this.loginUrl);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', parameters.clientId);
    url.searchParams.set('redirect_uri', parameters.redirectUri);
    url.searchParams.set('scope', parameters.scope);
    url.searchParams.set('state', parameters.state);
    url.searchParams.set('code_challenge', parameters.codeChallenge);
    url.searchParams.set('code_challenge_method', 'S256');
    if (parameters.prompt) url.searchParams.set('prompt', parameters.prompt);
    if (parameters.loginHint) url.searchParams.set('login_hint', parameters.loginHint);
    return url;
  }

  async #post(
    loginUrl: URL,
    path: string,
    form: Record<string, string>,
    deadlineMs?: number,
  ): Promise<Response> {
    // A caller's deadline (what is left of its lease) can shorten the configured timeout
    // (`UPSTREAM_TIMEOUT_MS`), never lengthen it.
    const timeoutMs = Math.min(deadlineMs ?? this.#timeoutMs, this.#timeoutMs);
    const signal = AbortSignal.timeout(Math.max(1, timeoutMs));
    try {
      const response = await this.#fetch(new URL(path, loginUrl), {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
        },
        body: new URLSearchParams(form).toString(),
        redirect: 'manual',
        signal,
      });
      // Read the body under the same deadline, so a stalled body is a timeout too.
      const text = await response.text();
      return new Response(text, { status: response.status, headers: response.headers });
    } catch (cause) {
      const timedOut = signal.aborted;
      // A timeout or a connection broken after the request went out leaves the outcome
      // unknown: Salesforce may be processing it still. A refused or unresolvable
      // connection never carried the request.
      const neverSent = !timedOut && NOT_SENT_CODES.has(errorCode(cause) ?? '');
      throw new SalesforceUnavailableError(
        timedOut ? `Salesforce did not answer within ${timeoutMs} ms` : 'Salesforce is unreachable',
        undefined,
        { cause, reason: timedOut ? 'timeout' : neverSent ? 'unreachable' : 'network' },
      );
    }
  }
}

/** Network errors (Node's and undici's) raised before a request could leave this host. */
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** The `code` of a network error, which `fetch` wraps as the cause of a `TypeError`. */
function errorCode(error: unknown): string | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 4; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = current.cause;
  }
  return undefined;
}

interface OAuthErrorBody {
  error: string;
  error_description?: string | undefined;
}

/** Revoke errors that mean the token is already gone. */
const ALREADY_REVOKED = new Set(['invalid_token', 'unsupported_token_type']);

/** `invalid_grant` descriptions that refuse the caller, not the grant. */
const ACCESS_RESTRICTED = /ip restricted|invalid login hours|login hours/i;

/** A rate limit, in an OAuth error, an error description or a non-JSON body. */
const RATE_LIMITED = /rate[_ ]limit|too many requests/i;

/** Salesforce sends no Retry-After with `rate_limit_exceeded`; its login limits are hourly. */
const RATE_LIMIT_RETRY_AFTER_SECONDS = 60;

const CLIENT_ERRORS = new Set([
  'invalid_client',
  'invalid_client_id',
  'invalid_client_credentials',
  'unauthorized_client',
]);

function parseErrorBody(text: string): OAuthErrorBody | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === 'object' && value !== null && 'error' in value) {
      const { error, error_description } = value as Record<string, unknown>;
      if (typeof error === 'string') {
        return {
          error,
          error_description: typeof error_description === 'string' ? error_description : undefined,
        };
      }
    }
  } catch {
    // Not JSON: a maintenance page or a proxy's error page.
  }
  return undefined;
}

function retryAfterSeconds(response: Response): number | undefined {
  const value = response.headers.get('retry-after');
  if (value && /^\d{1,5}$/.test(value.trim())) return Number(value.trim());
  return undefined;
}

/**
 * Maps a non-2xx token or revoke response to an error class (SALESFORCE.md, "Token
 * endpoint"). Order matters: a rate limit is never a dead grant or a bad client, and
 * Salesforce's own concurrency block and its IP / login-hours refusals arrive as
 * `invalid_grant` but leave the grant alive.
 * @see https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_flow_errors.htm
 */
function classifyErrorResponse(
  response: Response,
  body: OAuthErrorBody | undefined,
  text: string,
): Error {
  const upstream = body && { error: body.error, description: body.error_description };
  if (
    response.status === 429 ||
    body?.error === 'rate_limit_exceeded' ||
    RATE_LIMITED.test(body?.error_description ?? '') ||
    (!body && RATE_LIMITED.test(text.slice(0, 4096)))
  ) {
    return new SalesforceUnavailableError(
      `Salesforce rate-limited the request (HTTP ${response.status})`,
      retryAfterSeconds(response) ?? RATE_LIMIT_RETRY_AFTER_SECONDS,
      { reason: 'rate_limited', upstream },
    );
  }
  if (response.status >= 500 || !body) {
    return new SalesforceUnavailableError(
      `Salesforce answered HTTP ${response.status}${body ? '' : ' without an OAuth error body'}`,
      retryAfterSeconds(response),
      { reason: body ? 'server' : 'not_json', upstream },
    );
  }
  if (body.error === 'invalid_grant') {
    const description = body.error_description ?? '';
    if (/already being processed/i.test(description)) {
      return new TokenRequestInProgressError(
        'Salesforce is processing the same refresh token',
        upstream,
      );
    }
    if (ACCESS_RESTRICTED.test(description)) {
      return new AccessRestrictedError(
        "Salesforce refused the broker's network location or login hours",
        upstream,
      );
    }
    return new InvalidGrantError('Salesforce rejected the grant', upstream);
  }
  if (CLIENT_ERRORS.has(body.error)) {
    return new InvalidClientError('Salesforce rejected the client credentials', upstream);
  }
  return new OAuthRequestError(`Salesforce answered ${body.error}`, upstream);
}

/**
 * Validates a token endpoint response field by field: types, the 13-digit `issued_at`,
 * the HMAC-SHA256 `signature` over `id + issued_at` (constant-time), and that
 * `instance_url` and `id` are Salesforce hosts (loopback only when `loginUrl` is loopback).
 * Unknown extra fields are ignored. Long on purpose: one check per field, in order.
 * @see https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_endpoints.htm
 */
export async function processTokenResponse(
  response: Response,
  options: { clientSecret: string; loginUrl: URL; requireRefreshToken: boolean },
): Promise<TokenResponse> {
  const fields = await successFields(response, 'response');
  const accessToken = requiredString(fields, 'access_token');
  const instanceUrl = requiredString(fields, 'instance_url');
  const id = requiredString(fields, 'id');
  const issuedAt = requiredString(fields, 'issued_at');
  const signature = requiredString(fields, 'signature');
  const tokenType = requiredString(fields, 'token_type');
  const scope = optionalString(fields, 'scope') ?? '';
  const refreshToken = optionalString(fields, 'refresh_token');
  // Metadata for clients, not a credential: one that is not a Salesforce site is left out
  // rather than failing the login.
  const siteUrl = [fields.sfdc_site_url, fields.sfdc_community_url].find(
    (value): value is string =>
      typeof value === 'string' && isTrustedSalesforceUrl(value, options.loginUrl),
  );

  if (tokenType.toLowerCase() !== 'bearer') {
    throw new InvalidTokenResponseError('"response" body "token_type" must be "Bearer"', 'field');
  }
  if (!/^\d{13}$/.test(issuedAt)) {
    throw new InvalidTokenResponseError(
      '"response" body "issued_at" must be 13 digits (milliseconds since the epoch)',
      'field',
    );
  }
  if (!verifySignature(options.clientSecret, id, issuedAt, signature)) {
    throw new InvalidTokenResponseError(
      '"response" body "signature" does not match HMAC-SHA256(client secret, id + issued_at)',
      'signature',
    );
  }
  if (!isTrustedSalesforceUrl(instanceUrl, options.loginUrl)) {
    throw new InvalidTokenResponseError(
      '"response" body "instance_url" is not a Salesforce host',
      'instance_url',
    );
  }
  const identity = parseIdentityUrl(id, options.loginUrl);
  if (options.requireRefreshToken && refreshToken === undefined) {
    throw new InvalidTokenResponseError(
      '"response" body has no "refresh_token": add the "refresh_token" (or "offline_access") scope to the connected app and to SALESFORCE_SCOPES',
      'refresh_token_missing',
    );
  }
  return {
    accessToken,
    refreshToken,
    instanceUrl,
    id,
    orgId: identity.orgId,
    userId: identity.userId,
    issuedAt,
    scope,
    tokenType: 'Bearer',
    ...(siteUrl === undefined ? {} : { siteUrl }),
  };
}

/**
 * Validates an introspection response field by field: `active` a boolean; when active,
 * `exp` whole seconds since the epoch (as a number, or a numeric string), `iat`, when sent,
 * the same and not after `exp`, and `token_type`, when sent, `access_token`. Unknown extra
 * fields are ignored.
 * @see https://www.rfc-editor.org/rfc/rfc7662#section-2.2
 */
export async function processIntrospectionResponse(
  response: Response,
): Promise<TokenIntrospection> {
  const fields = await successFields(response, 'introspection');
  if (typeof fields.active !== 'boolean') {
    throw new InvalidTokenResponseError(
      '"introspection" body "active" property must be a boolean',
      'field',
    );
  }
  if (!fields.active) return { active: false };
  const exp = epochSeconds(fields, 'exp');
  if (exp === undefined) {
    throw new InvalidTokenResponseError(
      '"introspection" body "exp" property must be a positive whole number of seconds',
      'field',
    );
  }
  const iat = epochSeconds(fields, 'iat');
  if (iat !== undefined && iat > exp) {
    throw new InvalidTokenResponseError(
      '"introspection" body "iat" property must not be after "exp"',
      'field',
    );
  }
  if (fields.token_type !== undefined && fields.token_type !== 'access_token') {
    throw new InvalidTokenResponseError(
      '"introspection" body "token_type" property must be "access_token"',
      'field',
    );
  }
  return { active: true, expiresAt: exp * 1000 };
}

/** Past this, a time is in milliseconds, not seconds (it would be after the year 2286). */
const MAX_EPOCH_SECONDS = 9_999_999_999;

/**
 * An introspection time (`exp`, `iat`): whole seconds since the epoch, as a number or a
 * numeric string; `undefined` when absent; throws, naming the field, when malformed.
 */
function epochSeconds(fields: Record<string, unknown>, name: string): number | undefined {
  const raw = fields[name];
  if (raw === undefined) return undefined;
  const value = typeof raw === 'string' && /^\d{1,10}$/.test(raw) ? Number(raw) : raw;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidTokenResponseError(
      `"introspection" body "${name}" property must be a positive whole number of seconds`,
      'field',
    );
  }
  if (value > MAX_EPOCH_SECONDS) {
    throw new InvalidTokenResponseError(
      `"introspection" body "${name}" property must be seconds since the epoch, not milliseconds`,
      'field',
    );
  }
  return value;
}

/**
 * The fields of a success answer's JSON object; an error answer sorted into its failure
 * kind. A 200 that is not JSON is a proxy or maintenance page, not an OAuth answer.
 */
async function successFields(
  response: Response,
  what: 'response' | 'introspection',
): Promise<Record<string, unknown>> {
  const text = await response.text();
  if (!response.ok) throw classifyErrorResponse(response, parseErrorBody(text), text);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new SalesforceUnavailableError(
      'Salesforce answered 200 with a body that is not JSON',
      undefined,
      { reason: 'not_json' },
    );
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidTokenResponseError(`"${what}" body must be a JSON object`, 'field');
  }
  return body as Record<string, unknown>;
}

function requiredString(fields: Record<string, unknown>, name: string): string {
  const value = fields[name];
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidTokenResponseError(
      `"response" body "${name}" property must be a non-empty string`,
      'field',
    );
  }
  return value;
}

function optionalString(fields: Record<string, unknown>, name: string): string | undefined {
  const value = fields[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidTokenResponseError(
      `"response" body "${name}" property must be a non-empty string when present`,
      'field',
    );
  }
  return value;
}

/** Constant-time check of Salesforce's `signature` (base64 HMAC-SHA256 over `id + issued_at`). */
export function verifySignature(
  clientSecret: string,
  id: string,
  issuedAt: string,
  signature: string,
): boolean {
  const expected = createHmac('sha256', clientSecret)
    .update(id + issuedAt)
    .digest();
  const actual = Buffer.from(signature, 'base64');
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/**
 * `https` on a Salesforce domain or on the login host itself (an Experience Cloud site or
 * a custom site domain on the allow-list, whose `id` URL Salesforce puts on that host);
 * or, only when the login URL is loopback, a loopback URL.
 * @see https://help.salesforce.com/s/articleView?id=sf.remoteaccess_using_openid.htm
 */
export function isTrustedSalesforceUrl(value: string, loginUrl: URL): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.username || url.password) return false;
  if (isLoopbackUrl(loginUrl)) return isLoopbackUrl(url) || isSalesforceHost(url);
  if (url.protocol === 'https:' && url.port === '' && url.host === loginUrl.host) return true;
  return isSalesforceHost(url);
}

function isSalesforceHost(url: URL): boolean {
  if (url.protocol !== 'https:' || url.port !== '') return false;
  const host = url.hostname.toLowerCase();
  return SALESFORCE_DOMAINS.some((domain) => host === domain || host.endsWith(`.${domain}`));
}

function parseIdentityUrl(id: string, loginUrl: URL): { orgId: string; userId: string } {
  if (!isTrustedSalesforceUrl(id, loginUrl)) {
    throw new InvalidTokenResponseError(
      '"response" body "id" is not a Salesforce URL',
      'identity_url',
    );
  }
  const match = ID_PATH.exec(new URL(id).pathname);
  if (!match?.[1] || !match[2]) {
    throw new InvalidTokenResponseError(
      '"response" body "id" must look like https://login.salesforce.com/id/<orgId>/<userId>',
      'identity_url',
    );
  }
  return { orgId: match[1], userId: match[2] };
}
