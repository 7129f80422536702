import { defineConfig } from 'tsup';

// ESM + CJS + declarations; the Wasm is already embedded (src/generated/core-wasm.ts), so the
// bundle needs no loader and runs unchanged in Node, browsers and workers.
export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  // tsup 8 (the last release that supports Node 20) sets `baseUrl` for its declaration build, which
  // TypeScript 6 reports as deprecated (TS5101) unless told to accept it.
  dts: { compilerOptions: { ignoreDeprecations: '6.0', stripInternal: true } },
  clean: true,
  target: 'es2022',
  platform: 'neutral',
  sourcemap: false,
  minifySyntax: true,
});
