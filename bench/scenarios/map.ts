/**
 * Map/unmap scenarios, through the public control API with a device attached (so every map and
 * unmap also programs the domain's page table in the Wasm core):
 *
 * - map-4k / unmap-4k: 256 single-page `fd.ioasMap` / `fd.ioasUnmap` calls per iteration at
 *   random IOVAs in [2^47, 2^48) (each page in its own leaf table, so map allocates tables and unmap
 *   retires them), random output addresses, beside 4096 resident pages. Each iteration times only
 *   its half (tinybench `overriddenDuration`) and undoes it untimed. The ts baseline does the same
 *   with its own Map-based map/unmap (unmap flushes its IOTLB).
 * - map-4k-batch / unmap-4k-batch: the same 256 pages as one `fd.ioasMapBatch` / `ioasUnmapBatch`
 *   call per iteration (typed-array requests, per-entry results), against the same ts baseline.
 * - map-4k-batch / unmap-4k-batch variant core: the page-table work of those batches alone
 *   (core-floor.ts), the floor under the batched API.
 * - map-2m: 64 aligned 2 MiB maps per iteration (one level-1 leaf each); variant 1g: 16 aligned
 *   1 GiB maps (one level-2 leaf each). Wasm only: the ts twin has 4 KiB leaves only.
 * @module
 */
import { Access } from '../../src/index';
import { timedHalf, type Task } from '../harness';
import { PAGE, hotPages, makeTwin, mapPages, randomBases, randomPhys, ridSpace, rng, type Page, type Twin, type Space } from '../setup';
import type { BenchEnv } from './translate';
import { coreFloorTasks } from './core-floor';

const K4 = 256;
const K2M = 64;
const K1G = 16;

/** Throws unless the engine and the twin translate every page of `pages` alike (or both fault). */
function crossCheck(t: Twin, pages: Page[], size: bigint, mapped: boolean): void {
  for (const p of pages) {
    const iova = p.iova + size - 8n;
    const w = t.iommu.translate(t.dev.rid, 0, iova, Access.Read);
    const want = p.phys + size - 8n;
    const ok = mapped ? w.ok && w.phys === want && w.size === size : !w.ok;
    const tsOk = size !== PAGE || (mapped ? t.ts.translate(t.dev.rid, 0, iova, Access.Read).phys === want : !t.ts.translate(t.dev.rid, 0, iova, Access.Read).ok);
    if (!ok || !tsOk) throw new Error(`map cross-check failed at 0x${iova.toString(16)}: wasm ${w.ok ? `0x${w.phys.toString(16)}/${w.size}` : w.fault?.reason}, expected ${mapped ? `0x${want.toString(16)}` : 'a fault'}`);
  }
}

/** One iteration: `first` over every page, then `second` over every page, which undoes it; only `timed` counts. */
function half(pages: Page[], first: (p: Page) => void, second: (p: Page) => void, timed: 'first' | 'second'): () => unknown {
  return timedHalf(() => pages.forEach(first), () => pages.forEach(second), timed);
}

export function mapScenarios(env: BenchEnv): void {
  const next = rng(6);
  const t = makeTwin();
  const s: Space = ridSpace(t);
  const resident = hotPages(next, 1n << 30n, 4096);
  mapPages(t, s, resident); // resident pages beside the churn
  const { fd } = t;
  const scattered = (count: number, size: bigint): Page[] =>
    randomBases(next, 47, count, size).map((iova) => ({ iova: iova + (1n << 47n), phys: (randomPhys(next) / size) * size + size }));

  const p4 = scattered(K4, PAGE);
  const wasmMap = (p: Page): void => void fd.ioasMap(s.ioas, { iova: p.iova, length: PAGE, phys: p.phys });
  const wasmUnmap = (p: Page): void => void fd.ioasUnmap(s.ioas, p.iova, PAGE);
  const tsMap = (p: Page): void => s.domain.map(p.iova, p.phys, PAGE, 3);
  const tsUnmap = (p: Page): void => void s.domain.unmap(p.iova, PAGE);
  p4.forEach((p) => (wasmMap(p), tsMap(p)));
  crossCheck(t, p4, PAGE, true);
  p4.forEach((p) => (wasmUnmap(p), tsUnmap(p)));
  crossCheck(t, p4, PAGE, false);

  // The batch API over the same pages: requests written once, each call checked entry by entry.
  const mapReq = { entries: BigUint64Array.from(p4.flatMap((p) => [p.iova, PAGE, p.phys])), results: new Int32Array(K4) };
  const unmapReq = { entries: BigUint64Array.from(p4.flatMap((p) => [p.iova, PAGE])), results: new Int32Array(K4) };
  const batchMap = (): void => {
    if (fd.ioasMapBatch(s.ioas, mapReq) !== K4) throw new Error(`map-4k-batch: entries failed: ${mapReq.results.join(',')}`);
  };
  const batchUnmap = (): void => {
    if (fd.ioasUnmapBatch(s.ioas, unmapReq) !== K4) throw new Error(`unmap-4k-batch: entries failed: ${unmapReq.results.join(',')}`);
  };
  batchMap();
  p4.forEach(tsMap); // the twin holds the same pages for the check
  crossCheck(t, p4, PAGE, true);
  batchUnmap();
  p4.forEach(tsUnmap);
  crossCheck(t, p4, PAGE, false);
  const batchHalf = (timed: 'first' | 'second'): (() => unknown) => timedHalf(batchMap, batchUnmap, timed);

  const big = (size: bigint, count: number): { pages: Page[]; map: (p: Page) => void; unmap: (p: Page) => void } => {
    const pages = scattered(count, size);
    const map = (p: Page): void => void fd.ioasMap(s.ioas, { iova: p.iova, length: size, phys: p.phys });
    const unmap = (p: Page): void => void fd.ioasUnmap(s.ioas, p.iova, size);
    pages.forEach(map);
    crossCheck(t, pages, size, true);
    pages.forEach(unmap);
    return { pages, map, unmap };
  };
  const m2 = big(2n << 20n, K2M);
  const m1g = big(1n << 30n, K1G);

  const tasks: Task[] = [
    { scenario: 'map-4k', impl: 'wasm', opsPerIteration: K4, fn: half(p4, wasmMap, wasmUnmap, 'first') },
    { scenario: 'map-4k', impl: 'ts', opsPerIteration: K4, fn: half(p4, tsMap, tsUnmap, 'first') },
    { scenario: 'unmap-4k', impl: 'wasm', opsPerIteration: K4, fn: half(p4, wasmMap, wasmUnmap, 'second') },
    { scenario: 'unmap-4k', impl: 'ts', opsPerIteration: K4, fn: half(p4, tsMap, tsUnmap, 'second') },
    { scenario: 'map-4k-batch', impl: 'wasm', opsPerIteration: K4, fn: batchHalf('first') },
    { scenario: 'unmap-4k-batch', impl: 'wasm', opsPerIteration: K4, fn: batchHalf('second') },
    ...coreFloorTasks(p4, resident),
    { scenario: 'map-2m', impl: 'wasm', opsPerIteration: K2M, fn: half(m2.pages, m2.map, m2.unmap, 'first') },
    { scenario: 'map-2m', impl: 'wasm', variant: '1g', opsPerIteration: K1G, fn: half(m1g.pages, m1g.map, m1g.unmap, 'first') },
  ];
  env.h.measure(tasks);
  crossCheck(t, p4, PAGE, false);
}
