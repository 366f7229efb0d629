import { endedMark } from '../broker/connection.ts';
import { InvalidSessionError } from '../broker/errors.ts';
import { type EndSessionDependencies, endSession } from '../broker/logout.ts';
import type { Clock } from '../broker/ports.ts';
import { sessionKeyOf } from '../broker/session-handle.ts';
import { callerHandle } from '../http/caller.ts';
import { CLEAR_SESSION_COOKIE } from '../http/cookies.ts';
import { noContent } from '../http/responses.ts';
import { defineRoute, type FlushableMetrics, type HttpHandler } from '../http/route.ts';

export interface LogoutRouteDependencies extends EndSessionDependencies {
  config: {
    allowedOrigins: readonly string[];
    invocationDeadlineMs: number;
    endedConnectionRetentionMs?: number | undefined;
  };
  clock: Clock;
  metrics: FlushableMetrics;
}

/**
 * `POST /logout` (README "HTTP contract (v1)"): the caller authenticates like `/refresh`
 * (a foreign `Origin` or a missing `X-CSRF: 1` is still `403`); the session is deleted,
 * then its refresh token revoked at Salesforce (RFC 7009). Idempotent: no credential, an
 * unknown or malformed handle, or a failed revocation all answer `204` and clear the
 * session cookie.
 * @see https://www.rfc-editor.org/rfc/rfc7009
 */
export function createLogoutHandler(deps: LogoutRouteDependencies): HttpHandler {
  return defineRoute(deps, {
    name: 'logout',
    methods: ['POST'],
    cors: { allowedOrigins: deps.config.allowedOrigins },
    handle: async (request, log) => {
      // Read, delete and revoke all end by the invocation deadline, so the 204 always goes out.
      const deadline = {
        at: deps.clock.now() + deps.config.invocationDeadlineMs,
        now: deps.clock.now,
      };
      let handle: string;
      try {
        handle = callerHandle(request, deps.config.allowedOrigins);
      } catch (error) {
        if (!(error instanceof InvalidSessionError)) throw error;
        log.info('logout without a usable credential', { event: 'logout_no_session' });
        return noContent({}, [CLEAR_SESSION_COOKIE]);
      }
      await endSession(
        { ...deps, log },
        sessionKeyOf(handle),
        'logout',
        deadline,
        endedMark(deps.config, 'logout', deps.clock.now()),
      );
      return noContent({}, [CLEAR_SESSION_COOKIE]);
    },
  });
}
