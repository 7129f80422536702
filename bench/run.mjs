#!/usr/bin/env node
// Entry of `npm run bench` (after `npm run build`): bundles the TypeScript bench (bench/*.ts, which
// imports src/ and assembly/abi.ts directly) with esbuild into build/bench/ (gitignored), then runs
// it. Arguments pass through to bench/main.ts, which parses them (npm run bench -- --help).
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'build', 'bench');
await build({
  entryPoints: [join(root, 'bench', 'main.ts'), join(root, 'bench', 'worker.ts')],
  outdir,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  // Folds `abi.X >>> 2` and cross-module ABI constants to literals in the hot loops.
  minifySyntax: true,
  logLevel: 'warning',
});
const { main } = await import(pathToFileURL(join(outdir, 'main.mjs')).href);
process.exitCode = await main(process.argv.slice(2));
