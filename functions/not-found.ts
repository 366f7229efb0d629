/**
 * Lambda behind the HTTP API's `$default` route: any path that is not one of the broker's
 * four routes gets the contract's `404 not_found` JSON (README "HTTP contract (v1)") instead
 * of API Gateway's own `{"message":"Not Found"}`. It has no permission and reads nothing,
 * and logs nothing: an unknown path is not the broker's event.
 */
import type { APIGatewayProxyHandlerV2 } from 'aws-lambda';
import { NotFoundError } from './broker/errors.ts';
import { errorAnswer, errorJson } from './http/responses.ts';
import type { HttpHandler } from './http/route.ts';

const notFound: HttpHandler = async () =>
  errorJson(errorAnswer(new NotFoundError('No such route.')));

export const handler = notFound satisfies APIGatewayProxyHandlerV2;
