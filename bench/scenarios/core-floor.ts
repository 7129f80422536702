/**
 * The floor under the batched control API: `map-4k-batch` / `unmap-4k-batch` variant `core` call
 * the Wasm core's own mapBatch / unmapBatch exports on MAPREC records written once, for the same
 * 256 pages beside the same resident ones, in a domain of an engine of their own (so its spare
 * tables do not count against the map rows' engine-wide bound, assembly/spare.ts). That is the page-table work of
 * `fd.ioasMapBatch` with no JS at all: no checks, no area bookkeeping, no record writing. Issue 14
 * asks the whole API for ≥ 10× the ts per-call map; these rows show what the table work alone
 * costs against the same budget (bench/README.md). Not a public path: the engine is reached as
 * test/testing.ts reaches it.
 * @module
 */
import * as abi from '../../assembly/abi';
import { engineBehind } from '../../src/iommufd/fd-state';
import { Iommu } from '../../src/index';
import { timedHalf, type Task } from '../harness';
import type { Page } from '../setup';

/** The two `core` tasks over `pages` (4 KiB each), with `resident` mapped beside them. */
export function coreFloorTasks(pages: readonly Page[], resident: readonly Page[]): Task[] {
  const engine = engineBehind(Iommu.createSync());
  if (!engine) throw new Error('core-floor: no engine behind the Iommu');
  const core = engine.core;
  const ex = core.exports;
  let domain = 0;
  for (let i = 1; i < 64 && domain === 0; i++) if (ex.domainInit(i, 4) === abi.STATUS_OK) domain = i; // a fresh engine: slot 1
  if (domain === 0) throw new Error('core-floor: no free domain slot');
  for (const p of resident) if (ex.map(domain, p.iova, p.phys, 4096n, abi.PTE_R | abi.PTE_W) !== abi.STATUS_OK) throw new Error('core-floor: resident map failed');
  const n = pages.length;
  const pagesNeeded = Math.ceil((n * abi.MAPREC_SIZE) / abi.PAGE_SIZE);
  const maps = ex.bufferAlloc(pagesNeeded);
  const unmaps = ex.bufferAlloc(pagesNeeded);
  if (maps === 0 || unmaps === 0) throw new Error('core-floor: no buffer');
  core.sync();
  const w = new BigUint64Array(core.memory.buffer);
  pages.forEach((p, i) => {
    const m = (maps + i * abi.MAPREC_SIZE) / 8;
    w[m + abi.MAPREC_IOVA / 8] = p.iova;
    w[m + abi.MAPREC_PHYS / 8] = p.phys;
    w[m + abi.MAPREC_LENGTH / 8] = 4096n;
    w[m + abi.MAPREC_PERM / 8] = BigInt(abi.PTE_R | abi.PTE_W);
    const u = (unmaps + i * abi.MAPREC_SIZE) / 8;
    w[u + abi.MAPREC_IOVA / 8] = p.iova;
    w[u + abi.MAPREC_LAST / 8] = p.iova + 4095n;
  });
  const map = (): void => {
    if (ex.mapBatch(domain, maps, n) !== 0) throw new Error('core-floor: a map record failed');
  };
  const unmap = (): void => {
    if (ex.unmapBatch(domain, unmaps, n) !== 0) throw new Error('core-floor: an unmap record failed');
  };
  // Cross-check once: the records map the pages, and unmap them again.
  map();
  unmap();
  return [
    { scenario: 'map-4k-batch', impl: 'wasm', variant: 'core', opsPerIteration: n, fn: timedHalf(map, unmap, 'first'), note: 'the core alone: mapBatch export on records written once' },
    { scenario: 'unmap-4k-batch', impl: 'wasm', variant: 'core', opsPerIteration: n, fn: timedHalf(map, unmap, 'second'), note: 'the core alone: unmapBatch export' },
  ];
}
