/**
 * The one home of upstream (token endpoint) failures in the domain: the secret re-read on
 * `invalid_client`, the `Retry-After` clamp, and for each kind of `UpstreamFailure` what
 * `/refresh` and `/callback` count, log (level, event, alarm) and answer. The refresh and
 * the code exchange answer differently (a dead refresh token ends a session, a dead code
 * only this login), so each has its own `switch`, side by side here.
 */
import {
  LoginFailedError,
  ReauthenticationRequiredError,
  TemporarilyUnavailableError,
  UPSTREAM_FORBIDDEN_DESCRIPTION,
  UPSTREAM_MISCONFIGURED_DESCRIPTION,
  UpstreamForbiddenError,
  UpstreamMisconfiguredError,
} from './errors.ts';
import type {
  AlertStore,
  ClientCredentials,
  ClientCredentialsSource,
  Log,
  MetricSink,
  RefreshFailureKind,
  UpstreamAlert,
} from './ports.ts';
import { UpstreamFailure } from './upstream.ts';

/** `Upstream Misconfigured` is raised at most once per connected app in this long. */
export const UPSTREAM_ALERT_QUIET_MS = 5 * 60_000;
/** The alert's write gets this long; it never holds the answer up for longer. */
export const UPSTREAM_ALERT_DEADLINE_MS = 300;

/**
 * The Salesforce error code of a failure that says the connected app is misconfigured
 * (`invalid_client`, a rejected request such as `redirect_uri_mismatch`, no refresh
 * token granted); `undefined` for every other failure.
 */
export function misconfigurationCode(error: unknown): string | undefined {
  if (!(error instanceof UpstreamFailure)) return undefined;
  if (error.kind === 'invalid_client' || error.kind === 'request_rejected') {
    return error.upstreamError ?? error.kind;
  }
  if (error.kind === 'invalid_response' && error.reason === 'refresh_token_missing') {
    return 'refresh_token_missing';
  }
  return undefined;
}

/**
 * Records `Upstream Misconfigured` for the app (the event comes from the item's write,
 * README "Events"), under {@link UPSTREAM_ALERT_DEADLINE_MS}; a failure is only logged:
 * the request answers the same either way.
 */
export async function raiseUpstreamAlert(
  deps: { alerts?: AlertStore | undefined; log: Log },
  alert: UpstreamAlert,
): Promise<void> {
  if (deps.alerts === undefined) return;
  try {
    await deps.alerts.raise(alert, UPSTREAM_ALERT_QUIET_MS, {
      timeoutMs: UPSTREAM_ALERT_DEADLINE_MS,
    });
  } catch (error) {
    deps.log.warn('the upstream alert could not be recorded', {
      event: 'upstream_alert_failed',
      salesforceApp: alert.app,
      error: error instanceof Error ? error.name : 'unknown',
    });
  }
}

/** Longest `Retry-After` the broker passes on, in seconds. */
const MAX_RETRY_AFTER_SECONDS = 120;

/** A `Retry-After` for clients: whole seconds, at least 1, at most 2 minutes. */
export function clampRetryAfter(seconds: number): number {
  return Math.min(Math.max(Math.round(seconds), 1), MAX_RETRY_AFTER_SECONDS);
}

/**
 * `call` with the cached client credentials; when the provider answers `invalid_client`
 * (the secret may have been rotated since it was cached), re-reads the secret once and
 * calls again. `call` gets the failure of the first attempt on the second one, so it can
 * give up with that failure when no time is left. `context` goes into the retry's log line.
 */
export async function withSecretRetry<T>(
  deps: { credentials: ClientCredentialsSource; log: Log },
  call: (credentials: ClientCredentials, rejected?: UpstreamFailure) => Promise<T>,
  context: Record<string, unknown> = {},
): Promise<T> {
  const first = await deps.credentials.get();
  try {
    return await call(first);
  } catch (error) {
    if (!(error instanceof UpstreamFailure) || error.kind !== 'invalid_client') throw error;
    deps.log.warn('Salesforce rejected the client credentials; re-reading the secret once', {
      event: 'invalid_client_retry',
      ...context,
    });
    return call(await deps.credentials.reload(), error);
  }
}

/** What the refresh path does to the session for a failure; the mapping decides which. */
export interface RefreshFailureEffects<T> {
  /** The log-safe session id. */
  session: string;
  /**
   * The fenced delete: only while this caller still holds the lease. `upstream` is what
   * Salesforce said, for the tombstone and its `Connection Ended` event.
   */
  deleteSession(upstream: {
    error: string | undefined;
    description: string | undefined;
  }): Promise<boolean>;
  /** Records `Upstream Misconfigured` with Salesforce's error code; never throws. */
  raiseAlert?(upstreamError: string | undefined): Promise<void>;
  /** Gives the lease up (or keeps it) recording the failure for the waiters. */
  release(kind: RefreshFailureKind, keepLease?: boolean): Promise<void>;
  /** The version a concurrent holder committed meanwhile, opened; `undefined` if none. */
  newerVersion(): Promise<T | undefined>;
}

/**
 * The lease holder's answer to a failed refresh call (README "The refresh path"). Throws the
 * domain error, except when Salesforce's concurrency block hides a commit made meanwhile.
 * Long on purpose: one case per kind, read as a table (metric, log event and level, what
 * happens to the session, the answer); split up, the contract it pins would be scattered.
 */
export async function refreshFailure<T>(
  deps: { log: Log; metrics: MetricSink },
  error: unknown,
  effects: RefreshFailureEffects<T>,
): Promise<T> {
  const { session, release } = effects;
  if (!(error instanceof UpstreamFailure)) {
    // Secrets Manager or anything else: keep everything, let the caller retry.
    await release('unavailable');
    throw error;
  }
  switch (error.kind) {
    case 'invalid_grant': {
      // Salesforce says the refresh token is dead: the only case where a session is deleted
      // on the refresh path. Fenced, so a lapsed holder cannot delete a newer session.
      deps.metrics.count('UpstreamError', 1, { class: 'invalid_grant' });
      deps.metrics.count('ReauthenticationRequired');
      const deleted = await effects.deleteSession({
        error: error.upstreamError,
        description: error.upstreamDescription,
      });
      deps.log.warn('Salesforce rejected the refresh token; session ended', {
        event: 'reauthentication_required',
        session,
        upstreamError: error.upstreamError,
        upstreamDescription: error.upstreamDescription,
        deleted,
      });
      throw new ReauthenticationRequiredError('Salesforce ended this session; log in again.', {
        cause: error,
      });
    }
    case 'access_restricted':
      // The grant is alive; Salesforce refuses the broker's IP or the user's login hours.
      // Keep the session, tell the operator (the caller cannot fix it).
      deps.metrics.count('UpstreamError', 1, { class: 'forbidden' });
      deps.metrics.count('UpstreamForbidden');
      deps.log.error('Salesforce refused the broker by IP restriction or login hours', {
        event: 'upstream_forbidden',
        alarm: true,
        session,
        upstreamError: error.upstreamError,
        upstreamDescription: error.upstreamDescription,
      });
      await release('forbidden');
      throw new UpstreamForbiddenError(UPSTREAM_FORBIDDEN_DESCRIPTION, { cause: error });
    case 'token_request_in_progress': {
      // Salesforce's own concurrency block: another request with this refresh token is in
      // flight (a lapsed holder). Transient; never delete. Re-read: it may have committed.
      deps.metrics.count('UpstreamError', 1, { class: 'concurrent' });
      deps.log.warn('Salesforce is already processing this refresh token', {
        event: 'upstream_concurrent',
        session,
      });
      await release('unavailable');
      const newer = await effects.newerVersion();
      if (newer !== undefined) return newer;
      throw new TemporarilyUnavailableError('A refresh of this session is in progress.', 1, {
        cause: error,
      });
    }
    case 'invalid_client':
    case 'request_rejected':
      deps.metrics.count('UpstreamError', 1, { class: 'invalid_client' });
      deps.metrics.count('UpstreamMisconfigured');
      deps.log.error('Salesforce rejected the connected app configuration', {
        event: 'upstream_misconfigured',
        alarm: true,
        upstreamError: error.upstreamError,
        upstreamDescription: error.upstreamDescription,
      });
      await release('misconfigured');
      await effects.raiseAlert?.(misconfigurationCode(error));
      throw new UpstreamMisconfiguredError(UPSTREAM_MISCONFIGURED_DESCRIPTION, {
        cause: error,
      });
    case 'invalid_response':
      deps.metrics.count('UpstreamError', 1, { class: 'invalid_response' });
      deps.metrics.count('UpstreamInvalidResponse');
      deps.log.error('Salesforce token response failed validation', {
        event: 'upstream_invalid_response',
        alarm: true,
        session,
        reason: error.reason,
        detail: error.message,
      });
      await release('unavailable');
      throw new TemporarilyUnavailableError('Salesforce sent an unexpected response.', 5, {
        cause: error,
      });
    case 'unavailable': {
      const rateLimited = error.reason === 'rate_limited';
      deps.metrics.count('UpstreamError', 1, {
        class: rateLimited ? 'rate_limited' : 'unavailable',
      });
      deps.log.warn(
        rateLimited ? 'Salesforce rate-limited the refresh' : 'Salesforce is unavailable',
        {
          event: rateLimited ? 'upstream_rate_limited' : 'upstream_unavailable',
          session,
          reason: error.reason,
          detail: error.message,
        },
      );
      // A timed-out or broken request may still be running at Salesforce with this refresh
      // token: keep the lease (it runs out by itself) so that no second request with the
      // same token follows it; waiters and newcomers still get this failure at once.
      await release('unavailable', error.outcomeUnknown);
      throw new TemporarilyUnavailableError(
        rateLimited
          ? 'Salesforce is rate-limiting requests; retry later.'
          : 'Salesforce is temporarily unavailable.',
        clampRetryAfter(error.retryAfterSeconds ?? 5),
        { cause: error },
      );
    }
  }
}

/**
 * Maps a failed code exchange to the contract's error (the browser goes back to
 * `return_to` with it); the log keeps the details. Anything that is not an upstream
 * failure is returned as it is. Long on purpose, like {@link refreshFailure}: one case per
 * kind, read as a table.
 */
export function codeExchangeFailure(
  deps: { log: Log; metrics: MetricSink },
  error: unknown,
  transaction: string,
): unknown {
  if (!(error instanceof UpstreamFailure)) return error;
  switch (error.kind) {
    case 'unavailable':
      deps.metrics.count('UpstreamError', 1, { class: 'unavailable' });
      deps.log.warn('Salesforce is unavailable for the code exchange', {
        event: 'upstream_unavailable',
        transaction,
        detail: error.message,
      });
      return new TemporarilyUnavailableError(
        error.reason === 'rate_limited'
          ? 'Salesforce is rate-limiting logins; log in again later.'
          : 'Salesforce is temporarily unavailable; log in again shortly.',
        clampRetryAfter(error.retryAfterSeconds ?? 5),
        { cause: error },
      );
    case 'access_restricted':
      deps.metrics.count('UpstreamForbidden');
      deps.log.error('Salesforce refused the broker by IP restriction or login hours', {
        event: 'upstream_forbidden',
        alarm: true,
        transaction,
        upstreamError: error.upstreamError,
        upstreamDescription: error.upstreamDescription,
      });
      return new LoginFailedError(UPSTREAM_FORBIDDEN_DESCRIPTION, { cause: error });
    case 'invalid_client':
      deps.metrics.count('UpstreamMisconfigured');
      deps.log.error('Salesforce rejected the connected app configuration', {
        event: 'upstream_misconfigured',
        alarm: true,
        transaction,
        upstreamError: error.upstreamError,
      });
      return new UpstreamMisconfiguredError(UPSTREAM_MISCONFIGURED_DESCRIPTION, {
        cause: error,
      });
    case 'invalid_response': {
      deps.metrics.count('LoginFailed', 1, { class: error.reason ?? 'field' });
      // No refresh token is the connected app's (or SALESFORCE_SCOPES') configuration; a bad
      // signature or a foreign instance_url is either an attack or a broken proxy.
      const scopeMissing = error.reason === 'refresh_token_missing';
      deps.metrics.count(scopeMissing ? 'UpstreamMisconfigured' : 'UpstreamInvalidResponse');
      deps.log.error(
        scopeMissing
          ? 'Salesforce granted no refresh token'
          : 'Salesforce token response failed validation',
        {
          event: scopeMissing ? 'upstream_misconfigured' : 'upstream_invalid_response',
          alarm: true,
          transaction,
          reason: error.reason,
          detail: error.message,
        },
      );
      return new LoginFailedError(
        scopeMissing
          ? 'Salesforce granted no refresh token: an administrator must add the "refresh_token" ' +
              '(or "offline_access") scope to the connected app and to SALESFORCE_SCOPES.'
          : 'Salesforce sent a token response that failed verification.',
        { cause: error },
      );
    }
    case 'invalid_grant':
    case 'token_request_in_progress':
    case 'request_rejected': {
      const upstreamError = error.upstreamError ?? 'unknown';
      deps.metrics.count('LoginFailed', 1, { class: upstreamError });
      // redirect_uri_mismatch and the like are configuration problems: alarm on those.
      const configuration = error.kind !== 'invalid_grant';
      if (configuration) deps.metrics.count('UpstreamMisconfigured');
      deps.log[configuration ? 'error' : 'warn']('Salesforce rejected the code exchange', {
        event: 'code_exchange_rejected',
        alarm: configuration,
        transaction,
        upstreamError,
        upstreamDescription: error.upstreamDescription,
      });
      return new LoginFailedError(
        configuration
          ? 'Salesforce rejected the login request.'
          : 'Salesforce rejected the authorization code (expired or already used); log in again.',
        { cause: error },
      );
    }
  }
}
