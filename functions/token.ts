/**
 * Lambda entry for `POST /token` (HTTP API, payload format 2.0): a registered app redeems
 * its one-time broker code for the session handle. No Salesforce call and no secret on the
 * way to a handle; KMS and Salesforce only to end the connection of a replayed code.
 */

import type { APIGatewayProxyHandlerV2 } from 'aws-lambda';
import * as production from './production.ts';
import { createTokenHandler } from './routes/token.ts';

export const handler = createTokenHandler({
  config: production.config(),
  codes: production.codes(),
  store: production.sessions(),
  vault: production.vault(),
  salesforce: production.salesforce(),
  apps: production.appHosts(),
  clock: production.clock(),
  log: production.log(),
  metrics: production.metrics(),
}) satisfies APIGatewayProxyHandlerV2;
