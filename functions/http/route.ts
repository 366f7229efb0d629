import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
} from 'aws-lambda';
import { MethodNotAllowedError } from '../broker/errors.ts';
import type { Log, MetricSink } from '../broker/ports.ts';
import { isPreflight, preflightResponse, withCorsHeaders } from './cors.ts';
import { withAttributes } from './observability.ts';
import { decodeBody, type HttpRequest, parseHead, type RequestHead } from './request.ts';
import { errorResponse, type HttpResponse } from './responses.ts';

/**
 * The Lambda handler of an HTTP API route (payload format 2.0): `aws-lambda`'s
 * `APIGatewayProxyHandlerV2`, narrowed to what the routes are: always a promise of a
 * structured result (never the callback, never a bare string), and the context optional
 * so tests and the local server can call it directly. Every entry file checks that its
 * handler `satisfies APIGatewayProxyHandlerV2`.
 */
export type HttpHandler = (
  event: APIGatewayProxyEventV2,
  context?: Context,
) => Promise<APIGatewayProxyStructuredResultV2>;

/** Metrics a route records; `flush` (EMF in production) runs after every invocation. */
export interface FlushableMetrics extends MetricSink {
  flush?(): void;
}

/** What the frame needs from a route's dependencies. */
export interface RouteDependencies {
  log: Log;
  metrics: FlushableMetrics;
}

export interface RouteDefinition {
  /** The `route` attribute of every log entry. */
  name: string;
  /** The methods the route answers; any other is `405` with `Allow`. */
  methods: readonly string[];
  /** For the routes browsers call cross-origin: preflights and CORS headers for these origins. */
  cors?: { allowedOrigins: readonly string[] } | undefined;
  /** `Set-Cookie` values on every error answer (`/callback` clears its login cookie). */
  errorCookies?: readonly string[] | undefined;
  /** The route itself, given the parsed request; what it throws is answered by the error map. */
  handle(request: HttpRequest, log: Log): Promise<HttpResponse>;
}

/**
 * The frame every route shares: the event parsed once (method checked, `405` with
 * `Allow`; body read, over 16 KB `413`), CORS when the route sets it, a log that carries
 * the API Gateway and Lambda request ids, every error answered by the one error map of
 * `responses.ts`, and the metrics flushed at the end of each invocation.
 */
export function defineRoute(deps: RouteDependencies, route: RouteDefinition): HttpHandler {
  const answer = async (
    event: APIGatewayProxyEventV2,
    head: RequestHead,
    log: Log,
  ): Promise<HttpResponse> => {
    try {
      if (route.cors && isPreflight(head)) {
        return preflightResponse(head, route.cors.allowedOrigins, route.methods);
      }
      if (!route.methods.includes(head.method)) throw new MethodNotAllowedError(route.methods);
      return await route.handle({ ...head, body: decodeBody(event) }, log);
    } catch (error) {
      const response = errorResponse(error, log);
      return route.errorCookies ? { ...response, cookies: [...route.errorCookies] } : response;
    }
  };

  return async (event, context) => {
    const log = withAttributes(deps.log, {
      route: route.name,
      requestId: event.requestContext?.requestId,
      lambdaRequestId: context?.awsRequestId,
    });
    try {
      const head = parseHead(event);
      const response = await answer(event, head, log);
      return route.cors ? withCorsHeaders(response, head, route.cors.allowedOrigins) : response;
    } finally {
      deps.metrics.flush?.();
    }
  };
}
