#!/usr/bin/env node
// Long differential-fuzzing campaigns: the engine (src/) against the reference model (test/model/),
// the same harness as test/fuzz.test.ts, bundled from TypeScript on the fly with esbuild.
//
//   npm run fuzz -- --ops 1000000 --seed 42        # exit 0: no divergence; 1: divergence
//   npm run fuzz -- --seed 42 --epoch 17           # rerun one epoch of a campaign
//   npm run fuzz -- --replay fuzz-divergence.json  # rerun a saved (minimised) op list
//   npm run fuzz -- --snapshots 100000 --seed 42   # forged-snapshot campaign (test/model/snapshot-forgery.ts)
//   npm run fuzz -- --help                         # every option (USAGE below)
//
// Every fifth epoch is a guest-table epoch (test/model/guest-fuzz.ts: user-managed and nested HWPTs,
// guest tables mutated in RAM, hwptInvalidate, original and restored engines side by side).
import { build } from 'esbuild';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { badNumber, parseScriptArgs } from './cli-args.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const USAGE = `usage: npm run fuzz -- [--ops N] [--seed S] [--epoch-ops N] [--epoch K] [--minimise-seconds S] [--out FILE]
       npm run fuzz -- --replay FILE
       npm run fuzz -- --snapshots N [--seed S]

  --ops N                operations in all (default 200000)
  --seed S               the campaign's seed (default: random, printed)
  --epoch-ops N          operations per fresh engine (default 2000)
  --epoch K              run only epoch K of the campaign
  --minimise-seconds S   time to minimise a divergence (default 120)
  --out FILE             where a divergence's minimised op list is saved (default fuzz-divergence.json)
  --replay FILE          rerun a saved op list
  --snapshots N          forged-snapshot campaign: N mutated snapshots (test/model/snapshot-forgery.ts)
  -h, --help             this text
Exit status: 0 no divergence, 1 a divergence, 2 wrong arguments.`;

const positiveInteger = (n) => Number.isInteger(n) && n > 0;
const { values: args } = parseScriptArgs({
  usage: USAGE,
  options: {
    ops: { type: 'string' }, seed: { type: 'string' }, 'epoch-ops': { type: 'string' }, epoch: { type: 'string' },
    'minimise-seconds': { type: 'string' }, out: { type: 'string' }, replay: { type: 'string' }, snapshots: { type: 'string' },
  },
  check: (v) =>
    badNumber(v, 'ops', positiveInteger, 'a positive integer') ?? badNumber(v, 'epoch-ops', positiveInteger, 'a positive integer') ??
    badNumber(v, 'epoch', (n) => Number.isInteger(n) && n >= 0, 'an epoch number (0, 1, ...)') ??
    badNumber(v, 'seed', (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer') ??
    badNumber(v, 'minimise-seconds', (n) => n >= 0, 'a number of seconds') ??
    badNumber(v, 'snapshots', positiveInteger, 'a positive integer'),
});

async function loadHarness() {
  const entry = `
    import * as ioasid from './src/index.ts';
    import * as testing from './test/testing.ts';
    export * from './test/model/harness.ts';
    export { opsToJson, opsFromJson, show } from './test/model/ops.ts';
    export { forgeries } from './test/model/snapshot-forgery.ts';
    export { runGuestEpoch } from './test/model/guest-fuzz.ts';
    export const api = { Iommu: ioasid.Iommu, IommuError: ioasid.IommuError, TranslationOut: ioasid.TranslationOut, Translator: ioasid.Translator, FAULT_REASONS: ioasid.FAULT_REASONS, testing };
  `;
  const result = await build({
    stdin: { contents: entry, resolveDir: root, loader: 'ts', sourcefile: 'fuzz-entry.ts' },
    bundle: true, format: 'esm', platform: 'node', target: 'node20', write: false, logLevel: 'error',
  });
  const dir = mkdtempSync(join(tmpdir(), 'ioasid-fuzz-'));
  const file = join(dir, 'harness.mjs');
  writeFileSync(file, result.outputFiles[0].text);
  try {
    return await import(pathToFileURL(file).href);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const h = await loadHarness();
const out = args.out ?? 'fuzz-divergence.json';

if (args.replay) {
  const saved = JSON.parse(readFileSync(args.replay, 'utf8'));
  const ops = h.opsFromJson(JSON.stringify(saved.ops));
  if (saved.guest) {
    const g = h.runGuestEpoch(h.api, 0, 0, ops);
    console.log(`replay of ${ops.length} guest-table ops: ${g.divergence ?? 'no divergence'}`);
    process.exit(g.divergence ? 1 : 0);
  }
  const d = h.replay(h.api, saved.cfg, ops, 1);
  if (!d) {
    console.log(`replay of ${ops.length} ops: no divergence`);
    process.exit(0);
  }
  console.log(`replay of ${ops.length} ops: divergence at op ${d.index}: ${d.what}\n  op     ${h.show(d.op)}${d.engine ? `\n  engine ${d.engine}\n  model  ${d.model}` : ''}`);
  process.exit(1);
}

const seed = args.seed === undefined ? (Math.random() * 2 ** 32) >>> 0 : Number(args.seed) >>> 0;

if (args.snapshots !== undefined) {
  // Forged snapshots: each accepted one must stay isolated and survive a fuzz slice.
  const n = Number(args.snapshots);
  if (!(n > 0)) throw new Error('--snapshots must be positive');
  console.log(`forged snapshots: seed ${seed}, ${n} mutations (reproduce: npm run fuzz -- --snapshots ${n} --seed ${seed})`);
  const t0 = Date.now();
  const r = h.forgeries(seed, n);
  console.log(`forged snapshots: ${r.accepted} accepted, ${r.refused} refused, ${r.violation ? `VIOLATION: ${r.violation}` : 'no violation'} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  process.exit(r.violation ? 1 : 0);
}

const totalOps = Number(args.ops ?? 200_000);
const epochOps = Number(args['epoch-ops'] ?? 2000);
const minimiseMs = Number(args['minimise-seconds'] ?? 120) * 1000;

const epochs = args.epoch !== undefined ? [Number(args.epoch)] : Array.from({ length: Math.ceil(totalOps / epochOps) }, (_, k) => k);
console.log(`fuzz: seed ${seed}, ${args.epoch !== undefined ? `epoch ${args.epoch} only` : `${totalOps} ops`} in epochs of ${epochOps} (reproduce: npm run fuzz -- --ops ${totalOps} --seed ${seed})`);
const started = Date.now();
let lastReport = started;
let done = 0;
for (const k of epochs) {
  const n = Math.min(epochOps, args.epoch !== undefined ? epochOps : totalOps - k * epochOps);
  if (k % 5 === 4) {
    const g = h.runGuestEpoch(h.api, h.epochSeed(seed, k), n);
    done += g.ops;
    if (g.divergence) {
      console.log(`\nguest-table divergence after ${done} ops (epoch ${k}); minimising (up to ${minimiseMs / 1000} s)...`);
      const fails = (ops) => h.runGuestEpoch(h.api, 0, 0, ops).divergence !== undefined;
      const min = h.minimise(g.trace, fails, minimiseMs);
      console.log(`${g.divergence}\nminimised to ${min.length} ops:\n${min.map((o) => `  ${h.show(o)}`).join('\n')}`);
      writeFileSync(out, JSON.stringify({ seed, epoch: k, guest: true, ops: JSON.parse(h.opsToJson(min)) }, null, 1));
      console.log(`\nrerun the epoch with: npm run fuzz -- --seed ${seed} --epoch ${k} --epoch-ops ${epochOps}`);
      process.exit(1);
    }
    continue;
  }
  const r = h.runEpoch(h.api, h.epochSeed(seed, k), n);
  done += r.ops;
  if (r.divergence) {
    console.log(`\ndivergence after ${done} ops; minimising (up to ${minimiseMs / 1000} s)...`);
    const min = h.minimiseEpoch(h.api, r, minimiseMs);
    console.log(h.report(seed, k, r, min.ops, min.divergence));
    writeFileSync(out, JSON.stringify({ seed, epoch: k, cfg: r.cfg, ops: JSON.parse(h.opsToJson(min.ops)) }, null, 1));
    console.log(`\nminimised op list saved to ${out}; rerun it with: npm run fuzz -- --replay ${out}`);
    console.log(`rerun the epoch with: npm run fuzz -- --seed ${seed} --epoch ${k} --epoch-ops ${epochOps}`);
    process.exit(1);
  }
  if (Date.now() - lastReport > 10_000) {
    lastReport = Date.now();
    console.log(`  ${done} ops, ${((Date.now() - started) / 1000).toFixed(0)} s, no divergence`);
  }
}
console.log(`fuzz: ${done} ops, seed ${seed}, zero divergences (${((Date.now() - started) / 1000).toFixed(1)} s)`);
