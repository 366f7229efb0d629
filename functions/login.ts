/**
 * Lambda entry for `GET /login` (HTTP API, payload format 2.0). Builds its adapters once
 * per cold start; the route does the rest.
 */

import type { APIGatewayProxyHandlerV2 } from 'aws-lambda';
import * as production from './production.ts';
import { createLoginHandler } from './routes/login.ts';

export const handler = createLoginHandler({
  config: production.config(),
  transactions: production.transactions(),
  credentials: production.credentials(),
  apps: production.apps(),
  salesforce: production.salesforce(),
  clock: production.clock(),
  log: production.log(),
  metrics: production.metrics(),
}) satisfies APIGatewayProxyHandlerV2;
