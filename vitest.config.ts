import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The functions' JSON logs are shown only for a failing test.
    setupFiles: ['test/support/quiet-output.ts'],
    // Builds the client package (client/dist) that its tests load.
    globalSetup: ['test/support/build-client.ts'],
    testTimeout: 30_000,
    // Setup hooks synthesize the app with real esbuild bundling or start the local stack;
    // on a shared two-core machine running every file at once that can pass 30 s.
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
