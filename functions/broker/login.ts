import type { BrokerConfig } from './config.ts';
import { InvalidRequestError, TemporarilyUnavailableError } from './errors.ts';
import {
  LOGIN_TRANSACTION_TTL_MS,
  loginCookieHash,
  newLoginCookieValue,
  newState,
  sealVerifier,
  stateKeyOf,
} from './login-transaction.ts';
import { type AppDependencies, chooseUpstream } from './orgs.ts';
import { codeChallengeS256, newCodeVerifier } from './pkce.ts';
import type {
  ClientCredentialsSource,
  Clock,
  HandoffRequest,
  Log,
  LoginTransactionStore,
  MetricSink,
} from './ports.ts';
import { logSafeId } from './session-handle.ts';

/**
 * What the authorize URL of the Web Server Flow carries (PKCE S256).
 * @see https://www.rfc-editor.org/rfc/rfc7636#section-4.3
 */
export interface AuthorizationUrlParameters {
  clientId: string;
  redirectUri: string;
  scope: string;
  state: string;
  codeChallenge: string;
  prompt?: string | undefined;
  loginHint?: string | undefined;
  /** The login host's origin; default: the configured login URL. */
  loginUrl?: URL | undefined;
}

/** The part of the Salesforce client `/login` uses. */
export interface AuthorizationUrlBuilder {
  authorizationUrl(parameters: AuthorizationUrlParameters): URL;
}

export interface LoginDependencies extends AppDependencies {
  transactions: LoginTransactionStore;
  credentials: ClientCredentialsSource;
  salesforce: AuthorizationUrlBuilder;
  clock: Clock;
  log: Log;
  metrics: MetricSink;
  config: Pick<BrokerConfig, 'scopes' | 'invocationDeadlineMs'> & {
    callbackUrl: URL;
    /** `LOGIN_HOSTS`; absent: only the apps' own login hosts. */
    loginHosts?: readonly string[] | undefined;
  };
}

export interface LoginRequest {
  /** Already validated with {@link validateReturnTo}. */
  returnTo: string;
  prompt?: string | undefined;
  loginHint?: string | undefined;
  /** The session key of the session cookie the browser sent, if any: replaced at callback. */
  currentSessionKey?: string | undefined;
  /** A registered app's login (already validated): `/callback` hands it a broker code. */
  handoff?: HandoffRequest | undefined;
  /** `salesforce_app`: the connected app to log in with; absent: the first. */
  salesforceApp?: string | undefined;
  /** `login_host`: where to log in, checked against the allow-list; absent: the app's. */
  loginHost?: string | undefined;
}

export interface StartedLogin {
  /** Salesforce's authorize URL with PKCE S256 and the state. */
  authorizeUrl: URL;
  /** The value of the `__Host-tb-login` cookie; only its hash is stored. */
  loginCookieValue: string;
}

/**
 * Starts the OAuth 2.0 Web Server Flow (README "HTTP contract (v1)"): a fresh PKCE verifier
 * (S256), a fresh `state`, and a one-time login transaction bound to the browser by the
 * login cookie, stored for 10 minutes under the hash of the state.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.1
 * @see https://www.rfc-editor.org/rfc/rfc7636#section-4.3
 * @see https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_web_server_flow.htm
 */
export async function startLogin(
  deps: LoginDependencies,
  request: LoginRequest,
): Promise<StartedLogin> {
  const deadline = deps.clock.now() + deps.config.invocationDeadlineMs;
  // Before anything is stored or redirected: a refused app or host is a 400.
  const upstream = chooseUpstream(
    { ...deps, config: { loginHosts: deps.config.loginHosts ?? [] } },
    request,
  );
  const { clientId } = await upstream.credentials.get();
  const state = newState();
  const codeVerifier = newCodeVerifier();
  const loginCookieValue = newLoginCookieValue();
  const stateKey = stateKeyOf(state);
  const now = deps.clock.now();
  const created = await deps.transactions.create(
    {
      stateKey,
      sealedVerifier: sealVerifier(state, codeVerifier),
      returnTo: request.returnTo,
      cookieHash: loginCookieHash(loginCookieValue),
      createdAt: now,
      expiresAt: now + LOGIN_TRANSACTION_TTL_MS,
      replacesSessionKey: request.currentSessionKey,
      handoff: request.handoff,
      loginHost: upstream.loginHost,
      salesforceApp: deps.apps === undefined ? undefined : upstream.appName,
    },
    { timeoutMs: deadline - deps.clock.now() },
  );
  if (!created) {
    // 256 random bits never collide; a "collision" means something replays writes.
    throw new TemporarilyUnavailableError('The login could not be started; retry.', 1);
  }
  deps.metrics.count('LoginStarted');
  deps.log.info('login started', {
    event: 'login_started',
    transaction: logSafeId(stateKey),
    replacesSession: request.currentSessionKey ? logSafeId(request.currentSessionKey) : undefined,
    client: request.handoff?.clientId,
    salesforceApp: upstream.appName,
    loginHost: upstream.loginHost,
  });
  return {
    authorizeUrl: deps.salesforce.authorizationUrl({
      clientId,
      redirectUri: deps.config.callbackUrl.toString(),
      scope: upstream.scopes ?? deps.config.scopes,
      state,
      codeChallenge: codeChallengeS256(codeVerifier),
      prompt: request.prompt,
      loginHint: request.loginHint,
      loginUrl: upstream.loginUrl,
    }),
    loginCookieValue,
  };
}

/** Longest `return_to` accepted. */
export const MAX_RETURN_TO_LENGTH = 2048;

/** Characters RFC 3986 allows in a path, query and fragment (plus `%` for escapes). */
const URI_CHARACTERS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/?#%]*$/;

/**
 * Validates `return_to` (README "Browser apps"): either an absolute URL on one of the
 * `allowedOrigins` (see {@link validateAbsoluteReturnTo}), or a relative path with one leading
 * `/` (not `//` or `/\`), no scheme, no backslash, no control characters, no `.` or `..`
 * segment, no percent-encoded `/`, `\`, `.`, `%` or control character in the path, and a
 * path within one of the allowed prefixes, matched on whole segments (`/app` allows
 * `/app` and `/app/x`, not `/application`). Returns it unchanged, or throws
 * `InvalidRequestError`. The value is used as the `Location` of the final redirect.
 * @see https://www.rfc-editor.org/rfc/rfc3986#section-4.2
 * @see https://cheatsheetseries.owasp.org/cheatsheets/Unvalidated_Redirects_and_Forwards_Cheat_Sheet.html
 */
export function validateReturnTo(
  value: string,
  allowedPrefixes: readonly string[],
  allowedOrigins: readonly string[] = [],
): string {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(value)) {
    return validateAbsoluteReturnTo(value, allowedPrefixes, allowedOrigins);
  }
  return validateRelativeReturnTo(value, allowedPrefixes);
}

/**
 * An absolute `return_to` (a browser app on its own origin): its origin must be one of the
 * allowed origins exactly as written there (scheme, host and port; no user info, no
 * default-port or case variants), and what follows the origin is checked like a relative
 * path. A foreign origin is refused: an open redirect would hand the login's outcome to
 * any site.
 */
function validateAbsoluteReturnTo(
  value: string,
  allowedPrefixes: readonly string[],
  allowedOrigins: readonly string[],
): string {
  if (value.length > MAX_RETURN_TO_LENGTH) {
    throw new InvalidRequestError('"return_to" is too long.');
  }
  const origin = allowedOrigins.find((allowed) => value.startsWith(`${allowed}/`));
  if (origin === undefined) {
    throw new InvalidRequestError(
      '"return_to" must be a relative path on this site or a URL on an allowed origin.',
    );
  }
  validateRelativeReturnTo(value.slice(origin.length), allowedPrefixes);
  // The same origin must come out of a URL parser (no `@`, `\` or other trick in between).
  const parsed = new URL(value);
  if (parsed.origin !== origin || parsed.username !== '' || parsed.password !== '') {
    throw new InvalidRequestError('"return_to" is an ambiguous URL.');
  }
  return value;
}

function validateRelativeReturnTo(value: string, allowedPrefixes: readonly string[]): string {
  const invalid = (why: string) =>
    new InvalidRequestError(`"return_to" must be a relative path on this site (${why}).`);
  if (value.length === 0 || value.length > MAX_RETURN_TO_LENGTH) throw invalid('length');
  if (!value.startsWith('/') || value.startsWith('//')) throw invalid('one leading "/"');
  if (!URI_CHARACTERS.test(value)) throw invalid('characters');
  const pathEnd = value.search(/[?#]/);
  const path = pathEnd < 0 ? value : value.slice(0, pathEnd);
  const rest = pathEnd < 0 ? '' : value.slice(pathEnd);

  // Every escape must be well formed; in the path, none may hide a separator, a dot, a
  // second round of encoding or a control character.
  for (const match of value.matchAll(/%(.{0,2})/g)) {
    const hex = match[1] ?? '';
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw invalid('percent-encoding');
    const byte = Number.parseInt(hex, 16);
    if (byte < 0x20 || byte === 0x7f) throw invalid('control characters');
    const inPath = (match.index ?? 0) < path.length;
    if (inPath && [0x2f, 0x5c, 0x2e, 0x25].includes(byte)) throw invalid('encoded separators');
  }
  let decodedPath: string;
  try {
    decodedPath = decodeURIComponent(path);
    decodeURIComponent(rest.replaceAll('+', ' '));
  } catch {
    throw invalid('percent-encoding');
  }
  const segments = decodedPath.split('/');
  if (segments.some((segment) => segment === '.' || segment === '..'))
    throw invalid('dot segments');

  // Belt and braces: a URL parser must resolve it to the same origin and the same path.
  const base = new URL('https://broker.invalid/');
  const resolved = new URL(value, base);
  if (resolved.origin !== base.origin || resolved.pathname !== path) throw invalid('ambiguous');

  if (!allowedPrefixes.some((prefix) => withinPrefix(decodedPath, prefix))) {
    throw invalid('not within the allowed paths');
  }
  return value;
}

function withinPrefix(path: string, prefix: string): boolean {
  const base = prefix.replace(/\/+$/, '');
  if (base === '') return true;
  return path === base || path.startsWith(`${base}/`);
}

const PROMPT_VALUES = new Set(['login', 'consent', 'select_account']);

/**
 * Validates the optional `prompt`: space-separated `login`, `consent`, `select_account`,
 * each at most once. Returns it normalised to single spaces.
 * @see https://openid.net/specs/openid-connect-core-1_0.html#AuthRequest
 * @see https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_web_server_flow.htm
 */
export function validatePrompt(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const values = value.split(' ').filter(Boolean);
  if (
    values.length === 0 ||
    values.some((item) => !PROMPT_VALUES.has(item)) ||
    new Set(values).size !== values.length
  ) {
    throw new InvalidRequestError(
      '"prompt" must be "login", "consent" or "select_account", space-separated.',
    );
  }
  return values.join(' ');
}

/** Longest `login_hint` accepted (Salesforce usernames are at most 80 characters). */
export const MAX_LOGIN_HINT_LENGTH = 256;

/**
 * Validates the optional `login_hint` (a username): 1 to 256 printable characters
 * (letters, marks, digits, punctuation, symbols; no spaces or controls).
 * @see https://openid.net/specs/openid-connect-core-1_0.html#AuthRequest
 */
export function validateLoginHint(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value.length > MAX_LOGIN_HINT_LENGTH || !/^[\p{L}\p{M}\p{N}\p{P}\p{S}]+$/u.test(value)) {
    throw new InvalidRequestError(
      `"login_hint" must be 1 to ${MAX_LOGIN_HINT_LENGTH} printable characters without spaces.`,
    );
  }
  return value;
}
