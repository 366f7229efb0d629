/**
 * Lambda entry for `POST /refresh` (HTTP API, payload format 2.0). Builds the adapters once
 * per cold start; the route does the rest.
 */
import { createRefreshHandler } from './routes/refresh.ts';
import { runtimeFromEnvironment } from './runtime.ts';

const runtime = runtimeFromEnvironment();

export const handler = createRefreshHandler({ ...runtime, config: runtime.config });
