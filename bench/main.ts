/**
 * The bench suite: runs every scenario group, prints the table of throughput and ratios, checks
 * the targets (targets.ts), runs the scale script (scale.ts) and optionally writes JSON.
 *
 * Arguments: --json FILE; --scale (only the scale script); --no-scale; --quick (short tasks, for
 * trying things out: numbers are noisier); --only GROUP[,GROUP] with groups hit, walk, pasid, map,
 *  workers, nested, dma, virtio, riscv, inval.
 * @module
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Harness } from './harness';
import { watchMachine } from './machine';
import { loadNative } from './native/addon';
import { mapScenarios } from './scenarios/map';
import { hitScenarios, pasidScenario, walkScenarios } from './scenarios/translations';
import type { BenchEnv } from './scenarios/translate';
import { workerScenarios } from './scenarios/workers';
import { nestedScenarios } from './scenarios/nested';
import { dmaScenarios } from './scenarios/dma';
import { virtioScenarios } from './scenarios/virtio';
import { riscvScenarios } from './scenarios/riscv';
import { invalidateScenarios } from './scenarios/invalidate';
import { runScale, type ScaleReport } from './scale';
import { evaluateTargets, formatTargets } from './targets';

interface Args {
  json?: string;
  scaleOnly: boolean;
  scale: boolean;
  quick: boolean;
  only?: Set<string>;
}

const GROUPS: Record<string, (env: BenchEnv) => void | Promise<void>> = {
  hit: hitScenarios,
  walk: walkScenarios,
  pasid: pasidScenario,
  map: mapScenarios,
  workers: workerScenarios,
  nested: nestedScenarios,
  dma: dmaScenarios,
  virtio: virtioScenarios,
  riscv: riscvScenarios,
  inval: invalidateScenarios,
};

function parseArgs(argv: string[]): Args {
  const a: Args = { scaleOnly: false, scale: true, quick: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--json') a.json = argv[++i] ?? usage('--json needs a file name');
    else if (arg === '--scale') a.scaleOnly = true;
    else if (arg === '--no-scale') a.scale = false;
    else if (arg === '--quick') a.quick = true;
    else if (arg === '--only') a.only = new Set((argv[++i] ?? usage('--only needs groups')).split(','));
    else usage(`unknown argument ${arg}`);
  }
  for (const g of a.only ?? []) if (!(g in GROUPS)) usage(`unknown group ${g}`);
  return a;
}

function usage(message: string): never {
  throw new Error(`${message}\nusage: npm run bench -- [--json FILE] [--scale | --no-scale] [--quick] [--only ${Object.keys(GROUPS).join(',')}]`);
}

/** Runs the suite; returns the process exit code (1 when a cross-check fails). */
export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const date = new Date().toISOString();
  const cpu = `${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}`;
  console.log(`ioasid bench — ${date} — Node ${process.version} — ${cpu}`);

  const machineLoad = watchMachine();
  const h = new Harness(args.quick ? { time: 150, warmupTime: 50, passes: 1 } : { time: 1200, warmupTime: 100, passes: 6 });
  let scale: ScaleReport | undefined;
  if (!args.scaleOnly) {
    const native = loadNative(root);
    console.log(native.ok ? `native baseline: ${native.compiler}, -O2` : `native baseline SKIPPED: ${native.reason}`);
    const env: BenchEnv = { h, native, quick: args.quick };
    for (const [name, run] of Object.entries(GROUPS)) {
      if (args.only && !args.only.has(name)) continue;
      process.stderr.write(`[${name}]\n`);
      await run(env);
    }
    console.log(`\n${h.table()}`);
  }
  if (args.scale || args.scaleOnly) scale = runScale();
  const targets = evaluateTargets(h, scale);
  console.log(`\n${formatTargets(targets)}`);
  const machine = machineLoad();
  if (machine) {
    console.log(`\nmachine during the run: ${machine.busyPct.toFixed(0)}% of CPU time busy (all processes), ` +
      `${machine.stealPct.toFixed(0)}% stolen by the hypervisor, load average ${machine.loadAvg1.toFixed(2)}`);
  }
  if (args.json) {
    writeFileSync(args.json, `${JSON.stringify({ date, node: process.version, cpu, results: h.results, targets, scale, machine }, null, 2)}\n`);
    console.log(`\nwrote ${args.json}`);
  }
  return 0;
}
