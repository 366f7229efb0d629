/**
 * Lambda entry for the service API (HTTP API, payload format 2.0, `AWS_IAM` routes):
 * `POST /connections/{connection_id}/token`, `GET` and `DELETE /connections/{connection_id}`,
 * `GET` and `DELETE /connections`. Builds its adapters once per cold start.
 */

import type { APIGatewayProxyHandlerV2 } from 'aws-lambda';
import * as production from './production.ts';
import { createServiceHandler } from './routes/service.ts';

export const handler = createServiceHandler({
  config: production.config(),
  store: production.sessions(),
  vault: production.vault(),
  credentials: production.credentials(),
  salesforce: production.salesforce(),
  apps: production.apps(),
  alerts: production.alerts(),
  clock: production.clock(),
  log: production.log(),
  metrics: production.metrics(),
}) satisfies APIGatewayProxyHandlerV2;
