#!/usr/bin/env node
// Long concurrency soaks: the owner (src/, bundled on the fly with esbuild, with the reference model
// of test/model/) runs random control ops checked against the model while worker translators
// (test/workers/soak-worker.mjs over dist/) check every result against the model's history: zero
// stale-after-return and zero torn results. Then a domain-slot reuse race (a device detached while
// another FD's HWPT takes its domain slot at once) for a fifth of the time.
//
//   npm run soak -- --seconds 60 [--seed S] [--workers 3]     # exit 0: clean; 1: a violation
import { build } from 'esbuild';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { badNumber, parseScriptArgs } from './cli-args.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const USAGE = `usage: npm run soak -- [--seconds N] [--seed S] [--workers N]

  --seconds N   how long (default 60): 80 % random control ops checked by workers, 20 % the reuse race
  --seed S      the owner's seed (default: random, printed)
  --workers N   worker translators, at least 2 (default 3)
  -h, --help    this text
Exit status: 0 clean, 1 a violation, 2 wrong arguments.`;
const { values: args } = parseScriptArgs({
  usage: USAGE,
  options: { seconds: { type: 'string' }, seed: { type: 'string' }, workers: { type: 'string' } },
  check: (v) =>
    badNumber(v, 'seconds', (n) => n > 0, 'a positive number') ??
    badNumber(v, 'seed', (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer') ??
    badNumber(v, 'workers', (n) => Number.isInteger(n) && n >= 2, 'an integer of at least 2'),
});
const seconds = Number(args.seconds ?? 60);
const seed = args.seed === undefined ? (Math.random() * 2 ** 32) >>> 0 : Number(args.seed) >>> 0;
const workers = Number(args.workers ?? 3);
if (!existsSync(join(root, 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` (npm run soak does)');

async function load() {
  const entry = `
    import * as ioasid from './src/index.ts';
    import * as testing from './test/testing.ts';
    export { SoakOwner, HISTORY_CAP, CTL_READY } from './test/model/soak.ts';
    export { runReuseRace } from './test/model/reuse-race.ts';
    export const api = { Iommu: ioasid.Iommu, IommuError: ioasid.IommuError, TranslationOut: ioasid.TranslationOut, FAULT_REASONS: ioasid.FAULT_REASONS, testing };
    export const ioasidApi = ioasid;
  `;
  const result = await build({
    stdin: { contents: entry, resolveDir: root, loader: 'ts', sourcefile: 'soak-entry.ts' },
    bundle: true, format: 'esm', platform: 'node', target: 'node20', write: false, logLevel: 'error',
  });
  const dir = mkdtempSync(join(tmpdir(), 'ioasid-soak-'));
  const file = join(dir, 'soak.mjs');
  writeFileSync(file, result.outputFiles[0].text);
  try {
    return await import(pathToFileURL(file).href);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const s = await load();
const tick = () => new Promise((r) => setImmediate(r));
const spawn = (url, workerData) =>
  new Promise((resolve, reject) => {
    const w = new Worker(url, { workerData });
    w.once('message', resolve);
    w.once('error', reject);
  });

// ---- phase 1: random control ops against the model, workers checking the history ---------------
console.log(`soak: seed ${seed}, ${seconds} s, ${workers} worker translators (reproduce the owner's ops: npm run soak -- --seconds ${seconds} --seed ${seed})`);
const owner = new s.SoakOwner(s.api, seed, workers + 1);
const workerUrl = new URL('../test/workers/soak-worker.mjs', import.meta.url);
const reports = Array.from({ length: workers }, (_, i) =>
  spawn(workerUrl, { handle: owner.engine.iommu.translatorHandle({ batchCapacity: 32 }), shared: owner.shared, cap: s.HISTORY_CAP, mode: i % 2 ? 'batch' : 'call', seed: seed + i + 1 }));
const ctl = new Int32Array(owner.shared.control);
while (Atomics.load(ctl, s.CTL_READY) < workers) await new Promise((r) => setTimeout(r, 5));
const mainMs = seconds * 1000 * 0.8;
const started = performance.now();
let lastReport = started;
let divergence;
while (performance.now() - started < mainMs && !divergence) {
  for (let i = 0; i < 64 && !divergence; i++) divergence = owner.step();
  if (performance.now() - lastReport > 10_000) {
    lastReport = performance.now();
    console.log(`  ${((lastReport - started) / 1000).toFixed(0)} s: ${owner.version} control ops`);
  }
  await tick();
}
owner.stop();
const results = await Promise.all(reports);
const guards = s.api.testing.guardViolations(owner.engine.iommu);
let failed = false;
if (divergence) {
  console.log(`DIVERGENCE between engine and model: ${divergence}`);
  failed = true;
}
if (guards.length) {
  console.log(`guard overwritten: ${JSON.stringify(guards)}`);
  failed = true;
}
for (const r of results) {
  console.log(`  worker (${r.mode}): ${r.checked} checked, ${r.ok} translated, ${r.stale} stale, ${r.torn} torn, ${r.unchecked} unchecked`);
  if (r.stale || r.torn || r.firstViolations.length) {
    console.log(`  first violations: ${JSON.stringify(r.firstViolations)}`);
    failed = true;
  }
}
console.log(`phase 1: ${owner.version} control ops (${owner.outcomes.ok} ok, ${owner.outcomes.errno} errno), ${results.reduce((n, r) => n + r.checked, 0)} worker translations checked`);

// ---- phase 2: a detach racing walks while another FD reuses the domain slot at once ----------
const rr = await s.runReuseRace(s.ioasidApi.Iommu, new URL('../test/workers/soak-reuse-worker.mjs', import.meta.url), seconds * 1000 * 0.2);
console.log(`phase 2: ${rr.rounds} detach/reuse rounds, ${rr.checked} worker translations: ${rr.crossed} through another FD's tables, ${rr.garbage} garbage`);
if (rr.crossed || rr.garbage) failed = true;

if (failed) {
  console.log(`soak FAILED (seed ${seed})`);
  process.exit(1);
}
console.log(`soak: clean — 0 stale, 0 torn, 0 divergences (seed ${seed})`);
