import {
  BrokerError,
  ForbiddenError,
  ReauthenticationRequiredError,
  SessionEndedError,
  TemporarilyUnavailableError,
} from './errors.js';
import { createTabShare, type TabShare } from './tabs.js';

/** AWS credentials for the IAM mode (the shape of the AWS SDK's `AwsCredentialIdentity`). */
export interface AwsCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  readonly expiration?: Date;
}

export interface IamCredentialOptions {
  /** The connection to get a token for (`con_...`). */
  readonly connectionId: string;
  /** The API's region; default `AWS_REGION` (then `AWS_DEFAULT_REGION`). */
  readonly region?: string;
  /** Credentials, or a provider of them; default the AWS SDK's default chain. */
  readonly credentials?: AwsCredentials | (() => Promise<AwsCredentials>);
}

/**
 * How the client authenticates to the broker:
 * - `'cookie'`: a page on the broker's site; the `__Host-tb-session` cookie with `X-CSRF: 1`;
 * - `{ bearer }`: the session handle of a native, desktop or server-side app;
 * - `{ iam }`: a backend job, through the service API, signed with SigV4.
 */
export type BrokerCredential =
  | 'cookie'
  | { readonly bearer: string }
  | { readonly iam: IamCredentialOptions };

export interface BrokerClientOptions {
  /** The broker's (or, for `iam`, the service API's) base URL, e.g. `https://auth.example.com`. */
  readonly baseUrl: string;
  readonly credential: BrokerCredential;
  /** How long `getAccessToken` keeps retrying `503`s, `429`s and lost answers (default 20 s). */
  readonly retryBudgetMs?: number;
  /** Deadline of each request to the broker (default 30 s, above API Gateway's 29 s). */
  readonly requestTimeoutMs?: number;
  /**
   * Share one `/refresh` between the tabs of this origin (Web Locks + BroadcastChannel).
   * Default: on for `'cookie'` (all tabs hold the same session), off otherwise.
   */
  readonly shareAcrossTabs?: boolean;
  /** Where to send the user to log in again; default `${baseUrl}/login`. */
  readonly loginUrl?: string;
  /** Replaces the global `fetch` (a proxy agent, a test). */
  readonly fetch?: typeof fetch;
  /** Replaces the clock and `setTimeout` waits (tests). */
  readonly clock?: { now(): number; sleep(ms: number): Promise<void> };
}

/** A Salesforce access token as the broker handed it out. */
export interface AccessToken {
  readonly accessToken: string;
  /** The org's instance, where REST calls go (it can change between refreshes). */
  readonly instanceUrl: string;
  /** The broker session's version: send it back (`invalidate`) when the token died. */
  readonly version: number;
  /** Salesforce's `issued_at`, milliseconds since the epoch, as a string. */
  readonly issuedAt: string;
  /**
   * Epoch milliseconds: when the token expires, from the broker's `expires_at` (epoch
   * seconds, learnt by introspection; a lower bound). Absent when the broker does not know
   * (introspection off or failed): the token is then used until Salesforce refuses it
   * (`401 INVALID_SESSION_ID`).
   */
  readonly expiresAt?: number;
}

export interface BrokerClient {
  /**
   * A usable access token: from memory while no one invalidated it, else from the broker.
   * Concurrent calls share one request (and, for the cookie, one between tabs). Retries
   * `TemporarilyUnavailableError`s within the retry budget, honouring `Retry-After`.
   */
  getAccessToken(): Promise<AccessToken>;
  /** The token of `version` is dead: the next `getAccessToken` sends it as the hint. */
  invalidate(version: number): void;
  /** The token held in memory, usable or not, with no request. */
  peek(): AccessToken | undefined;
  /**
   * `fetch` with `Authorization: Bearer <access token>`; a relative URL is resolved against
   * the token's `instanceUrl`. On `401 INVALID_SESSION_ID` it invalidates the token, gets a
   * new one and retries once; any other answer (other 401s included, e.g. "This session is
   * not valid for use with the REST API", which a new token does not fix) is returned.
   */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** Stops sharing with other tabs (closes the channel, releases the locks). */
  close(): void;
}

/** Carries the request to the broker for one credential. */
export type TokenRequest = (
  versionHint: number | undefined,
  signal: AbortSignal,
) => Promise<Response>;

const DEFAULT_RETRY_BUDGET_MS = 20_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** A token said to expire this soon is not handed out any more. */
const EXPIRY_MARGIN_MS = 30_000;
/** Rounds of `getAccessToken` when invalidations keep overtaking the answers. */
const MAX_ROUNDS = 3;

const realClock = {
  now: () => Date.now(),
  sleep: (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
};

/**
 * A client of the token broker (README "Clients"): holds the access token and its
 * version, sends the version back when the token died, maps the broker's answers to typed
 * errors, and makes concurrent callers share one request.
 */
export function createBrokerClient(options: BrokerClientOptions): BrokerClient {
  // `new URL` refuses a relative or malformed base URL (TypeError).
  const baseUrl = new URL(options.baseUrl).href.replace(/\/+$/, '');
  const loginUrl = options.loginUrl ?? `${baseUrl}/login`;
  const clock = options.clock ?? realClock;
  const budgetMs = options.retryBudgetMs ?? DEFAULT_RETRY_BUDGET_MS;
  const timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const fetchFn = options.fetch ?? ((input, init) => fetch(input, init));
  const send = tokenRequest(baseUrl, options.credential, fetchFn);

  let current: AccessToken | undefined;
  /** The highest version said to be dead; -1: none. */
  let dead = -1;
  let flight: Promise<AccessToken> | undefined;

  const usable = (token: AccessToken | undefined): token is AccessToken =>
    token !== undefined &&
    token.version > dead &&
    (token.expiresAt === undefined || token.expiresAt - EXPIRY_MARGIN_MS > clock.now());

  const adopt = (token: AccessToken) => {
    if (!current || token.version >= current.version) current = token;
  };

  const share = options.shareAcrossTabs ?? options.credential === 'cookie';
  const tabs: TabShare | undefined = share
    ? createTabShare(`token-broker ${baseUrl}`, {
        usable: () => (usable(current) ? current : undefined),
        dead: () => dead,
        adopt,
      })
    : undefined;

  async function requestOnce(hint: number | undefined): Promise<AccessToken> {
    let response: Response;
    try {
      response = await send(hint, AbortSignal.timeout(timeoutMs));
    } catch (error) {
      if (error instanceof BrokerError) throw error;
      throw new TemporarilyUnavailableError('network_error', 0, 'No answer from the broker.', {
        cause: error,
        retryAfterSeconds: undefined,
      });
    }
    const body: unknown = await response.json().catch(() => undefined);
    if (!response.ok) throw answerError(response, body, loginUrl);
    const token = parseToken(body);
    if (hint !== undefined && token.version <= hint) {
      throw new BrokerError(
        'invalid_response',
        response.status,
        `Version ${token.version} answered for dead version ${hint}.`,
      );
    }
    return token;
  }

  /** One token, retrying what may pass within the budget (README "HTTP contract"). */
  async function requestWithRetries(hint: number | undefined): Promise<AccessToken> {
    const started = clock.now();
    let failures = 0;
    let gatewayErrors = 0;
    for (;;) {
      try {
        return await requestOnce(hint);
      } catch (error) {
        const isGatewayError = error instanceof BrokerError && error.code === 'gateway_error';
        if (isGatewayError) gatewayErrors++;
        const wait =
          error instanceof TemporarilyUnavailableError || (isGatewayError && gatewayErrors === 1)
            ? retryDelayMs(error as BrokerError, failures++)
            : undefined;
        if (wait === undefined || clock.now() - started + wait > budgetMs) throw error;
        await clock.sleep(wait);
      }
    }
  }

  function startFlight(): Promise<AccessToken> {
    // Called only when `current` is unusable: dead, or about to expire, so its version is dead too.
    const known = Math.max(dead, current?.version ?? -1);
    const hint = known >= 0 ? known : undefined;
    const run = async () => {
      const token = await requestWithRetries(hint);
      adopt(token);
      return token;
    };
    const started = (tabs ? tabs.run(run) : run()).finally(() => {
      if (flight === started) flight = undefined;
    });
    return started;
  }

  async function getAccessToken(): Promise<AccessToken> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      if (usable(current)) return current;
      flight ??= startFlight();
      const token = await flight;
      // An invalidation that came while the request ran can make its answer dead already.
      if (usable(token)) return token;
    }
    throw new BrokerError('invalid_response', 0, 'Only dead tokens answered.');
  }

  function invalidate(version: number): void {
    if (!Number.isSafeInteger(version) || version < 0) return;
    dead = Math.max(dead, version);
    tabs?.forget(version);
  }

  async function authorizedFetch(
    input: string | URL | Request,
    init?: RequestInit,
  ): Promise<Response> {
    const token = await getAccessToken();
    const target = input instanceof Request ? input : new URL(input, token.instanceUrl);
    const first = new Request(target, init);
    // A copy made before the first send: its body (even a stream) is still unread.
    const spare = first.clone();
    first.headers.set('authorization', `Bearer ${token.accessToken}`);
    const answer = await fetchFn(first);
    if (answer.status !== 401 || !(await isExpiredSession(answer))) return answer;
    await answer.body?.cancel();
    invalidate(token.version);
    const next = await getAccessToken();
    spare.headers.set('authorization', `Bearer ${next.accessToken}`);
    return fetchFn(spare);
  }

  return {
    getAccessToken,
    invalidate,
    peek: () => current,
    fetch: authorizedFetch,
    close: () => tabs?.close(),
  };
}

function tokenRequest(
  baseUrl: string,
  credential: BrokerCredential,
  fetchFn: typeof fetch,
): TokenRequest {
  if (typeof credential === 'object' && 'iam' in credential) {
    return iamTokenRequest(baseUrl, credential.iam, fetchFn);
  }
  const cookie = credential === 'cookie';
  if (!cookie && (typeof credential?.bearer !== 'string' || credential.bearer === '')) {
    throw new TypeError('credential: "cookie", { bearer } or { iam }');
  }
  const headers: Record<string, string> = cookie
    ? { 'x-csrf': '1' }
    : { authorization: `Bearer ${credential.bearer}` };
  return (hint, signal) =>
    fetchFn(`${baseUrl}/refresh`, {
      method: 'POST',
      // The cookie is the broker's: sent on cross-origin calls too (allowed origins only).
      ...(cookie ? { credentials: 'include' } : {}),
      headers: hint === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      body: hint === undefined ? undefined : JSON.stringify({ version: hint }),
      signal,
    });
}

/** The IAM module, loaded on first use: browsers and bearer callers never load the signer. */
function iamTokenRequest(
  baseUrl: string,
  iam: IamCredentialOptions,
  fetchFn: typeof fetch,
): TokenRequest {
  let signed: Promise<TokenRequest> | undefined;
  return async (hint, signal) => {
    signed ??= import(/* @vite-ignore */ /* webpackIgnore: true */ iamModule()).then(
      (module: typeof import('./iam.js')) => module.signedTokenRequest(baseUrl, iam, fetchFn),
    );
    let request: TokenRequest;
    try {
      request = await signed;
    } catch (error) {
      throw new BrokerError('iam_unavailable', 0, `IAM mode: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return request(hint, signal);
  };
}

declare const __IAM_MODULE__: string | undefined;

/** The IAM module beside this one: `iam.js` in the package (set by its build), else the source. */
function iamModule(): string {
  return typeof __IAM_MODULE__ === 'string'
    ? new URL(__IAM_MODULE__, import.meta.url).href
    : './iam.ts';
}

/** `401` with Salesforce's `INVALID_SESSION_ID` for an expired or revoked access token. */
async function isExpiredSession(response: Response): Promise<boolean> {
  const body: unknown = await response
    .clone()
    .json()
    .catch(() => undefined);
  if (!Array.isArray(body)) return false;
  return body.some(
    (entry: { errorCode?: unknown; message?: unknown } | null) =>
      entry?.errorCode === 'INVALID_SESSION_ID' &&
      // The app is not allowed the REST API: a new token would be refused the same way.
      !/not valid for use with the REST API/i.test(String(entry.message ?? '')),
  );
}

/** `Retry-After` in seconds, as the broker sends it (RFC 9110 s10.2.3 delay-seconds). */
function retryAfterSeconds(response: Response): number | undefined {
  const value = response.headers.get('retry-after')?.trim() ?? '';
  return /^\d{1,6}$/.test(value) ? Number(value) : undefined;
}

function retryDelayMs(error: BrokerError, failures: number): number {
  if (error instanceof TemporarilyUnavailableError && error.retryAfterSeconds !== undefined) {
    return error.retryAfterSeconds * 1000;
  }
  // API Gateway's own answers carry no Retry-After: 1 s, 2 s, 4 s ..., times 0.5-1.5.
  return 1000 * 2 ** Math.min(failures, 5) * (0.5 + Math.random());
}

/**
 * The error for a non-2xx answer: the broker's `{"error","error_description"}`, or API
 * Gateway's own `{"message"}` (README "HTTP contract": match the status, not the text).
 */
export function answerError(response: Response, body: unknown, loginUrl: string): BrokerError {
  const status = response.status;
  const fields = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const code = typeof fields.error === 'string' ? fields.error : undefined;
  const description =
    typeof fields.error_description === 'string'
      ? fields.error_description
      : typeof fields.message === 'string'
        ? `API Gateway: ${fields.message}`
        : `HTTP ${status}`;
  if (code === 'reauthentication_required') {
    return new ReauthenticationRequiredError(code, status, description, { loginUrl });
  }
  if (code === 'invalid_session') {
    return new SessionEndedError(code, status, description, { loginUrl });
  }
  if (status === 403) return new ForbiddenError(code ?? 'forbidden', status, description);
  if (
    code === 'temporarily_unavailable' ||
    (code === undefined && (status === 429 || status === 503))
  ) {
    // API Gateway's own 429 and 503 too: the status tells them apart.
    return new TemporarilyUnavailableError('temporarily_unavailable', status, description, {
      retryAfterSeconds: retryAfterSeconds(response),
    });
  }
  // API Gateway's 500 (the function crashed or timed out): /refresh is safe to repeat once.
  if (code === undefined && status === 500)
    return new BrokerError('gateway_error', status, description);
  return new BrokerError(code ?? 'unexpected_answer', status, description);
}

/** The `/refresh` answer, field by field (README "HTTP contract (v1)"). */
export function parseToken(body: unknown): AccessToken {
  const fields = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const { access_token, instance_url, version, issued_at, token_type, expires_at } = fields;
  const invalid =
    typeof access_token !== 'string' || access_token === ''
      ? 'access_token'
      : typeof instance_url !== 'string' || !/^https?:\/\/[^/]/i.test(instance_url)
        ? 'instance_url'
        : !Number.isSafeInteger(version) || (version as number) < 0
          ? 'version'
          : typeof issued_at !== 'string'
            ? 'issued_at'
            : token_type !== undefined && String(token_type).toLowerCase() !== 'bearer'
              ? 'token_type'
              : undefined;
  if (invalid) {
    throw new BrokerError('invalid_response', 200, `No valid "${invalid}" in the answer.`);
  }
  const expiresAt =
    typeof expires_at === 'number' && Number.isSafeInteger(expires_at) ? expires_at * 1000 : -1;
  return {
    accessToken: access_token as string,
    instanceUrl: instance_url as string,
    version: version as number,
    issuedAt: issued_at as string,
    ...(expiresAt >= 0 ? { expiresAt } : {}),
  };
}
