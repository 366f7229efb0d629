import { defineConfig } from 'vitest/config';

/** `npm run test:browser`: only the real-browser suite (needs Debian's Chromium). */
export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
