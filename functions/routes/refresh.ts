import { InvalidRequestError } from '../broker/errors.ts';
import { type RefreshDependencies, refreshSession } from '../broker/refresh.ts';
import { logSafeId, sessionKeyOf } from '../broker/session-handle.ts';
import { accessTokenJson } from '../http/access-token.ts';
import { callerHandle } from '../http/caller.ts';
import { json } from '../http/responses.ts';
import { defineRoute, type FlushableMetrics, type HttpHandler } from '../http/route.ts';

export interface RefreshRouteDependencies extends RefreshDependencies {
  config: RefreshDependencies['config'] & { allowedOrigins: readonly string[] };
  metrics: FlushableMetrics;
}

/**
 * `POST /refresh`: authenticates the caller, reads the optional `{"version": n}` hint,
 * runs the single-flight refresh and answers the token (README "HTTP contract (v1)").
 */
export function createRefreshHandler(deps: RefreshRouteDependencies): HttpHandler {
  return defineRoute(deps, {
    name: 'refresh',
    methods: ['POST'],
    cors: { allowedOrigins: deps.config.allowedOrigins },
    handle: async (request, log) => {
      const handle = callerHandle(request, deps.config.allowedOrigins);
      const versionHint = parseRefreshBody(request.body);
      const result = await refreshSession({ ...deps, log }, handle, versionHint);
      log.info('refresh answered', {
        session: logSafeId(sessionKeyOf(handle)),
        outcome: result.outcome,
        version: result.version,
      });
      return json(200, accessTokenJson(result));
    },
  });
}

/** The body is optional; when present it is `{"version": <non-negative integer>}`. */
export function parseRefreshBody(body: string | undefined): number | undefined {
  if (body === undefined || body.trim() === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    throw new InvalidRequestError('The body must be JSON: {"version": <number>}.');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidRequestError('The body must be a JSON object: {"version": <number>}.');
  }
  const version = (value as Record<string, unknown>).version;
  if (version === undefined) return undefined;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
    throw new InvalidRequestError('"version" must be a non-negative integer.');
  }
  return version;
}
