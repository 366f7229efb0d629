/**
 * Lambda entry for `POST /logout` (HTTP API, payload format 2.0). Builds the adapters once
 * per cold start; the route does the rest.
 */
import { createLogoutHandler } from './routes/logout.ts';
import { runtimeFromEnvironment } from './runtime.ts';

export const handler = createLogoutHandler(runtimeFromEnvironment());
