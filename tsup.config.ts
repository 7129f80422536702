import { defineConfig } from 'tsup';

// ESM + CJS + declarations; the Wasm is already embedded (src/generated/core-wasm.ts), so the
// bundle needs no loader and runs unchanged in Node, browsers and workers.
export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  target: 'es2022',
  platform: 'neutral',
  sourcemap: false,
});
