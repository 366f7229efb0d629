import type { ConnectionSummary } from '../broker/ports.ts';

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
