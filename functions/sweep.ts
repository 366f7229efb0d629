/**
 * Lambda entry of the scheduled sweep (README "Keep-alive and expiry"), invoked by
 * EventBridge Scheduler. Builds its adapters once per cold start; the domain does the rest.
 */

import * as production from './production.ts';
import { createSweepHandler } from './routes/sweep.ts';

const sessions = production.sessions();

export const handler = createSweepHandler({
  config: production.config(),
  store: sessions,
  index: sessions,
  vault: production.vault(),
  credentials: production.credentials(),
  apps: production.apps(),
  salesforce: production.salesforce(),
  clock: production.clock(),
  log: production.log(),
  metrics: production.metrics(),
});
