/**
 * Lambda entry for `GET /session` (HTTP API, payload format 2.0): one DynamoDB read, no
 * KMS, no secret, no Salesforce. Builds its adapters once per cold start.
 */

import type { APIGatewayProxyHandlerV2 } from 'aws-lambda';
import * as production from './production.ts';
import { createSessionHandler } from './routes/session.ts';

export const handler = createSessionHandler({
  config: production.config(),
  store: production.sessions(),
  clock: production.clock(),
  log: production.log(),
  metrics: production.metrics(),
}) satisfies APIGatewayProxyHandlerV2;
