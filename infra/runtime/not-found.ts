/**
 * Lambda behind the HTTP API's `$default` route: any path that is not one of the broker's
 * four routes gets the contract's `404 not_found` JSON (README "HTTP contract (v1)") instead
 * of API Gateway's own `{"message":"Not Found"}`. It has no permission and reads nothing.
 */
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';

export const handler = async (): Promise<APIGatewayProxyStructuredResultV2> => ({
  statusCode: 404,
  headers: {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  },
  body: JSON.stringify({ error: 'not_found', error_description: 'No such route.' }),
});
