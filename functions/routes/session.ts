import { isLiveSession, summarizeConnection } from '../broker/connection.ts';
import { InvalidSessionError } from '../broker/errors.ts';
import type { Clock, Log, SessionStore } from '../broker/ports.ts';
import { logSafeId, sessionKeyOf } from '../broker/session-handle.ts';
import { callerHandle } from '../http/caller.ts';
import { connectionJson } from '../http/connections.ts';
import { json } from '../http/responses.ts';
import { defineRoute, type FlushableMetrics, type HttpHandler } from '../http/route.ts';

export interface SessionRouteDependencies {
  config: { allowedOrigins: readonly string[]; invocationDeadlineMs: number };
  store: Pick<SessionStore, 'get'>;
  clock: Clock;
  log: Log;
  metrics: FlushableMetrics;
}

/**
 * `GET /session` (README "Connections"): the metadata of the connection the caller's
 * handle (cookie with `X-CSRF: 1`, or bearer) is the credential for, never a token. One
 * consistent read under the invocation deadline, no upstream call; the same `401`s as
 * `/refresh`.
 */
export function createSessionHandler(deps: SessionRouteDependencies): HttpHandler {
  return defineRoute(deps, {
    name: 'session',
    methods: ['GET'],
    cors: { allowedOrigins: deps.config.allowedOrigins },
    handle: async (request, log) => {
      const handle = callerHandle(request, deps.config.allowedOrigins);
      const sessionKey = sessionKeyOf(handle);
      const record = await deps.store.get(sessionKey, {
        timeoutMs: deps.config.invocationDeadlineMs,
      });
      if (record === undefined || !isLiveSession(record, deps.clock.now())) {
        throw new InvalidSessionError('The session does not exist or has ended.');
      }
      const summary = summarizeConnection(record);
      log.info('session described', {
        session: logSafeId(sessionKey),
        connection: record.connectionId,
      });
      if (summary === undefined) {
        // A session stored before connections existed: it has no id and no clear-text
        // metadata, and keeps working on /refresh and /logout until it expires.
        return json(200, {
          connection_id: null,
          organization_id: record.orgId,
          user_id: record.userId,
          status: 'active',
          created_at: new Date(record.createdAt).toISOString(),
          last_refreshed_at: new Date(record.committedAt).toISOString(),
          version: record.version,
        });
      }
      return json(200, connectionJson(summary));
    },
  });
}
