import type { TokenVault } from './envelope.ts';
import { SessionIntegrityError } from './errors.ts';
import type { Log, MetricSink, SessionStore } from './ports.ts';
import { logSafeId } from './session-handle.ts';

/** The part of the Salesforce client that ends a grant. */
export interface RevocationClient {
  revoke(token: string, options?: { timeoutMs?: number }): Promise<void>;
}

export interface EndSessionDependencies {
  store: Pick<SessionStore, 'delete'>;
  vault: TokenVault;
  salesforce: RevocationClient;
  log: Log;
  metrics: MetricSink;
}

/** What happened to the session; the caller answers the same in every case. */
export type EndSessionOutcome = 'revoked' | 'revoke_failed' | 'absent';

/**
 * Ends a session (README "HTTP contract (v1)"): deletes the item first, so the handle is
 * unusable at once and a concurrent refresh's fenced commit cannot resurrect it; then
 * opens the deleted token set and revokes the refresh token at Salesforce (RFC 7009;
 * revoking a refresh token also revokes its access tokens). A revocation that fails
 * (Salesforce 5xx or timeout, KMS down, a damaged item) is logged as the alarm-worthy
 * event `revoke_failed` with the session's log-safe id and is not retried: the session is
 * already gone from the broker. Store failures propagate (nothing was deleted).
 * @see https://www.rfc-editor.org/rfc/rfc7009#section-2
 * @see https://help.salesforce.com/s/articleView?id=sf.remoteaccess_revoke_token.htm
 */
export async function endSession(
  deps: EndSessionDependencies,
  sessionKey: string,
  reason: 'logout' | 'replaced',
): Promise<EndSessionOutcome> {
  const session = logSafeId(sessionKey);
  const record = await deps.store.delete(sessionKey);
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
  // The client's own timeout (UPSTREAM_TIMEOUT_MS) bounds the call.
  if (!(await revokeOrReport(deps, refreshToken, { session, reason }))) return 'revoke_failed';
  deps.log.info('session ended; refresh token revoked', {
    event: 'session_ended',
    session,
    reason,
  });
  return 'revoked';
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
  context: { session: string; reason: string; timeoutMs?: number },
): Promise<boolean> {
  try {
    await deps.salesforce.revoke(
      refreshToken,
      context.timeoutMs === undefined ? undefined : { timeoutMs: context.timeoutMs },
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
    error: error instanceof Error ? error.name : typeof error,
    detail: error instanceof Error ? error.message : undefined,
  });
}
