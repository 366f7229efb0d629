import { defineConfig } from 'vitest/config';

/** `npm run test:browser`: only the real-browser suite (needs Debian's Chromium). */
export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    // The functions' JSON logs are shown only for a failing test.
    setupFiles: ['test/support/quiet-output.ts'],
    // Builds the client package (client/dist) that its tests load.
    globalSetup: ['test/support/build-client.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
