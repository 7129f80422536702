#!/usr/bin/env node
// Replays RISC-V IOMMU register-level vector files through RiscvIommu (dist/), printing pass counts
// per tag and per step kind and the first mismatching case and step.
//
//   npm run vectors -- FILE... [--all]     # exit 0: every step of every case passed; 1: a mismatch
//   --all prints every failing case, not only the first.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { replayFile, summarize } from './riscv-iommu-replay.mjs';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { all: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' } } });
if (values.help || positionals.length === 0) {
  console.log('usage: npm run vectors -- FILE... [--all]');
  process.exit(positionals.length === 0 && !values.help ? 2 : 0);
}
const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'index.js');
if (!existsSync(dist)) {
  console.error('dist/ is missing: run `npm run build` first');
  process.exit(2);
}
const lib = await import(pathToFileURL(dist).href);
let failed = false;
for (const file of positionals) {
  let vectors;
  try {
    vectors = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    console.error(`${file}: ${e.message}`);
    failed = true;
    continue;
  }
  const results = replayFile(lib, vectors);
  console.log(`${file}:`);
  for (const line of summarize(results)) console.log(`  ${line}`);
  if (values.all) for (const r of results.filter((x) => !x.passed)) console.log(`  FAIL ${r.name}: ${r.problem}`);
  if (results.some((r) => !r.passed)) failed = true;
}
process.exit(failed ? 1 : 0);
