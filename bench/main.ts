/**
 * The bench suite: runs every scenario group, prints the table of throughput and ratios, checks
 * the targets (targets.ts), runs the scale script (scale.ts) and optionally writes JSON.
 *
 * Arguments: see USAGE below (`npm run bench -- --help`).
 * @module
 */
import { writeFileSync } from 'node:fs';
import { parseScriptArgs } from '../scripts/cli-args.mjs';
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

const USAGE = `usage: npm run bench -- [--json FILE] [--scale | --no-scale] [--quick] [--only GROUP[,GROUP]]

  --json FILE    also write the results as JSON to FILE
  --scale        only the scale and memory script (bench/scale.ts); --no-scale: everything but it
  --quick        short tasks (a smoke run: numbers are noisier)
  --only GROUPS  comma-separated groups: ${Object.keys(GROUPS).join(', ')}
  -h, --help     this text
Exit status: 1 when a cross-check fails, 2 on wrong arguments.`;

/** Parses the suite's arguments with node:util parseArgs (exits 2 with the usage when they are wrong). */
function parseArgs(argv: string[]): Args {
  const { values } = parseScriptArgs({
    usage: USAGE,
    argv,
    options: { json: { type: 'string' }, scale: { type: 'boolean' }, 'no-scale': { type: 'boolean' }, quick: { type: 'boolean' }, only: { type: 'string' } },
    check: (v: { only?: string; scale?: boolean; 'no-scale'?: boolean }) =>
      v.scale && v['no-scale'] ? '--scale and --no-scale exclude each other'
        : v.only?.split(',').filter((g) => !(g in GROUPS)).map((g) => `--only: unknown group '${g}'`)[0],
  });
  const only = values.only as string | undefined;
  return {
    json: values.json as string | undefined,
    scaleOnly: values.scale === true,
    scale: values['no-scale'] !== true,
    quick: values.quick === true,
    only: only === undefined ? undefined : new Set(only.split(',')),
  };
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
