import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/node20-polyfills.mjs'],
    testTimeout: 30_000,
    pool: 'threads',
  },
});
