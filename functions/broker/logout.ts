import { describeError } from '../shared/describe-error.ts';
import { loginHostUrl } from '../shared/login-hosts.ts';
import type { TokenVault } from './envelope.ts';
import { SessionIntegrityError, TemporarilyUnavailableError } from './errors.ts';
import type {
  CallOptions,
  EndedMark,
  Log,
  MetricSink,
  SalesforceApp,
  SessionRecord,
  SessionStore,
} from './ports.ts';
import { logSafeId } from './session-handle.ts';

/** The part of the Salesforce client that ends a grant. */
export interface RevocationClient {
  revoke(
    token: string,
    options?: { timeoutMs?: number | undefined; loginUrl?: URL | undefined },
  ): Promise<void>;
}

export interface EndSessionDependencies {
  /**
   * The connected apps' names and login URLs, for the host of the session's app
   * (`./orgs.ts`); revocation needs no client credentials. Absent: the client's own host.
   */
  apps?: readonly Pick<SalesforceApp, 'name' | 'loginUrl'>[] | undefined;
  store: Pick<SessionStore, 'get' | 'deleteVersion'>;
  vault: TokenVault;
  salesforce: RevocationClient;
  log: Log;
  metrics: MetricSink;
}

/**
 * Why a session is ended: a logout; a new login replacing it; a broker code of the handoff
 * presented again (RFC 6749 s4.1.2), refused, or not stored, leaving a session nobody can
 * ever be handed; a backend job's `DELETE` on the service API (one connection, or
 * offboarding a user or an organization).
 */
export type EndSessionReason =
  | 'logout'
  | 'replaced'
  | 'code_replayed'
  | 'code_rejected'
  | 'handoff_failed'
  | 'service'
  | 'expired';

/**
 * What happened to the session; the caller answers the same in every case. `kept`: the
 * caller's `keepIf` said the session read must stay (the sweep's expiry found it refreshed).
 */
export type EndSessionOutcome = 'revoked' | 'revoke_failed' | 'absent' | 'kept';

/** Enough for a refresh that commits between our read and our delete, more than once. */
const MAX_DELETE_ATTEMPTS = 4;

/**
 * Ends a session (README "HTTP contract (v1)"): reads the session, then deletes exactly
 * the version it read (a conditional delete), so the handle is unusable at once and a
 * concurrent refresh's fenced commit cannot resurrect it; then opens the token set it read
 * and revokes the refresh token at Salesforce (RFC 7009; revoking a refresh token also
 * revokes its access tokens).
 *
 * Reading first is what makes a lost answer harmless: when the delete was applied but its
 * answer lost, the SDK's retry fails the condition, the re-read finds nothing, and the
 * tokens to revoke are already in hand (a plain delete would have found "no item" and left
 * the grant alive at Salesforce). A refresh that commits in between moves the version: read
 * again and end that one.
 *
 * A revocation that fails (Salesforce 5xx or timeout, KMS down, a damaged item) is logged
 * as the alarm-worthy event `revoke_failed` and is not retried: the session is already gone
 * from the broker. Store failures propagate (nothing was deleted, or the caller retries).
 * `deadline` (the caller's invocation deadline) bounds the store calls and the revocation.
 * @see https://www.rfc-editor.org/rfc/rfc7009#section-2
 * @see https://help.salesforce.com/s/articleView?id=sf.remoteaccess_revoke_token.htm
 */
export async function endSession(
  deps: EndSessionDependencies,
  sessionKey: string,
  reason: EndSessionReason,
  deadline?: { at: number; now: () => number },
  ended?: EndedMark,
  keepIf?: (record: SessionRecord) => boolean,
): Promise<EndSessionOutcome> {
  const session = logSafeId(sessionKey);
  const left = (): CallOptions =>
    deadline === undefined ? {} : { timeoutMs: deadline.at - deadline.now() };
  const record = await deleteCurrentVersion(deps, sessionKey, left, ended, keepIf);
  if (record === 'kept') {
    deps.log.info('session kept: it changed since it was due', {
      event: 'session_kept',
      session,
      reason,
    });
    return 'kept';
  }
  if (!record) {
    deps.log.info('no session to end', { event: 'session_absent', session, reason });
    return 'absent';
  }
  deps.metrics.count('SessionEnded', 1, { class: reason });
  let refreshToken: string;
  try {
    refreshToken = (await deps.vault.open(record.sealed, record.sessionKey, record.version))
      .refreshToken;
  } catch (error) {
    reportRevokeFailed(deps, error, { session, reason });
    return 'revoke_failed';
  }
  // Without a deadline the client's own timeout (UPSTREAM_TIMEOUT_MS) bounds the call.
  const timeoutMs = left().timeoutMs;
  // At the host the session logged in at (revocation needs no client credentials).
  const loginUrl = loginUrlOf(deps, record);
  if (!(await revokeOrReport(deps, refreshToken, { session, reason, timeoutMs, loginUrl }))) {
    return 'revoke_failed';
  }
  deps.log.info('session ended; refresh token revoked', {
    event: 'session_ended',
    session,
    reason,
  });
  return 'revoked';
}

/** The origin of the session's login host; `undefined`: the client's configured one. */
function loginUrlOf(
  deps: Pick<EndSessionDependencies, 'apps'>,
  record: Pick<SessionRecord, 'loginHost' | 'salesforceApp'>,
): URL | undefined {
  const apps = deps.apps;
  if (apps === undefined || apps.length === 0) return undefined;
  // An app removed from the settings still has a grant to end: its scheme and port are
  // those of the first app (the same in any one deployment).
  const app = apps.find((candidate) => candidate.name === record.salesforceApp) ?? apps[0];
  if (app === undefined) return undefined;
  return loginHostUrl(record.loginHost ?? app.loginUrl.hostname, app.loginUrl);
}

/**
 * Read, then delete that version; the record last read when the session is gone, whoever
 * deleted it (this call with its answer lost, or a concurrent logout: revoking twice is
 * harmless, Salesforce answers `invalid_token`). `undefined` when there was none.
 */
async function deleteCurrentVersion(
  deps: Pick<EndSessionDependencies, 'store'>,
  sessionKey: string,
  left: () => CallOptions,
  ended: EndedMark | undefined,
  keepIf: ((record: SessionRecord) => boolean) | undefined,
): Promise<SessionRecord | undefined | 'kept'> {
  let last: SessionRecord | undefined;
  for (let attempt = 0; attempt < MAX_DELETE_ATTEMPTS; attempt++) {
    const record = await deps.store.get(sessionKey, left());
    if (!record) return last;
    // Each version read is judged again: a refresh that committed meanwhile keeps it.
    if (keepIf?.(record)) return 'kept';
    last = record;
    let outcome: 'deleted' | 'changed';
    try {
      outcome = await deps.store.deleteVersion(sessionKey, record.version, left(), ended);
    } catch (error) {
      // Every attempt failed, yet one may have landed with its answer lost: look again, or
      // a retried logout would find nothing and leave the grant alive at Salesforce.
      const after = await deps.store.get(sessionKey, left()).catch(() => {
        throw error;
      });
      if (after === undefined) return record;
      throw error;
    }
    if (outcome === 'deleted') return record;
  }
  // Refreshes kept committing between our reads and deletes (it takes one per attempt):
  // the store answers; let the caller retry.
  throw new TemporarilyUnavailableError('The session is busy; retry the logout.', 1);
}

/**
 * Revokes a refresh token at Salesforce (RFC 7009). A failure is counted and logged as
 * the alarm-worthy `revoke_failed`, never thrown: the broker has already let go of the
 * token, so the caller's answer does not depend on Salesforce.
 * @see https://www.rfc-editor.org/rfc/rfc7009#section-2
 */
export async function revokeOrReport(
  deps: Pick<EndSessionDependencies, 'salesforce' | 'log' | 'metrics'>,
  refreshToken: string,
  context: {
    session: string;
    reason: string;
    timeoutMs?: number | undefined;
    /** The session's login host's origin; absent: the client's configured one. */
    loginUrl?: URL | undefined;
  },
): Promise<boolean> {
  try {
    const options = {
      ...(context.timeoutMs === undefined ? {} : { timeoutMs: context.timeoutMs }),
      ...(context.loginUrl === undefined ? {} : { loginUrl: context.loginUrl }),
    };
    await deps.salesforce.revoke(
      refreshToken,
      Object.keys(options).length === 0 ? undefined : options,
    );
    return true;
  } catch (error) {
    reportRevokeFailed(deps, error, context);
    return false;
  }
}

function reportRevokeFailed(
  deps: Pick<EndSessionDependencies, 'log' | 'metrics'>,
  error: unknown,
  context: { session: string; reason: string },
): void {
  deps.metrics.count('RevokeFailed');
  deps.log.error('a refresh token the broker let go of could not be revoked', {
    event: 'revoke_failed',
    alarm: true,
    session: context.session,
    reason: context.reason,
    integrity: error instanceof SessionIntegrityError,
    error: describeError(error, 'name_only'),
    detail: error instanceof Error ? error.message : undefined,
  });
}
