/**
 * The measuring harness shared by every scenario: runs tasks under tinybench 6, turns latency into
 * operations per second (translations, maps or unmaps, not tinybench iterations), keeps the
 * results, and prints them. Throughput is `opsPerIteration / median latency`, and a group of
 * tasks is measured in `passes` rounds (each task gets time/passes per round) keeping each task's
 * best round: on a shared 2-vCPU machine a burst of someone else's work then skews one round of
 * one task, not the ratio between tasks measured seconds apart.
 * @module
 */
import { Bench } from 'tinybench';

export type Impl = 'wasm' | 'native' | 'js' | 'ts';

export interface Result {
  scenario: string;
  impl: Impl;
  /** Sub-case of a scenario (walk4: 'hot' | 'scattered' tables; map-2m: '1g'). */
  variant?: string;
  opsPerSec: number;
  samples: number;
  /** Free-form facts about the run (IOTLB hit rate, table pages). */
  note?: string;
}

export interface Task {
  scenario: string;
  impl: Impl;
  variant?: string;
  /** Operations one call of `fn` performs. */
  opsPerIteration: number;
  /** The measured body. May return tinybench's `{ overriddenDuration }` to time only a part. */
  fn: () => unknown;
  /** Runs before the task's warm-up and before its measurement (e.g. binding the native core). */
  before?: () => void;
  note?: string;
}

export interface HarnessOptions {
  /** Time budget per task in ms, over all passes. */
  time: number;
  warmupTime: number;
  passes: number;
}

export const now = (): number => performance.now();

/**
 * A task body that runs `first`, then `second` (which undoes it) and reports only the half named
 * by `timed` (tinybench `overriddenDuration`); both count for the time budget.
 */
export function timedHalf(first: () => void, second: () => void, timed: 'first' | 'second'): () => unknown {
  return () => {
    const t0 = now();
    first();
    const t1 = now();
    second();
    const t2 = now();
    return { overriddenDuration: timed === 'first' ? t1 - t0 : t2 - t1, overriddenIterationCost: t2 - t0 };
  };
}

export class Harness {
  readonly results: Result[] = [];

  constructor(private readonly opts: HarnessOptions) {}

  /** Measures `tasks` (in order, `passes` times) and records a result per task. */
  measure(tasks: Task[]): void {
    const best = tasks.map(() => ({ opsPerSec: 0, samples: 0 }));
    const { passes } = this.opts;
    for (let pass = 0; pass < passes; pass++) {
      const bench = new Bench({
        time: this.opts.time / passes, warmupTime: pass === 0 ? this.opts.warmupTime : this.opts.warmupTime / 4,
        throws: true, timestampProvider: 'hrtimeNow',
      });
      for (const t of tasks) bench.add(label(t), t.fn, t.before ? { beforeAll: () => t.before!() } : undefined);
      bench.runSync();
      tasks.forEach((t, i) => {
        const r = bench.getTask(label(t))!.result;
        if (r.state !== 'completed') throw new Error(`bench task ${label(t)} did not complete: ${r.state}`);
        best[i]!.opsPerSec = Math.max(best[i]!.opsPerSec, (t.opsPerIteration * 1000) / r.latency.p50);
        best[i]!.samples += r.latency.samplesCount;
      });
    }
    tasks.forEach((t, i) => this.record({ scenario: t.scenario, impl: t.impl, variant: t.variant, ...best[i]!, note: t.note }));
  }

  /** Records a result measured outside tinybench (worker threads). */
  record(r: Result): void {
    if (r.variant === undefined) delete r.variant;
    if (r.note === undefined) delete r.note;
    this.results.push(r);
    const v = r.variant ? ` (${r.variant})` : '';
    process.stderr.write(`  ${r.scenario}${v} ${r.impl}: ${fmtOps(r.opsPerSec)}/s\n`);
  }

  /** The result of (scenario, impl, variant), if measured. */
  get(scenario: string, impl: Impl, variant?: string): Result | undefined {
    return this.results.find((r) => r.scenario === scenario && r.impl === impl && r.variant === variant);
  }

  /** The results as a fixed-width table, with each row's speed relative to wasm in its scenario. */
  table(): string {
    const rows = [['scenario', 'variant', 'impl', 'ops/s', 'ns/op', 'samples', 'wasm ÷ this', 'note']];
    for (const r of this.results) {
      const wasm = this.get(r.scenario, 'wasm', r.variant);
      rows.push([
        r.scenario, r.variant ?? '', r.impl, fmtOps(r.opsPerSec), (1e9 / r.opsPerSec).toFixed(1), String(r.samples),
        wasm && r.impl !== 'wasm' ? `${(wasm.opsPerSec / r.opsPerSec).toFixed(2)}×` : '', r.note ?? '',
      ]);
    }
    return formatTable(rows);
  }
}

function label(t: Task): string {
  return `${t.scenario}${t.variant ? `/${t.variant}` : ''}/${t.impl}`;
}

/** 123456789 -> '123.5 M'. */
export function fmtOps(x: number): string {
  if (x >= 1e9) return `${(x / 1e9).toFixed(2)} G`;
  if (x >= 1e6) return `${(x / 1e6).toFixed(1)} M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)} k`;
  return x.toFixed(1);
}

/** Left-aligned text columns, right-aligned numeric ones, separated by two spaces. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const numeric = (s: string): boolean => /^[\d.]+( [kMG])?×?$/.test(s);
  return rows
    .map((r) => r.map((cell, c) => (numeric(cell) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd())
    .join('\n');
}
