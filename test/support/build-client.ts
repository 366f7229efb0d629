import { buildClient } from '../../client/scripts/build.ts';

/**
 * Vitest global setup: builds `client/dist` once before the suites, so the browser and
 * packaging tests run what `npm pack` ships.
 */
export default async function setup(): Promise<void> {
  await buildClient();
}
