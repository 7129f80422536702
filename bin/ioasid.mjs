#!/usr/bin/env node
// The `ioasid` command line (package.json "bin"). Its commands use the built package
// (../dist/index.js), so this entry checks for the build before loading them (cli/main.mjs).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/index.js', import.meta.url);
if (!existsSync(dist)) {
  console.error(`ioasid: the package is not built (${fileURLToPath(dist)} is missing): run npm run build`);
  process.exit(1);
}
const { main } = await import('./cli/main.mjs');
process.exitCode = await main(process.argv.slice(2));
