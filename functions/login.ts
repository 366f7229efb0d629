/**
 * Lambda entry for `GET /login` (HTTP API, payload format 2.0). Builds the adapters once
 * per cold start; the route does the rest.
 */
import { createLoginHandler } from './routes/login.ts';
import { runtimeFromEnvironment } from './runtime.ts';

export const handler = createLoginHandler(runtimeFromEnvironment());
