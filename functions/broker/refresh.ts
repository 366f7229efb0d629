import { describeError } from '../shared/describe-error.ts';
import type { BrokerConfig } from './config.ts';
import { endedMark, isLiveSession, sweepAtOf } from './connection.ts';
import type { TokenVault } from './envelope.ts';
import {
  InvalidRequestError,
  InvalidSessionError,
  ReauthenticationRequiredError,
  SessionIntegrityError,
  TemporarilyUnavailableError,
  UPSTREAM_FORBIDDEN_DESCRIPTION,
  UPSTREAM_MISCONFIGURED_DESCRIPTION,
  UpstreamForbiddenError,
  UpstreamMisconfiguredError,
} from './errors.ts';
import { type IntrospectionClient, introspectExpiry, settleExpiry } from './expiry.ts';
import { type CommitResult, LeaseHold } from './lease-hold.ts';
import { revokeOrReport } from './logout.ts';
import { type AppDependencies, upstreamOf } from './orgs.ts';
import type {
  ClientCredentials,
  ClientCredentialsSource,
  Clock,
  DataKey,
  EndedReason,
  Log,
  MetricSink,
  RefreshFailureKind,
  SessionRecord,
  SessionStore,
  TokenSet,
} from './ports.ts';
import { decideRefreshStep, LEASE_SKEW_MS, type RefreshStep } from './refresh-decision.ts';
import { logSafeId, sessionKeyOf } from './session-handle.ts';
import { NoTimeForUpstreamError, type TokenResponse } from './upstream.ts';
import { raiseUpstreamAlert, refreshFailure, withSecretRetry } from './upstream-failures.ts';

/** The part of the Salesforce client the refresh path uses. */
export interface RefreshGrantClient extends IntrospectionClient {
  refreshTokenGrant(
    credentials: ClientCredentials,
    refreshToken: string,
    options?: { timeoutMs?: number | undefined; loginUrl?: URL | undefined },
  ): Promise<TokenResponse>;
  /** RFC 7009; used for a token rotated for a session that a logout ended meanwhile. */
  revoke?(
    token: string,
    options?: { timeoutMs?: number | undefined; loginUrl?: URL | undefined },
  ): Promise<void>;
}

export interface RefreshDependencies extends AppDependencies {
  store: SessionStore;
  vault: TokenVault;
  credentials: ClientCredentialsSource;
  salesforce: RefreshGrantClient;
  clock: Clock;
  log: Log;
  metrics: MetricSink;
  config: Pick<BrokerConfig, 'reuseWindowMs' | 'leaseMs' | 'waitBudgetMs' | 'sessionIdleTtlMs'> &
    Partial<
      Pick<
        BrokerConfig,
        | 'endedConnectionRetentionMs'
        | 'failingAfterMs'
        | 'keepAliveAfterMs'
        | 'introspection'
        | 'refreshMarginMs'
      >
    >;
  /** Replaced in tests; defaults to a timer. */
  sleep?: (milliseconds: number) => Promise<void>;
  random?: () => number;
  newLeaseOwner?: () => string;
}

/** What `/refresh` returns to its caller. */
export interface FreshAccessToken {
  accessToken: string;
  instanceUrl: string;
  issuedAt: string;
  version: number;
  /**
   * `refreshed`: this call reached Salesforce; `coalesced`: it waited for another call and
   * got its result; `reused`: the stored token was already what it needed (newer than its
   * hint, or inside the reuse window), no wait and no upstream call.
   */
  outcome: 'refreshed' | 'coalesced' | 'reused';
  /** The Experience Cloud site of the login, when Salesforce named one. */
  siteUrl?: string | undefined;
  /**
   * When the access token expires (epoch ms), from introspection (README "Access token
   * expiry"); a lower bound, absent when not known.
   */
  expiresAt?: number | undefined;
}

export interface RefreshOptions {
  /**
   * The sweep's keep-alive (README "Keep-alive and expiry"), not a use: the commit keeps the
   * session's `idleExpiresAt`, so a connection nobody uses still ends at the idle TTL.
   */
  keepAlive?: boolean | undefined;
}

/** Time kept back from the lease for the fenced commit after the upstream call. */
const COMMIT_RESERVE_MS = 1500;
/** A caller takes the lease only if its invocation has this long left for Salesforce. */
const MIN_UPSTREAM_MS = 1000;
const FIRST_POLL_MS = 25;
const MAX_POLL_MS = 400;

/**
 * Returns a fresh Salesforce access token for the session behind `handle`, single-flight
 * across any number of concurrent invocations (README "The refresh path"):
 *
 * - no `versionHint`: a token committed within the reuse window is returned as is;
 *   otherwise the call refreshes;
 * - `versionHint` equal to the stored version: that token is dead, refresh;
 * - `versionHint` lower than the stored version: return the stored token, no upstream call.
 *
 * Exactly one caller (the lease holder) reaches Salesforce; the others poll with
 * consistent reads until the version moves, the holder records a failure, or the budget
 * ends.
 */
export async function refreshSession(
  deps: RefreshDependencies,
  handle: string,
  versionHint?: number,
): Promise<FreshAccessToken> {
  return refreshStoredSession(deps, sessionKeyOf(handle), versionHint);
}

/**
 * The ends after which a handle answers `reauthentication_required`: Salesforce, the
 * service API or the sweep (past the broker's idle or absolute lifetime) ended the grant,
 * not its holder. A handle its own holder let go of (a
 * logout, a login that replaced it, a replayed broker code) answers `invalid_session`, as
 * before tombstones existed; its tombstone is there for the `Connection Ended` event and
 * `GET /connections/{id}`.
 */
const REAUTHENTICATION_REASONS: ReadonlySet<EndedReason> = new Set([
  'reauthentication_required',
  'service_api',
  'expired',
]);

/**
 * The answer for a session that is gone: `reauthentication_required` when its tombstone
 * says Salesforce or the service API ended it (no upstream call: the grant is dead),
 * otherwise `invalid_session`. The tombstone only explains: a failed read answers as if
 * there were none.
 */
async function endedSessionError(
  deps: Pick<RefreshDependencies, 'store' | 'log'>,
  sessionKey: string,
): Promise<Error> {
  const tombstone = await deps.store.findEnded(sessionKey).catch((error: unknown) => {
    deps.log.warn('tombstone read failed', {
      session: logSafeId(sessionKey),
      error: describeError(error),
    });
    return undefined;
  });
  if (tombstone !== undefined && REAUTHENTICATION_REASONS.has(tombstone.reason)) {
    return new ReauthenticationRequiredError('This connection has ended; log in again.');
  }
  return new InvalidSessionError('The session does not exist or has ended.');
}

/**
 * {@link refreshSession} for a session found another way (the service API finds it by
 * connection id): the same loop on the same item, so callers with a handle and callers
 * with a connection id share one lease and one upstream call.
 *
 * The loop, like Powertools' idempotency handler: try to take the lease (the first time,
 * or when the rules say the lease is free); otherwise read the session and let
 * {@link decideRefreshStep} (pure, table-tested) say what the stored state means for this
 * caller; perform that step. {@link RefreshCall} holds what the caller has learnt so far.
 */
export async function refreshStoredSession(
  deps: RefreshDependencies,
  sessionKey: string,
  versionHint?: number,
  options: RefreshOptions = {},
): Promise<FreshAccessToken> {
  const call = new RefreshCall(deps, sessionKey, versionHint, options.keepAlive === true);
  for (;;) {
    const held = await call.tryToAcquire();
    if (held) return call.holdLease(held.record, held.owner, held.leaseUntil);
    const step = await call.readAndDecide();
    switch (step.kind) {
      case 'ended':
        throw await endedSessionError(deps, sessionKey);
      case 'hint_too_new':
        throw new InvalidRequestError(
          '"version" is newer than the session; send the version you hold.',
        );
      case 'hold':
        deps.log.info('the lease acquire landed but its answer was lost', {
          event: 'acquire_answer_lost',
          session: call.session,
        });
        return call.holdLease(step.record, step.owner, step.leaseUntil);
      case 'return_stored':
        return call.returnStored(step.record);
      case 'share_failure':
        throw failureFor(step.failure, step.retryAfterSeconds);
      case 'give_up':
        throw new TemporarilyUnavailableError(
          'A refresh of this session is still in progress; retry shortly.',
          step.retryAfterSeconds,
        );
      case 'acquire':
        call.acquireNext();
        break;
      case 'wait':
        await call.wait(step.maxSleepMs);
    }
  }
}

/**
 * One caller's state across the refresh loop: when it started, the end of its own
 * invocation (the lease lasts as long as the function timeout, so the invocation is killed
 * around `startedAt + leaseMs`: a waiter that takes the lease late must fit its upstream
 * call and commit in what is left of its own life), the first version it saw, whether it
 * waited, its latest acquire attempt (whose answer may have been lost) and its poll delay.
 */
class RefreshCall {
  readonly session: string;
  readonly #deps: RefreshDependencies;
  readonly #sessionKey: string;
  readonly #versionHint: number | undefined;
  readonly #sleep: (milliseconds: number) => Promise<void>;
  readonly #startedAt: number;
  readonly #invocationEnd: number;
  readonly #keepAlive: boolean;
  #firstSeenVersion: number | undefined;
  #waited = false;
  #acquireNext = true;
  #pollDelay = FIRST_POLL_MS;
  #lastAttempt: { owner: string; leaseUntil: number } | undefined;

  constructor(
    deps: RefreshDependencies,
    sessionKey: string,
    versionHint: number | undefined,
    keepAlive: boolean,
  ) {
    this.#deps = deps;
    this.#keepAlive = keepAlive;
    this.#sessionKey = sessionKey;
    this.#versionHint = versionHint;
    this.session = logSafeId(sessionKey);
    this.#sleep = deps.sleep ?? defaultSleep;
    this.#startedAt = deps.clock.now();
    this.#invocationEnd = this.#startedAt + deps.config.leaseMs;
  }

  /** One conditional acquire, when it is due and this invocation can still hold a lease. */
  async tryToAcquire(): Promise<
    { record: SessionRecord; owner: string; leaseUntil: number } | undefined
  > {
    if (!this.#acquireNext || !this.#canHold(this.#deps.clock.now())) return undefined;
    const attempt = newAttempt(this.#deps);
    this.#lastAttempt = attempt;
    const result = await acquireLease(this.#deps, this.#sessionKey, attempt, this.#versionHint);
    if (!result.acquired) return undefined;
    if (this.#waited) {
      this.#deps.metrics.timing('LeaseWaitMs', this.#deps.clock.now() - this.#startedAt);
    }
    return {
      record: result.record,
      owner: attempt.owner,
      leaseUntil: result.record.leaseUntil ?? attempt.leaseUntil,
    };
  }

  /** A consistent read, and what it means for this caller. */
  async readAndDecide(): Promise<RefreshStep> {
    const record = await this.#deps.store.get(this.#sessionKey);
    const now = this.#deps.clock.now();
    this.#firstSeenVersion ??= record?.version;
    return decideRefreshStep(record, {
      now,
      startedAt: this.#startedAt,
      waitDeadline: this.#startedAt + this.#deps.config.waitBudgetMs,
      versionHint: this.#versionHint,
      firstSeenVersion: this.#firstSeenVersion,
      lastAttempt: this.#lastAttempt,
      canHold: this.#canHold(now),
      reuseWindowMs: this.#deps.config.reuseWindowMs,
      refreshMarginMs: this.#deps.config.refreshMarginMs,
    });
  }

  holdLease(record: SessionRecord, owner: string, leaseUntil: number): Promise<FreshAccessToken> {
    const { store, clock, log } = this.#deps;
    const hold = new LeaseHold(
      {
        store,
        clock,
        log,
        sleep: this.#sleep,
        failingAfterMs: this.#deps.config.failingAfterMs,
      },
      {
        record,
        owner,
        leaseUntil: Math.min(leaseUntil, this.#invocationEnd),
        session: this.session,
      },
    );
    return refreshAsLeaseHolder(this.#deps, hold, this.session, this.#keepAlive);
  }

  returnStored(record: SessionRecord): Promise<FreshAccessToken> {
    if (this.#waited) {
      this.#deps.metrics.count('RefreshCoalesced');
      this.#deps.metrics.timing('LeaseWaitMs', this.#deps.clock.now() - this.#startedAt);
    }
    return openStored(this.#deps, record, this.#waited ? 'coalesced' : 'reused', this.session);
  }

  acquireNext(): void {
    this.#acquireNext = true;
  }

  /** Full jitter keeps waiters from polling in lockstep; the delay doubles up to a cap. */
  async wait(maxSleepMs: number): Promise<void> {
    this.#acquireNext = false;
    this.#waited = true;
    const random = this.#deps.random ?? Math.random;
    await this.#sleep(Math.max(1, Math.min(random() * this.#pollDelay, maxSleepMs)));
    this.#pollDelay = Math.min(this.#pollDelay * 2, MAX_POLL_MS);
  }

  #canHold(now: number): boolean {
    return now + MIN_UPSTREAM_MS + COMMIT_RESERVE_MS <= this.#invocationEnd;
  }
}

/** A fresh lease owner and the lease end it asks for. */
function newAttempt(deps: RefreshDependencies): { owner: string; leaseUntil: number } {
  const owner = (deps.newLeaseOwner ?? (() => crypto.randomUUID()))();
  return { owner, leaseUntil: deps.clock.now() + deps.config.leaseMs };
}

/** One conditional acquire (see the timeline in the DynamoDB session store). */
function acquireLease(
  deps: RefreshDependencies,
  sessionKey: string,
  attempt: { owner: string; leaseUntil: number },
  versionHint: number | undefined,
) {
  const now = deps.clock.now();
  return deps.store.tryAcquireLease({
    sessionKey,
    owner: attempt.owner,
    now,
    leaseEndedBy: now - LEASE_SKEW_MS,
    leaseUntil: attempt.leaseUntil,
    expectedVersion: versionHint,
    // "+ 1": a token committed exactly one window ago is stale here as it is for the
    // waiter's reuse check; otherwise neither applies and the loop spins.
    committedBefore: versionHint === undefined ? now - deps.config.reuseWindowMs + 1 : undefined,
    // ... and inside the window, a token about to expire is refreshed all the same.
    expiringBy:
      versionHint === undefined && deps.config.refreshMarginMs !== undefined
        ? now + deps.config.refreshMarginMs
        : undefined,
  });
}

function failureFor(kind: RefreshFailureKind | undefined, retryAfterSeconds: number): Error {
  switch (kind) {
    case 'misconfigured':
      return new UpstreamMisconfiguredError(UPSTREAM_MISCONFIGURED_DESCRIPTION);
    case 'forbidden':
      return new UpstreamForbiddenError(UPSTREAM_FORBIDDEN_DESCRIPTION);
    case 'integrity':
      return new SessionIntegrityError('The stored session is damaged.');
    default:
      return new TemporarilyUnavailableError(
        'Salesforce is temporarily unavailable.',
        Math.max(retryAfterSeconds, 5),
      );
  }
}

async function openStored(
  deps: RefreshDependencies,
  record: SessionRecord,
  outcome: FreshAccessToken['outcome'],
  session: string,
): Promise<FreshAccessToken> {
  const tokens = await openOrReport(deps, record, session);
  return {
    accessToken: tokens.accessToken,
    instanceUrl: tokens.instanceUrl,
    issuedAt: tokens.issuedAt,
    version: record.version,
    outcome,
    ...(record.siteUrl === undefined ? {} : { siteUrl: record.siteUrl }),
    ...(record.accessTokenExpiresAt === undefined
      ? {}
      : { expiresAt: record.accessTokenExpiresAt }),
  };
}

async function openOrReport(
  deps: RefreshDependencies,
  record: SessionRecord,
  session: string,
): Promise<TokenSet> {
  return (await openWithKeyOrReport(deps, record, session)).tokens;
}

async function openWithKeyOrReport(
  deps: RefreshDependencies,
  record: SessionRecord,
  session: string,
): Promise<{ tokens: TokenSet; dataKey: DataKey }> {
  try {
    return await deps.vault.openWithKey(record.sealed, record.sessionKey, record.version);
  } catch (error) {
    if (error instanceof SessionIntegrityError) {
      deps.metrics.count('IntegrityError');
      deps.log.error('session integrity check failed', {
        event: 'integrity_error',
        alarm: true,
        session,
        version: record.version,
        reason: error.message,
      });
    }
    throw error;
  }
}

/**
 * The one caller holding the lease: decrypt, call Salesforce (with `GenerateDataKey`
 * running alongside), then the fenced commit. Every network step ends inside the lease:
 *
 *   acquire                                                      leaseUntil
 *   |--decrypt--|------- Salesforce -------|-key-|--commit(s)--|-read-|
 *               |<-- lease - COMMIT_RESERVE|     |<- lease - READ_BACK_RESERVE
 *
 * so a stalled call can never run on after another caller has taken the lease over and
 * sent the same refresh token. The upstream failures are answered in `refreshFailure`
 * (upstream-failures.ts), the commit's outcomes in {@link answerCommit}.
 */
async function refreshAsLeaseHolder(
  deps: RefreshDependencies,
  hold: LeaseHold,
  session: string,
  keepAlive: boolean,
): Promise<FreshAccessToken> {
  const { clock } = deps;
  const { record } = hold;
  let current: TokenSet;
  let currentDataKey: DataKey;
  try {
    ({ tokens: current, dataKey: currentDataKey } = await openWithKeyOrReport(
      deps,
      record,
      session,
    ));
  } catch (error) {
    await hold.release(error instanceof SessionIntegrityError ? 'integrity' : 'unavailable');
    throw error;
  }

  // Overlap the new data key with the upstream call: after Salesforce answers, the only
  // network step left is the commit.
  const dataKeyPromise = deps.vault.generateDataKey(hold.sessionKey, {
    timeoutMs: hold.timeBeforeCommit(),
  });
  dataKeyPromise.catch(() => {});

  const upstreamStartedAt = clock.now();
  let response: TokenResponse;
  try {
    response = await callSalesforce(deps, record, current.refreshToken, hold.leaseUntil);
  } catch (error) {
    return refreshFailure(deps, error, {
      session,
      release: (kind, keepLease) => hold.release(kind, keepLease),
      deleteSession: (upstream) =>
        hold.deleteSession({
          ...endedMark(deps.config, 'reauthentication_required', clock.now()),
          upstreamError: upstream.error,
          upstreamDescription: upstream.description,
        }),
      raiseAlert: (upstreamError) =>
        raiseUpstreamAlert(deps, {
          app: upstreamOf(deps, record).appName,
          upstreamError,
          at: clock.now(),
          connectionId: record.connectionId,
          orgId: record.orgId,
          userId: record.userId,
        }),
      newerVersion: async () => {
        const latest = await deps.store.get(hold.sessionKey);
        if (latest && latest.version > record.version && isLiveSession(latest, clock.now())) {
          return openStored(deps, latest, 'coalesced', session);
        }
        return undefined;
      },
    });
  } finally {
    deps.metrics.timing('UpstreamLatencyMs', clock.now() - upstreamStartedAt);
  }

  // Introspection beside the commit: the answer waits for the slower of the two.
  // A keep-alive hands its token to no one, so it does not ask.
  const upstream = upstreamOf(deps, record);
  const expiry = keepAlive
    ? Promise.resolve(undefined)
    : introspectExpiry(deps, {
        accessToken: response.accessToken,
        credentials: upstream.credentials.get(),
        loginUrl: upstream.loginUrl,
        deadline: hold.leaseUntil,
        session,
      });
  const answer = await commitRefreshed(deps, {
    hold,
    current,
    currentDataKey,
    dataKeyPromise,
    response,
    keepAlive,
  });
  if (answer.outcome !== 'refreshed') return answer;
  const expiresAt = await settleExpiry(
    deps,
    expiry,
    { sessionKey: hold.sessionKey, version: answer.version, deadline: hold.leaseUntil },
    session,
  );
  return expiresAt === undefined ? answer : { ...answer, expiresAt };
}

/**
 * After Salesforce answered: the new token set (the current refresh token stays when
 * Salesforce did not rotate), sealed under the fresh data key or, when KMS is late, the
 * one just decrypted (Salesforce may have rotated: KMS must not be able to lose that),
 * and the fenced commit.
 */
async function commitRefreshed(
  deps: RefreshDependencies,
  context: {
    hold: LeaseHold;
    current: TokenSet;
    currentDataKey: DataKey;
    dataKeyPromise: Promise<DataKey>;
    response: TokenResponse;
    /** A keep-alive keeps the idle expiry; a use moves it. */
    keepAlive: boolean;
  },
): Promise<FreshAccessToken> {
  const { hold, current, response } = context;
  const { record } = hold;
  const session = logSafeId(hold.sessionKey);
  const next: TokenSet = {
    accessToken: response.accessToken,
    refreshToken: response.refreshToken ?? current.refreshToken,
    instanceUrl: response.instanceUrl,
    issuedAt: response.issuedAt,
    scope: response.scope || current.scope,
    identityUrl: response.id,
  };
  const rotatedTo =
    response.refreshToken !== undefined && response.refreshToken !== current.refreshToken
      ? response.refreshToken
      : undefined;
  const dataKey = await withinMs(context.dataKeyPromise, hold.timeBeforeCommit()).catch(
    (error: unknown) => {
      deps.log.warn('no fresh data key; sealing under the current one', {
        event: 'data_key_reused',
        session,
        error: describeError(error),
      });
      return context.currentDataKey;
    },
  );
  const version = record.version + 1;
  const committedAt = deps.clock.now();
  const idleExpiresAt = context.keepAlive
    ? record.idleExpiresAt
    : Math.min(committedAt + deps.config.sessionIdleTtlMs, record.absoluteExpiresAt);
  const result = await hold.commit({
    sealed: deps.vault.seal(dataKey, hold.sessionKey, version, next),
    committedAt,
    idleExpiresAt,
    instanceUrl: next.instanceUrl,
    scope: next.scope,
    sweepAt: sweepAtOf(
      { committedAt, idleExpiresAt, absoluteExpiresAt: record.absoluteExpiresAt },
      deps.config.keepAliveAfterMs,
    ),
  });
  return answerCommit(deps, { hold, result, next, rotatedTo, session });
}

/** What the caller gets for each way the commit ended (see {@link LeaseHold.commit}). */
async function answerCommit(
  deps: RefreshDependencies,
  context: {
    hold: LeaseHold;
    result: CommitResult;
    next: TokenSet;
    /** The refresh token Salesforce rotated to, if it rotated. */
    rotatedTo: string | undefined;
    session: string;
  },
): Promise<FreshAccessToken> {
  const { hold, result, next, rotatedTo, session } = context;
  const version = hold.record.version + 1;
  const rotated = rotatedTo !== undefined;
  if (result.outcome === 'committed') {
    deps.metrics.count('RefreshCommitted');
    deps.log.info('session refreshed', { session, version, rotated });
    return {
      accessToken: next.accessToken,
      instanceUrl: next.instanceUrl,
      issuedAt: next.issuedAt,
      version,
      outcome: 'refreshed',
      ...(hold.record.siteUrl === undefined ? {} : { siteUrl: hold.record.siteUrl }),
    };
  }
  const { latest } = result;
  const movedOn =
    latest !== 'unknown' &&
    latest !== undefined &&
    isLiveSession(latest, deps.clock.now()) &&
    latest.version > hold.record.version;
  if (result.outcome === 'failed') {
    reportRotationLost(deps, session, rotated, 'commit failed', result.error);
    await hold.release('unavailable');
    // Out of time (or the store kept failing), but another holder may have moved on.
    if (movedOn) return openStored(deps, latest, 'coalesced', session);
    throw new TemporarilyUnavailableError('The session store is temporarily unavailable.', 2, {
      cause: result.error,
    });
  }
  // Fenced: a logout deleted the session (it wins), or our lease lapsed and another
  // holder moved on.
  if (latest === 'unknown') {
    reportRotationLost(deps, session, rotated, 'commit fenced, read-back failed', undefined);
    throw new TemporarilyUnavailableError('The refresh did not complete; retry shortly.', 1);
  }
  if (!latest || !isLiveSession(latest, deps.clock.now())) {
    deps.log.info('session ended while refreshing; not resurrected', { session });
    // The logout revoked the refresh token it found; the one Salesforce just rotated to
    // would otherwise stay valid with no session to end it.
    if (rotatedTo) await revokeOrphan(deps, hold.record, rotatedTo, session);
    throw new InvalidSessionError('The session has ended.');
  }
  reportRotationLost(deps, session, rotated, 'commit fenced', undefined);
  if (movedOn) return openStored(deps, latest, 'coalesced', session);
  throw new TemporarilyUnavailableError('The refresh did not complete; retry shortly.', 1);
}

/** `promise`, or a rejection once `milliseconds` have passed. */
function withinMs<T>(promise: Promise<T>, milliseconds: number): Promise<T> {
  if (milliseconds <= 0) return Promise.reject(new Error('no time left'));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`not ready within ${milliseconds} ms`)),
      milliseconds,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Best effort (see {@link revokeOrReport}): the caller's answer does not change. */
async function revokeOrphan(
  deps: RefreshDependencies,
  record: SessionRecord,
  refreshToken: string,
  session: string,
): Promise<void> {
  const { revoke } = deps.salesforce;
  if (!revoke) return;
  const revoked = await revokeOrReport(
    { ...deps, salesforce: { revoke: revoke.bind(deps.salesforce) } },
    refreshToken,
    {
      session,
      reason: 'orphaned',
      timeoutMs: COMMIT_RESERVE_MS,
      loginUrl: upstreamOf(deps, record).loginUrl,
    },
  );
  if (revoked) {
    deps.log.info('revoked the refresh token rotated for an ended session', {
      event: 'orphan_revoked',
      session,
    });
  }
}

/**
 * One upstream refresh, within the lease, at the session's login host with its app's
 * credentials; on `invalid_client` that app's secret (only) is re-read once.
 */
async function callSalesforce(
  deps: RefreshDependencies,
  record: SessionRecord,
  refreshToken: string,
  leaseUntil: number,
): Promise<TokenResponse> {
  const upstream = upstreamOf(deps, record);
  const retryDeps = { credentials: upstream.credentials, log: deps.log };
  return withSecretRetry(retryDeps, async (credentials, rejected) => {
    const timeoutMs = leaseUntil - deps.clock.now() - COMMIT_RESERVE_MS;
    if (rejected) {
      // The retry after a rotated secret: any time left is worth a try.
      if (timeoutMs <= 0) throw rejected;
    } else if (timeoutMs < MIN_UPSTREAM_MS) {
      // The acquire, the decrypt or the secret read ate the lease: another caller may own it
      // by now. A request sent anyway could reach Salesforce beside theirs.
      throw new NoTimeForUpstreamError('No time left in the lease for the upstream call');
    }
    return deps.salesforce.refreshTokenGrant(credentials, refreshToken, {
      timeoutMs,
      loginUrl: upstream.loginUrl,
    });
  });
}

function reportRotationLost(
  deps: RefreshDependencies,
  session: string,
  rotated: boolean,
  reason: string,
  error: unknown,
): void {
  if (!rotated) return;
  deps.metrics.count('RotationLost');
  deps.log.error('a rotated refresh token could not be stored', {
    event: 'rotation_lost',
    alarm: true,
    session,
    reason,
    error: describeError(error),
  });
}

function defaultSleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}
