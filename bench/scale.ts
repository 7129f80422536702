/**
 * Scale and memory (issue 3 item 5), through the public API:
 *
 * 1. 1 GiB mapped as 262144 single-page `ioasMap` calls at contiguous IOVAs with random 4 KiB
 *    output addresses (so every leaf is 4 KiB), with a device attached: the domain's table pages
 *    (growth of `stats().tablePages`, plus the root that existed before) against the radix
 *    minimum, ceil(pages / 512) leaf tables plus one table per upper level.
 * 2. 10^5 PASIDs of one device attached round robin to 4 PASID-capable HWPTs, on an engine
 *    created with `maxMemoryBytes: 16 MiB`: engine memory before/after and attaches per second.
 * Both spot-check translations afterwards.
 * @module
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Access, Iommu } from '../src/index';
import { formatTable } from './harness';
import { PAGE, hotPages, randomPhys, rng } from './setup';

export interface ScaleReport {
  tables: {
    maps: number;
    mapsPerSec: number;
    tablePages: number;
    radixMinimum: number;
    ratio: number;
  };
  pasids: {
    count: number;
    hwpts: number;
    attachesPerSec: number;
    memoryBytesBefore: number;
    memoryBytesAfter: number;
    /** Engine memory after the attaches, MiB. */
    memoryMiB: number;
    pasidTablePages: number;
    jsHeapGrowthMiB: number;
  };
}

const MiB = 2 ** 20;

/** A full GC, so that JS heap figures mean live objects (the flag must be set before the context exists). */
function collect(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Table pages of the smallest radix tree with `levels` levels holding `leaves` contiguous aligned 4 KiB leaves. */
export function radixMinimum(leaves: number, levels: number): number {
  let total = 0;
  let below = leaves;
  for (let level = 0; level < levels; level++) {
    below = Math.ceil(below / 512);
    total += below;
  }
  return total;
}

function scaleTables(): ScaleReport['tables'] {
  const next = rng(8);
  const maps = (1 << 30) / 4096;
  const iommu = Iommu.createSync();
  const dev = iommu.addDevice({ bdf: '00:05.0' });
  const fd = iommu.open();
  dev.bind(fd);
  const ioas = fd.ioasAlloc();
  dev.attach(ioas); // the auto HWPT's root table exists from here
  const before = iommu.stats().tablePages;
  const base = 1n << 39n;
  const pages = hotPages(next, base, maps);
  const t0 = performance.now();
  for (const p of pages) fd.ioasMap(ioas, { iova: p.iova, length: PAGE, phys: p.phys });
  const seconds = (performance.now() - t0) / 1000;
  const tablePages = iommu.stats().tablePages - before + 1;
  for (let k = 0; k < 1000; k++) {
    const p = pages[next() % maps]!;
    const r = iommu.translate(dev.rid, 0, p.iova + 8n, Access.Read);
    if (!r.ok || r.phys !== p.phys + 8n || r.size !== PAGE) throw new Error(`scale: wrong translation of 0x${p.iova.toString(16)}`);
  }
  const radix = radixMinimum(maps, (iommu.addressWidth - 12) / 9);
  return { maps, mapsPerSec: maps / seconds, tablePages, radixMinimum: radix, ratio: tablePages / radix };
}

function scalePasids(count = 100_000, hwpts = 4): ScaleReport['pasids'] {
  const next = rng(9);
  const iommu = Iommu.createSync({ maxMemoryBytes: 16 * MiB });
  const dev = iommu.addDevice({ bdf: '00:06.0' });
  const fd = iommu.open();
  const devId = dev.bind(fd);
  const spaces = Array.from({ length: hwpts }, (_, k) => {
    const ioas = fd.ioasAlloc();
    const page = { iova: BigInt(k + 1) << 30n, phys: randomPhys(next) };
    fd.ioasMap(ioas, { iova: page.iova, length: PAGE, phys: page.phys });
    return { hwpt: fd.hwptAlloc({ devId, ptId: ioas, pasid: true }), page };
  });
  const pasids = Array.from({ length: count }, () => fd.pasidAlloc());
  collect();
  const heapBefore = process.memoryUsage().heapUsed;
  const s0 = iommu.stats();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) dev.attach(spaces[i % hwpts]!.hwpt, { pasid: pasids[i]! });
  const seconds = (performance.now() - t0) / 1000;
  const s1 = iommu.stats();
  collect();
  const heapAfter = process.memoryUsage().heapUsed;
  for (let k = 0; k < 1000; k++) {
    const i = next() % count;
    const { page } = spaces[i % hwpts]!;
    const r = iommu.translate(dev.rid, pasids[i]!, page.iova + 16n, Access.Write);
    if (!r.ok || r.phys !== page.phys + 16n) throw new Error(`scale: wrong translation for PASID ${pasids[i]}`);
  }
  return {
    count, hwpts, attachesPerSec: count / seconds,
    memoryBytesBefore: s0.memoryBytes, memoryBytesAfter: s1.memoryBytes, memoryMiB: s1.memoryBytes / MiB,
    pasidTablePages: s1.tablePages - s0.tablePages, jsHeapGrowthMiB: (heapAfter - heapBefore) / MiB,
  };
}

/** Runs both parts and prints them. */
export function runScale(): ScaleReport {
  process.stderr.write('[scale]\n');
  const tables = scaleTables();
  const pasids = scalePasids();
  const fmt = (x: number, d = 1): string => x.toFixed(d);
  console.log(`\n${formatTable([
    ['scale', 'measured', 'reference'],
    [`1 GiB as ${tables.maps} × 4K ioasMap`, `${fmt(tables.mapsPerSec / 1000)} k maps/s`, ''],
    ['  table pages (domain)', String(tables.tablePages), `radix minimum ${tables.radixMinimum} (${fmt(tables.ratio, 3)}×)`],
    [`${pasids.count} PASIDs attached to ${pasids.hwpts} HWPTs`, `${fmt(pasids.attachesPerSec / 1000)} k attaches/s`, ''],
    ['  engine memory before → after', `${fmt(pasids.memoryBytesBefore / MiB, 2)} → ${fmt(pasids.memoryMiB, 2)} MiB`, 'maxMemoryBytes 16 MiB'],
    ['  PASID table pages added', `${pasids.pasidTablePages} (${fmt((pasids.pasidTablePages * 4096) / MiB, 2)} MiB)`, `${Math.ceil(pasids.count / 1024) + 1} = leaves + directory`],
    ['  JS heap growth (bookkeeping, not engine memory)', `${fmt(pasids.jsHeapGrowthMiB)} MiB`, ''],
  ])}`);
  return { tables, pasids };
}
