/**
 * Lambda entry for `GET /callback` (HTTP API, payload format 2.0). Builds its adapters
 * once per cold start; the route does the rest.
 */

import type { APIGatewayProxyHandlerV2 } from 'aws-lambda';
import * as production from './production.ts';
import { createCallbackHandler } from './routes/callback.ts';

export const handler = createCallbackHandler({
  config: production.config(),
  transactions: production.transactions(),
  store: production.sessions(),
  codes: production.codes(),
  vault: production.vault(),
  credentials: production.credentials(),
  apps: production.apps(),
  alerts: production.alerts(),
  salesforce: production.salesforce(),
  clock: production.clock(),
  log: production.log(),
  metrics: production.metrics(),
}) satisfies APIGatewayProxyHandlerV2;
