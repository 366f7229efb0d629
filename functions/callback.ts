/**
 * Lambda entry for `GET /callback` (HTTP API, payload format 2.0). Builds the adapters
 * once per cold start; the route does the rest.
 */
import { createCallbackHandler } from './routes/callback.ts';
import { runtimeFromEnvironment } from './runtime.ts';

export const handler = createCallbackHandler(runtimeFromEnvironment());
