import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The functions' JSON logs are shown only for a failing test.
    setupFiles: ['test/support/quiet-output.ts'],
    // Builds the client package (client/dist) that its tests load.
    globalSetup: ['test/support/build-client.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
  },
});
