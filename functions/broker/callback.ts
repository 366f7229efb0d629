import { describeError } from '../shared/describe-error.ts';
import type { BrokerConfig } from './config.ts';
import { endedMark, newConnectionId, sweepAtOf } from './connection.ts';
import type { TokenVault } from './envelope.ts';
import {
  AccessDeniedError,
  BrokerError,
  InvalidRequestError,
  InvalidStateError,
  LoginFailedError,
  TemporarilyUnavailableError,
} from './errors.ts';
import { type IntrospectionClient, introspectExpiry, settleExpiry } from './expiry.ts';
import { issueBrokerCode } from './handoff.ts';
import {
  isWellFormedRandomValue,
  matchesLoginCookie,
  openVerifier,
  stateKeyOf,
} from './login-transaction.ts';
import { endSession, type RevocationClient, revokeOrReport } from './logout.ts';
import { type AppDependencies, type Upstream, upstreamOf } from './orgs.ts';
import type {
  BrokerCodeStore,
  ClientCredentials,
  ClientCredentialsSource,
  Clock,
  DataKey,
  Log,
  LoginTransaction,
  LoginTransactionStore,
  MetricSink,
  SessionRecord,
  SessionStore,
  TokenSet,
} from './ports.ts';
import { logSafeId, newSessionHandle, sessionKeyOf } from './session-handle.ts';
import { NoTimeForUpstreamError, type TokenResponse } from './upstream.ts';
import {
  codeExchangeFailure,
  misconfigurationCode,
  raiseUpstreamAlert,
  withSecretRetry,
} from './upstream-failures.ts';

/** The part of the Salesforce client `/callback` uses. */
export interface CodeExchangeClient extends RevocationClient, IntrospectionClient {
  authorizationCodeGrant(
    credentials: ClientCredentials,
    grant: { code: string; codeVerifier: string; redirectUri: string },
    options?: { timeoutMs?: number | undefined; loginUrl?: URL | undefined },
  ): Promise<TokenResponse>;
}

export interface CallbackDependencies extends AppDependencies {
  transactions: LoginTransactionStore;
  store: Pick<SessionStore, 'create' | 'get' | 'deleteVersion' | 'noteAccessTokenExpiry'>;
  /** Broker codes of the handoff (a registered app's login). */
  codes: Pick<BrokerCodeStore, 'create' | 'get'>;
  vault: TokenVault;
  credentials: ClientCredentialsSource;
  salesforce: CodeExchangeClient;
  clock: Clock;
  log: Log;
  metrics: MetricSink;
  config: Pick<
    BrokerConfig,
    'sessionAbsoluteTtlMs' | 'sessionIdleTtlMs' | 'invocationDeadlineMs'
  > & { callbackUrl: URL } & Partial<
      Pick<BrokerConfig, 'endedConnectionRetentionMs' | 'keepAliveAfterMs' | 'introspection'>
    >;
  /** Replaced in tests. */
  newHandle?: () => string;
  newConnectionId?: () => string;
}

/** The parameters of the redirect back from Salesforce, already parsed strictly. */
export interface CallbackRequest {
  state: string | undefined;
  code: string | undefined;
  /** Salesforce's `error` (e.g. `access_denied`); its description is never used. */
  error: string | undefined;
  /** Every `__Host-tb-login` value the browser sent. */
  loginCookies: readonly string[];
  /** Well-formed session handles the browser sent (replaced by the new session). */
  sessionHandles: readonly string[];
}

export interface CompletedLogin {
  /** The new session handle: goes into the session cookie only. */
  handle: string;
  /** The connection the login created (non-secret). */
  connectionId: string;
  returnTo: string;
  /**
   * For a registered app's login: the broker code to send to its redirect URI (in place
   * of the session cookie) and the app's own `state` to echo.
   */
  handoff?: { code: string; redirectUri: string; appState: string } | undefined;
}

/** Longest authorization code accepted (Salesforce's are under 100 characters). */
const MAX_CODE_LENGTH = 2048;

/**
 * Time kept back from the invocation deadline after the code exchange: the data key, the
 * conditional put and a read-back if its answer is lost.
 */
const STORE_RESERVE_MS = 1_500;
/** The least a store call needs (one DynamoDB round trip with headroom). */
const MIN_STORE_MS = 250;
/**
 * Longest the replaced session's end (read, delete, revoke) may take: the new session is
 * already stored, so this only bounds how long the user waits for the redirect.
 */
const REPLACE_BUDGET_MS = 3_000;
/**
 * Longest the login transaction's consume (a conditional update, and a read-back when its
 * answer was lost) may take: a stalled one must leave the rest of the deadline to the code
 * exchange, whose authorization code Salesforce accepts only briefly.
 */
const CONSUME_BUDGET_MS = 2_000;
/** Revoking a grant nobody will hold (the store failed): best effort, short. */
const ORPHAN_REVOKE_MS = 2_000;
/**
 * Time the login's introspection and its note leave before the deadline: the handoff's
 * broker code and the replaced session's end come after them, and a slow introspection
 * may cost the `expires_at`, never the login.
 */
const AFTER_EXPIRY_RESERVE_MS = 1_500;

/**
 * A `/callback` failure after the login transaction was found: the route sends the browser
 * back to the transaction's `return_to` with `error` and `error_description` in its query
 * (RFC 6749 s4.1.2.1 style), instead of leaving it on a JSON page.
 */
export class LoginRedirectError extends Error {
  readonly returnTo: string;
  /** `access_denied` or `login_failed`. */
  readonly error: 'access_denied' | 'login_failed';
  readonly errorDescription: string;
  /** A registered app's `state`, echoed on its error redirect. */
  readonly appState: string | undefined;
  constructor(returnTo: string, cause: unknown, appState?: string) {
    super('the login failed after its transaction was found', { cause });
    this.name = 'LoginRedirectError';
    this.returnTo = returnTo;
    this.appState = appState;
    this.error = cause instanceof AccessDeniedError ? 'access_denied' : 'login_failed';
    this.errorDescription =
      cause instanceof BrokerError
        ? cause.safeDescription
        : 'The login could not be completed; try again.';
  }
}

/**
 * Finishes the Web Server Flow (README "HTTP contract (v1)"):
 *
 * 1. consumes the login transaction with a conditional update, before anything else,
 *    so a state works at most once whatever happens next;
 * 2. checks its expiry (10 minutes) and the login cookie (hash, constant time);
 *    any failure so far is `invalid_state`;
 * 3. maps an `error` from Salesforce to `access_denied` / `login_failed`;
 * 4. exchanges the code with the client secret and the PKCE verifier (secret re-read once
 *    on `invalid_client`), the response validated field by field by the client;
 * 5. stores the session, envelope-encrypted as version 1, with a conditional put, and
 *    mints its handle; then ends the session this browser held before, if any.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.3
 * @see https://www.rfc-editor.org/rfc/rfc7636#section-4.5
 */
export async function completeLogin(
  deps: CallbackDependencies,
  request: CallbackRequest,
): Promise<CompletedLogin> {
  const deadline = deps.clock.now() + deps.config.invocationDeadlineMs;
  const { transaction, state } = await consumeTransaction(deps, request, deadline);
  try {
    return await finishLogin(deps, request, { transaction, state, deadline });
  } catch (error) {
    throw new LoginRedirectError(transaction.returnTo, error, transaction.handoff?.appState);
  }
}

/**
 * Steps 3 to 5, for a transaction that was found: every failure goes back to `return_to`.
 * The exchange's failures are answered in `codeExchangeFailure` (upstream-failures.ts);
 * a grant obtained but not stored is revoked (`revokeOrphan`), so it neither lingers nor
 * counts against the user's approvals limit. Longer than most on purpose: the steps share
 * one deadline and that revocation, and read in the order they happen.
 */
async function finishLogin(
  deps: CallbackDependencies,
  request: CallbackRequest,
  context: { transaction: LoginTransaction; state: string; deadline: number },
): Promise<CompletedLogin> {
  const { transaction, state, deadline } = context;
  const transactionId = logSafeId(transaction.stateKey);
  const left = () => deadline - deps.clock.now();
  const code = codeOf(deps, request, transactionId);
  const codeVerifier = openVerifier(state, transaction.sealedVerifier);

  // Mint the handle now so the data key (bound to its session key) is generated while
  // Salesforce answers: after the exchange, the only network step left is the put.
  const handle = (deps.newHandle ?? newSessionHandle)();
  const sessionKey = sessionKeyOf(handle);
  const session = logSafeId(sessionKey);
  const dataKeyPromise = deps.vault.generateDataKey(sessionKey, {
    timeoutMs: left() - MIN_STORE_MS,
  });
  dataKeyPromise.catch(() => {});

  // The app and host the login was started with; the exchange, the session and every
  // later call for it use them.
  const upstream = upstreamOf(deps, transaction);
  const response = await exchangeCode(
    { ...deps, upstream },
    { code, codeVerifier },
    transactionId,
    () => left() - STORE_RESERVE_MS,
  );
  // Introspection beside the data key and the put (README "Access token expiry").
  const expiryDeadline = deadline - AFTER_EXPIRY_RESERVE_MS;
  const expiry = introspectExpiry(deps, {
    accessToken: response.accessToken,
    credentials: upstream.credentials.get(),
    loginUrl: upstream.loginUrl,
    deadline: expiryDeadline,
    session,
  });
  const revokeOrphan = async (why: string) => {
    if (!response.refreshToken) return;
    await revokeOrReport(deps, response.refreshToken, {
      session,
      loginUrl: upstream.loginUrl,
      reason: `orphaned: ${why}`,
      timeoutMs: Math.max(1, Math.min(ORPHAN_REVOKE_MS, left())),
    });
  };

  let dataKey: DataKey;
  try {
    dataKey = await dataKeyPromise;
  } catch (error) {
    await revokeOrphan('data key unavailable');
    throw error;
  }
  const record = newSessionRecord(deps, { sessionKey, dataKey, response, upstream, transaction });
  if (!(await storeNewSession(deps, record, { left, transactionId, session }))) {
    await revokeOrphan('session not stored');
    throw new TemporarilyUnavailableError('The session could not be stored; log in again.', 1);
  }
  deps.metrics.count('LoginCompleted');
  deps.log.info('login completed; session created', {
    event: 'login_completed',
    transaction: transactionId,
    session,
    connection: record.connectionId,
    org: logSafeId(response.orgId),
    user: logSafeId(response.userId),
  });
  await settleExpiry(deps, expiry, { sessionKey, version: 1, deadline: expiryDeadline }, session);

  if (transaction.handoff) {
    return handOver(deps, { transaction, record, handle, left, deadline });
  }
  await replacePreviousSessions(deps, request, { transaction, sessionKey, deadline });
  return { handle, connectionId: record.connectionId ?? '', returnTo: transaction.returnTo };
}

/** Step 3: Salesforce's own error ends the login; otherwise the code, checked. */
function codeOf(deps: CallbackDependencies, request: CallbackRequest, transactionId: string) {
  if (request.error !== undefined) {
    const upstreamError = /^[a-z_]{1,64}$/.test(request.error) ? request.error : 'other';
    deps.metrics.count('LoginFailed', 1, { class: upstreamError });
    deps.log.info('Salesforce ended the login with an error', {
      event: 'login_error_from_salesforce',
      transaction: transactionId,
      upstreamError,
    });
    if (request.error === 'access_denied') {
      throw new AccessDeniedError('Access was not granted at Salesforce.');
    }
    throw new LoginFailedError('Salesforce did not complete the login; try again.');
  }
  const code = request.code;
  if (code === undefined || code.length === 0) {
    throw new InvalidRequestError('The callback lacks the "code" parameter.');
  }
  if (code.length > MAX_CODE_LENGTH || !/^[\x21-\x7E]+$/.test(code)) {
    throw new InvalidRequestError('The "code" parameter is malformed.');
  }
  return code;
}

/** The new session at version 1: the tokens sealed, the metadata in clear beside them. */
function newSessionRecord(
  deps: CallbackDependencies,
  input: {
    sessionKey: string;
    dataKey: DataKey;
    response: TokenResponse;
    upstream: Upstream;
    transaction: LoginTransaction;
  },
): SessionRecord {
  const { sessionKey, response, upstream } = input;
  const now = deps.clock.now();
  const absoluteExpiresAt = now + deps.config.sessionAbsoluteTtlMs;
  const tokens: TokenSet = {
    accessToken: response.accessToken,
    // processTokenResponse guarantees it on the code exchange (reason refresh_token_missing).
    refreshToken: response.refreshToken ?? '',
    instanceUrl: response.instanceUrl,
    issuedAt: response.issuedAt,
    scope: response.scope,
    identityUrl: response.id,
  };
  const record: SessionRecord = {
    sessionKey,
    version: 1,
    sealed: deps.vault.seal(input.dataKey, sessionKey, 1, tokens),
    // So that an immediate /refresh returns this token within the reuse window.
    committedAt: now,
    createdAt: now,
    absoluteExpiresAt,
    idleExpiresAt: Math.min(now + deps.config.sessionIdleTtlMs, absoluteExpiresAt),
    orgId: response.orgId,
    userId: response.userId,
    connectionId: (deps.newConnectionId ?? newConnectionId)(),
    instanceUrl: response.instanceUrl,
    scope: response.scope,
    loginHost: upstream.loginHost,
    salesforceApp: deps.apps === undefined ? input.transaction.salesforceApp : upstream.appName,
    siteUrl: response.siteUrl,
  };
  record.sweepAt = sweepAtOf(record, deps.config.keepAliveAfterMs);
  return record;
}

/** The put, read back when its answer was lost; true when the session is stored. */
async function storeNewSession(
  deps: CallbackDependencies,
  record: SessionRecord,
  context: { left: () => number; transactionId: string; session: string },
): Promise<boolean> {
  let created: boolean | 'unknown';
  try {
    created = await deps.store.create(record, { timeoutMs: context.left() - MIN_STORE_MS });
  } catch {
    created = 'unknown';
  }
  if (created === true) return true;
  // A put that landed with its answer lost (a 500, a dropped connection or a timeout
  // after the write) looks like a key collision on the SDK's retry, or like a failure:
  // read it back, and our own ciphertext (random IV) means the session is stored.
  const stored = await storedAsWritten(deps, record, context.left);
  if (stored) {
    deps.log.info('the session write landed but its answer was lost', {
      event: 'create_answer_lost',
      transaction: context.transactionId,
      session: context.session,
    });
  }
  return stored;
}

/**
 * The browser's previous session (from the login cookie's transaction, or a session
 * cookie on this request) is replaced: deleted and its refresh token revoked. The new
 * session is safe; ending the old ones only delays the redirect, so it gets a short budget
 * of its own (a failed revocation is reported, the answer does not change).
 */
async function replacePreviousSessions(
  deps: CallbackDependencies,
  request: CallbackRequest,
  context: { transaction: LoginTransaction; sessionKey: string; deadline: number },
): Promise<void> {
  const previous = new Set<string>();
  if (context.transaction.replacesSessionKey) previous.add(context.transaction.replacesSessionKey);
  for (const old of request.sessionHandles) previous.add(sessionKeyOf(old));
  previous.delete(context.sessionKey);
  const replaceBy = Math.min(context.deadline, deps.clock.now() + REPLACE_BUDGET_MS);
  for (const oldKey of previous) {
    try {
      await endSession(
        deps,
        oldKey,
        'replaced',
        { at: replaceBy, now: () => deps.clock.now() },
        endedMark(deps.config, 'replaced', deps.clock.now()),
      );
    } catch (error) {
      deps.log.warn('the replaced session could not be ended', {
        event: 'replace_failed',
        session: logSafeId(oldKey),
        error: describeError(error, 'name_only'),
      });
    }
  }
}

/**
 * Step 5 of a registered app's login: the session is not the browser's (no cookie, no
 * session replaced) but is handed to the app as a one-time broker code. A code that cannot
 * be stored leaves a session nobody can ever be handed: it is ended (deleted, revoked).
 */
async function handOver(
  deps: CallbackDependencies,
  context: {
    transaction: LoginTransaction;
    record: SessionRecord;
    handle: string;
    left: () => number;
    deadline: number;
  },
): Promise<CompletedLogin> {
  const { transaction, record, handle, left, deadline } = context;
  const handoff = transaction.handoff;
  if (!handoff || !record.connectionId) throw new Error('not a handoff login');
  const code = await issueBrokerCode(
    deps,
    { handoff, connectionId: record.connectionId, sessionKey: record.sessionKey, handle },
    { timeoutMs: Math.max(left() - MIN_STORE_MS, MIN_STORE_MS) },
  );
  if (code === undefined) {
    await endSession(deps, record.sessionKey, 'handoff_failed', {
      at: deadline,
      now: () => deps.clock.now(),
    }).catch((error: unknown) => {
      deps.log.warn('the session of a code that was not stored could not be ended', {
        event: 'replace_failed',
        session: logSafeId(record.sessionKey),
        error: describeError(error, 'name_only'),
      });
    });
    throw new TemporarilyUnavailableError('The login could not be handed to the app; retry.', 1);
  }
  deps.log.info('broker code issued to a registered app', {
    event: 'code_issued',
    connection: record.connectionId,
    client: handoff.clientId,
  });
  return {
    handle,
    connectionId: record.connectionId,
    returnTo: handoff.redirectUri,
    handoff: { code, redirectUri: handoff.redirectUri, appState: handoff.appState },
  };
}

/**
 * Step 1 and 2: the one-time, browser-bound, unexpired transaction for this `state`.
 * Every failure is the same `invalid_state` to the client; the log says which.
 */
async function consumeTransaction(
  deps: CallbackDependencies,
  request: CallbackRequest,
  deadline: number,
): Promise<{ transaction: LoginTransaction; state: string }> {
  const reject = (reason: string, transaction?: string): never => {
    deps.metrics.count('InvalidState', 1, { class: reason });
    deps.log.warn('callback state rejected', { event: 'invalid_state', reason, transaction });
    throw new InvalidStateError(
      'This login is unknown, expired, already used or was started in another browser; start it again.',
    );
  };
  const state = request.state;
  if (state === undefined || state === '') return reject('missing');
  if (!isWellFormedRandomValue(state)) return reject('malformed');
  const stateKey = stateKeyOf(state);
  const transactionId = logSafeId(stateKey);
  // Consumed first, whatever comes next: a replay, or a second tab racing this one,
  // finds nothing.
  // Its share of the deadline: what the code exchange and the session put need is left.
  const transaction = await deps.transactions.consume(stateKey, {
    timeoutMs: Math.min(CONSUME_BUDGET_MS, deadline - deps.clock.now()),
  });
  if (!transaction) return reject('unknown_or_replayed', transactionId);
  if (deps.clock.now() >= transaction.expiresAt) return reject('expired', transactionId);
  if (!matchesLoginCookie(request.loginCookies, transaction.cookieHash)) {
    return reject(
      request.loginCookies.length === 0 ? 'cookie_missing' : 'cookie_mismatch',
      transactionId,
    );
  }
  return { transaction, state };
}

/** Whether the session item holds exactly what we wrote (a consistent read). */
async function storedAsWritten(
  deps: CallbackDependencies,
  record: SessionRecord,
  left: () => number,
): Promise<boolean> {
  try {
    const stored = await deps.store.get(record.sessionKey, {
      timeoutMs: Math.max(left(), MIN_STORE_MS),
    });
    return (
      stored !== undefined &&
      stored.version === record.version &&
      Buffer.from(stored.sealed.ciphertext).equals(Buffer.from(record.sealed.ciphertext))
    );
  } catch {
    return false;
  }
}

/**
 * Step 4: the code exchange within what `timeLeft` allows, with one secret re-read on
 * `invalid_client` (rotation).
 */
async function exchangeCode(
  deps: CallbackDependencies & { upstream: Upstream },
  pkce: { code: string; codeVerifier: string },
  transaction: string,
  timeLeft: () => number,
): Promise<TokenResponse> {
  const grant = { ...pkce, redirectUri: deps.config.callbackUrl.toString() };
  try {
    return await withSecretRetry(
      { credentials: deps.upstream.credentials, log: deps.log },
      (credentials) => {
        const timeoutMs = timeLeft();
        if (timeoutMs < MIN_STORE_MS) {
          throw new NoTimeForUpstreamError('No time left in the invocation for the code exchange');
        }
        return deps.salesforce.authorizationCodeGrant(credentials, grant, {
          timeoutMs,
          loginUrl: deps.upstream.loginUrl,
        });
      },
      { transaction, salesforceApp: deps.upstream.appName },
    );
  } catch (error) {
    const code = misconfigurationCode(error);
    if (code !== undefined) {
      await raiseUpstreamAlert(deps, {
        app: deps.upstream.appName,
        upstreamError: code,
        at: deps.clock.now(),
      });
    }
    throw codeExchangeFailure(deps, error, transaction);
  }
}
