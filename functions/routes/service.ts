import { InvalidRequestError, NotFoundError, ServiceCallerUnknownError } from '../broker/errors.ts';
import type { Log } from '../broker/ports.ts';
import { canonicalSalesforceId, ORGANIZATION_ID, USER_ID } from '../broker/salesforce-id.ts';
import {
  connectionToken,
  describeConnection,
  endConnection,
  endConnections,
  listConnections,
  type ServiceDependencies,
} from '../broker/service.ts';
import { logSafeId } from '../broker/session-handle.ts';
import { accessTokenJson } from '../http/access-token.ts';
import { connectionJson, endedConnectionJson } from '../http/connections.ts';
import { parseQuery, singleParameter } from '../http/query.ts';
import type { HttpRequest } from '../http/request.ts';
import { type HttpResponse, json, noContent } from '../http/responses.ts';
import { defineRoute, type FlushableMetrics, type HttpHandler } from '../http/route.ts';
import { SERVICE_ROUTE_KEYS, type ServiceRouteKey } from '../shared/constants.ts';
import { parseRefreshBody } from './refresh.ts';

export interface ServiceRouteDependencies extends ServiceDependencies {
  metrics: FlushableMetrics;
}

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 100;

/**
 * The service API (README "Backend jobs: the service API"): five routes with API
 * Gateway `AWS_IAM` authorization, served by one function that dispatches on the route
 * key. API Gateway has verified the SigV4 signature before the function runs; the
 * function logs who called (`requestContext.authorizer.iam.userArn`) with the connection
 * id on every call, an audit line, never a token. No CORS: browsers do not sign requests.
 * @see https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html
 */
export function createServiceHandler(deps: ServiceRouteDependencies): HttpHandler {
  return defineRoute(deps, {
    name: 'service',
    methods: ['GET', 'POST', 'DELETE'],
    handle: async (request, log) => {
      const routeKey = SERVICE_ROUTE_KEYS.find((key) => key === request.routeKey);
      if (routeKey === undefined) throw new NotFoundError('No such route.');
      const caller = request.iamCaller;
      if (caller === undefined) {
        // Only a route deployed without AWS_IAM authorization gets here: refuse it.
        log.warn('service call without an IAM caller', {
          event: 'service_unauthenticated',
          routeKey,
        });
        throw new ServiceCallerUnknownError('The request was not authorized with IAM.');
      }
      const audit = (attributes: Record<string, unknown>) =>
        log.info('service call', {
          event: 'service_call',
          routeKey,
          caller: caller.userArn,
          callerAccount: caller.accountId,
          ...attributes,
        });
      const deadline = {
        at: deps.clock.now() + deps.config.invocationDeadlineMs,
        now: deps.clock.now,
      };
      return serve(routeKey, request, { ...deps, log }, audit, deadline);
    },
  });
}

/**
 * One case per route key of the service API. Long on purpose: the five routes stay side by
 * side, in the order of the README's table, each only parsing, calling the domain and
 * shaping its answer.
 */
async function serve(
  routeKey: ServiceRouteKey,
  request: HttpRequest,
  deps: ServiceDependencies & { log: Log },
  audit: (attributes: Record<string, unknown>) => void,
  deadline: { at: number; now: () => number },
): Promise<HttpResponse> {
  const connectionId = request.pathParameters?.connection_id ?? '';
  switch (routeKey) {
    case 'POST /connections/{connection_id}/token': {
      const versionHint = parseRefreshBody(request.body);
      audit({ connection: connectionId, action: 'token' });
      const result = await connectionToken(deps, connectionId, versionHint);
      deps.log.info('connection token answered', {
        connection: connectionId,
        outcome: result.outcome,
        version: result.version,
      });
      return json(200, accessTokenJson(result));
    }
    case 'GET /connections/{connection_id}': {
      audit({ connection: connectionId, action: 'describe' });
      const found = await describeConnection(deps, connectionId, {
        timeoutMs: deadline.at - deadline.now(),
      });
      return json(
        200,
        found.status === 'ended'
          ? endedConnectionJson(connectionId, found.tombstone)
          : connectionJson(found.summary),
      );
    }
    case 'DELETE /connections/{connection_id}': {
      audit({ connection: connectionId, action: 'end' });
      const outcome = await endConnection(deps, connectionId, deadline);
      deps.log.info('connection end answered', { connection: connectionId, outcome });
      return noContent();
    }
    case 'GET /connections': {
      const query = parseQuery(request.rawQueryString);
      const filter = parseFilter(query);
      const limit = parseLimit(singleParameter(query, 'limit'));
      const cursor = parseCursor(singleParameter(query, 'cursor'));
      audit({ action: 'list', org: logSafeId(filter.orgId), ...userAttribute(filter) });
      const page = await listConnections(
        deps,
        { ...filter, limit, cursor },
        { timeoutMs: deadline.at - deadline.now() },
      );
      return json(200, {
        connections: page.connections.map(connectionJson),
        next_cursor: page.nextCursor ?? null,
      });
    }
    case 'DELETE /connections': {
      const query = parseQuery(request.rawQueryString);
      const filter = parseFilter(query);
      const cursor = parseCursor(singleParameter(query, 'cursor'));
      audit({ action: 'end_all', org: logSafeId(filter.orgId), ...userAttribute(filter) });
      const result = await endConnections(deps, { ...filter, cursor }, deadline);
      // One audit line per connection ended, so each can be traced to who ended it.
      for (const ended of result.ended) audit({ connection: ended, action: 'ended' });
      return json(200, { ended: result.ended.length, next_cursor: result.nextCursor ?? null });
    }
  }
}

/** `organization_id` (required) and `user_id`, as canonical 18-character ids. */
function parseFilter(query: ReturnType<typeof parseQuery>): {
  orgId: string;
  userId: string | undefined;
} {
  const org = singleParameter(query, 'organization_id');
  if (org === undefined || org === '') {
    throw new InvalidRequestError('"organization_id" is required.');
  }
  const user = singleParameter(query, 'user_id');
  return {
    orgId: canonicalSalesforceId(org, ORGANIZATION_ID),
    userId: user === undefined ? undefined : canonicalSalesforceId(user, USER_ID),
  };
}

function parseLimit(value: string | undefined): number {
  if (value === undefined) return DEFAULT_LIMIT;
  if (!/^\d{1,3}$/.test(value) || Number(value) < 1 || Number(value) > MAX_LIMIT) {
    throw new InvalidRequestError(`"limit" must be a whole number from 1 to ${MAX_LIMIT}.`);
  }
  return Number(value);
}

/** Shape only; the store checks that the cursor belongs to this listing. */
function parseCursor(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!/^[A-Za-z0-9_-]{1,1024}$/.test(value)) {
    throw new InvalidRequestError('"cursor" is not a cursor of this listing.');
  }
  return value;
}

function userAttribute(filter: { userId: string | undefined }): Record<string, string> {
  return filter.userId === undefined ? {} : { user: logSafeId(filter.userId) };
}
