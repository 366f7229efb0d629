/**
 * Lambda entry for `POST /logout` (HTTP API, payload format 2.0). Builds its adapters
 * once per cold start; the route does the rest. No client credentials: Salesforce's
 * revocation endpoint needs none.
 */

import type { APIGatewayProxyHandlerV2 } from 'aws-lambda';
import * as production from './production.ts';
import { createLogoutHandler } from './routes/logout.ts';

export const handler = createLogoutHandler({
  config: production.config(),
  store: production.sessions(),
  vault: production.vault(),
  salesforce: production.salesforce(),
  apps: production.appHosts(),
  clock: production.clock(),
  log: production.log(),
  metrics: production.metrics(),
}) satisfies APIGatewayProxyHandlerV2;
