import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
} from 'aws-lambda';
import type { Log } from '../broker/ports.ts';
import { withAttributes } from './observability.ts';
import { errorResponse, type HttpResponse } from './responses.ts';

/** A Lambda handler for an HTTP API (payload format 2.0). */
export type HttpHandler = (
  event: APIGatewayProxyEventV2,
  context?: Context,
) => Promise<APIGatewayProxyStructuredResultV2>;

/**
 * The frame every route shares: a log that carries the API Gateway and Lambda request
 * ids, the one error-to-HTTP mapping of `responses.ts` (with `adjustError` for a route
 * that must, say, clear a cookie on every answer), and the metrics flush at the end of
 * each invocation.
 */
export function httpRoute(
  name: string,
  deps: { log: Log; metrics: { flush?(): void } },
  handle: (event: APIGatewayProxyEventV2, log: Log) => Promise<HttpResponse>,
  adjustError: (response: HttpResponse) => HttpResponse = (response) => response,
): HttpHandler {
  return async (event, context) => {
    const log = withAttributes(deps.log, {
      route: name,
      requestId: event.requestContext?.requestId,
      lambdaRequestId: context?.awsRequestId,
    });
    try {
      return await handle(event, log);
    } catch (error) {
      return adjustError(errorResponse(error, log));
    } finally {
      deps.metrics.flush?.();
    }
  };
}
