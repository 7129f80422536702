#!/usr/bin/env node
// Replays RISC-V IOMMU register-level vector files through RiscvIommu (dist/), printing pass counts
// per tag and per step kind and the first mismatching case and step.
//
//   npm run vectors -- FILE... [--all] [--ram MODE]   # exit 0: every step of every case passed; 1: a mismatch
//   --all prints every failing case, not only the first.
//   --ram engine|memory|external: where guest RAM lives (default engine; see README "Embedding in an emulator").
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseScriptArgs } from './cli-args.mjs';
import { RAM_MODES, replayFile, summarize } from './riscv-iommu-replay.mjs';

const USAGE = `usage: npm run vectors -- FILE... [--all] [--ram ${RAM_MODES.join('|')}]
  --all        print every failing case, not only the first
  --ram MODE   where guest RAM lives (default engine)`;
const { values, positionals } = parseScriptArgs({
  usage: USAGE,
  allowPositionals: true,
  options: { all: { type: 'boolean', default: false }, ram: { type: 'string', default: 'engine' } },
  check: (v, files) =>
    files.length === 0 ? 'no vector file given' : RAM_MODES.includes(v.ram) ? undefined : `--ram: expected one of ${RAM_MODES.join(', ')}, got '${v.ram}'`,
});
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
  const results = replayFile(lib, vectors, values.ram);
  console.log(`${file} (guest RAM: ${values.ram}):`);
  for (const line of summarize(results)) console.log(`  ${line}`);
  if (values.all) for (const r of results.filter((x) => !x.passed)) console.log(`  FAIL ${r.name}: ${r.problem}`);
  if (results.some((r) => !r.passed)) failed = true;
}
process.exit(failed ? 1 : 0);
