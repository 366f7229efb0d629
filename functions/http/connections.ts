import type { ConnectionSummary, Tombstone } from '../broker/ports.ts';

/**
 * The wire form of a connection's metadata (README "Connections"): snake_case, times as
 * ISO 8601 strings, `status` always `active` for a connection that can be found (an ended
 * connection is gone). `expires_at` is when the broker ends it unless it is used (the
 * earlier of its idle and absolute lifetimes). Never a token.
 */
export function connectionJson(summary: ConnectionSummary): Record<string, unknown> {
  return {
    connection_id: summary.connectionId,
    organization_id: summary.orgId,
    user_id: summary.userId,
    instance_url: summary.instanceUrl,
    scope: summary.scope,
    status: 'active',
    created_at: new Date(summary.createdAt).toISOString(),
    last_refreshed_at: new Date(summary.lastRefreshedAt).toISOString(),
    version: summary.version,
    expires_at: new Date(Math.min(summary.absoluteExpiresAt, summary.idleExpiresAt)).toISOString(),
    ...(summary.loginHost === undefined ? {} : { login_host: summary.loginHost }),
    ...(summary.salesforceApp === undefined ? {} : { salesforce_app: summary.salesforceApp }),
    ...(summary.siteUrl === undefined ? {} : { site_url: summary.siteUrl }),
  };
}

/**
 * The wire form of an ended connection's tombstone (README "Ended connections"): `status`
 * `ended`, why (`ended_reason`) and when (`ended_at`, ISO 8601). Ids only, never a token.
 */
export function endedConnectionJson(
  connectionId: string,
  tombstone: Tombstone,
): Record<string, unknown> {
  return {
    connection_id: connectionId,
    organization_id: tombstone.orgId,
    user_id: tombstone.userId,
    status: 'ended',
    ended_reason: tombstone.reason,
    ended_at: new Date(tombstone.endedAt).toISOString(),
  };
}
