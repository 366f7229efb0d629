import { randomBytes } from 'node:crypto';
import type { ConnectionSummary, EndedMark, EndedReason, SessionRecord } from './ports.ts';

/** `endedConnectionRetentionDays`' default (functions/shared/settings-table.ts), in ms. */
export const DEFAULT_ENDED_RETENTION_MS = 30 * 86_400_000;

/**
 * The tombstone a connection ended by Salesforce (`invalid_grant`) or the service API
 * keeps for `endedConnectionRetentionDays` (README "Ended connections").
 */
export function endedMark(
  config: { endedConnectionRetentionMs?: number | undefined },
  reason: EndedReason,
  now: number,
): EndedMark {
  const retentionMs = config.endedConnectionRetentionMs ?? DEFAULT_ENDED_RETENTION_MS;
  return { reason, endedAt: now, retainUntil: now + retentionMs };
}

/** `keepAliveAfterDays`' default (functions/shared/settings-table.ts), in ms. */
export const DEFAULT_KEEP_ALIVE_AFTER_MS = 20 * 86_400_000;

/**
 * When the scheduled sweep (README "Keep-alive and expiry") next has something to do with
 * a session: refresh it once its last commit is `keepAliveAfterMs` old, or end it at its
 * idle or absolute expiry, whichever comes first. Written with every create and commit.
 */
export function sweepAtOf(
  record: Pick<SessionRecord, 'committedAt' | 'idleExpiresAt' | 'absoluteExpiresAt'>,
  keepAliveAfterMs: number = DEFAULT_KEEP_ALIVE_AFTER_MS,
): number {
  return Math.min(
    record.committedAt + keepAliveAfterMs,
    record.idleExpiresAt,
    record.absoluteExpiresAt,
  );
}

/** `con_` and 128 random bits, base64url without padding (22 characters). */
const CONNECTION_ID_PATTERN = /^con_[A-Za-z0-9_-]{22}$/;

/**
 * Mints the stable, non-secret id of a new connection (one Salesforce grant for one user
 * of one org). It names the connection in logs, events and the service API; it is not a
 * credential: only a session handle or an IAM-signed service call acts on it.
 */
export function newConnectionId(): string {
  return `con_${randomBytes(16).toString('base64url')}`;
}

/** Whether a string has the shape of a connection id; anything else never reaches the store. */
export function isWellFormedConnectionId(value: string): boolean {
  return CONNECTION_ID_PATTERN.test(value);
}

/**
 * The metadata of the connection a session record holds, never a token; `undefined` for a
 * session stored before connections existed (it has no id and no clear-text metadata).
 */
export function summarizeConnection(record: SessionRecord): ConnectionSummary | undefined {
  if (record.connectionId === undefined) return undefined;
  return {
    connectionId: record.connectionId,
    orgId: record.orgId,
    userId: record.userId,
    instanceUrl: record.instanceUrl ?? '',
    scope: record.scope ?? '',
    createdAt: record.createdAt,
    lastRefreshedAt: record.committedAt,
    version: record.version,
    absoluteExpiresAt: record.absoluteExpiresAt,
    idleExpiresAt: record.idleExpiresAt,
    ...(record.loginHost === undefined ? {} : { loginHost: record.loginHost }),
    ...(record.salesforceApp === undefined ? {} : { salesforceApp: record.salesforceApp }),
    ...(record.siteUrl === undefined ? {} : { siteUrl: record.siteUrl }),
  };
}

/** Whether a session is within both of its lifetimes at `now` (ms). */
export function isLiveSession(
  record: Pick<SessionRecord, 'absoluteExpiresAt' | 'idleExpiresAt'>,
  now: number,
): boolean {
  return now < record.absoluteExpiresAt && now < record.idleExpiresAt;
}
