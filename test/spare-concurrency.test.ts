// Spare tables (assembly/spare.ts) under worker translators: the concurrency contract
// (docs/architecture.md, "Concurrency contract") on the paths spare tables add. While the owner
// maps and unmaps single pages in many 512 GiB regions (each builds a chain of three tables below
// the root that an unmap leaves spare), revives those chains by maps at other pages of them, puts
// 2 MiB leaves where spare leaf tables are (releaseSpareAt), runs a small pool dry (sweep of every
// domain, then a wait for readers) and keeps an FD over its page limit with spares (FD release),
// workers translate a fixed set of probes and check every result against the owner's timeline
// (protocol: test/workers/spare-timeline.mjs):
//  - a result racing a revive, unmap or release is the probe's state before or after that call:
//    never a wrong output, never a mix, and during a map never even a fault at another level than
//    before (a revived chain must become visible with one store, its topmost count, last);
//  - after an unmap returns, no translation that starts later returns the removed mapping;
//  - released pages are not reused while a worker may still read them: probes of every region
//    share the table indices (0 and 1 at each level), so a table page reused under a stalled walk,
//    as another region's table at any level, would show as another probe's output or a table
//    address. Such a stall is rare, so the owner also checks the limbo rule itself: when a map
//    builds a path through a table page it saw before (released and reused since), no translator
//    slot may still announce what it announced then. And no guard word is overwritten.
// Bounded: three races of a few seconds each.
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import * as abi from '../assembly/abi';
import { Access, Iommu, type IommuError, type IommuFd } from '../src/index';
import * as testing from './testing';

const dist = new URL('../dist/index.js', import.meta.url);
const workerUrl = new URL('./workers/spare-worker.mjs', import.meta.url);
const { ANY_FAULT, CTL_STOP, CTL_RETURNED, CTL_READY, encodeOk, encodeFault } = await import('./workers/spare-timeline.mjs');

const K = 4096;
const M2 = 2 ** 21;
const G = 2 ** 30;
const REGION = 2 ** 39; // one entry of the root (4-level tables, 48-bit IOVAs)
const PHYS_BASE = 2 ** 32;
/** History entries in all (16 bytes each), shared by the probes' rings: far more than a worker lags behind. */
const HISTORY = 2 ** 20;
const NOT_PRESENT = 6;

/** What the owner maps in each region: 4 KiB pages sharing tables, and 2 MiB leaves over them. */
const SLOTS = [
  { off: 0, size: K },
  { off: K, size: K }, // same leaf table as the first
  { off: M2, size: K }, // another leaf table under the same level-1 table
  { off: G, size: K }, // another level-1 table under the same level-2 table
  { off: 0, size: M2 }, // where the first leaf table is (spare, once its pages are unmapped)
  { off: G, size: M2 },
] as const;
/** Probe offsets in a region: table indices 0 and 1 at every level. */
const PROBES = [8, K + 8, M2 + 8, G + 8, G + K + 8];
/** In anchored regions a page that stays mapped keeps the root entry and the level-2 table live. */
const ANCHOR = 7 * G;

const shiftOf = (level: number): number => 12 + 9 * level;

interface Mapping {
  size: number;
  phys: number;
}

/** One FD with an IOAS, a device attached to it, and the owner's record of what is mapped there. */
interface Space {
  name: string;
  fd: IommuFd;
  ioas: number;
  rid: number;
  domain: number;
  regions: number[];
  /** Mapped leaves by IOVA. */
  maps: Map<number, Mapping>;
  /** Churned leaves mapped at most at once (bounds the live tables under an FD page limit). */
  maxLive: number;
  live: Set<number>;
  /** Per level 1..3: leaves under each entry (IOVA >> shift), i.e. whether the entry is live. */
  under: Map<number, number>[];
  /** Probe numbers by region. */
  probesOf: Map<number, number[]>;
}

interface Config {
  /** Regions per space, and which of them are anchored. */
  spaces: { name: string; regions: number; anchored: number; pageLimit?: number; maxLive: number; weight: number }[];
  maxMemoryBytes: number;
  raceMs: number;
  /** Worker translators: per call with number or bigint IOVAs, or batched. */
  modes?: ('call' | 'bigint' | 'batch')[];
}

interface Report {
  mode: string;
  checked: number;
  hits: number;
  ok: number;
  stale: number;
  torn: number;
  unchecked: number;
  violations: number;
  firstViolations: unknown[];
}

/** Counts of what the churn did, to show each path ran. */
interface Churn {
  versions: number;
  maps: number;
  unmaps: number;
  revives: number;
  spareAtReleases: number;
  poolSweeps: number;
  fdReleases: number;
  boundSweeps: number;
  /** Table pages seen on a path, released and built into a new path since. */
  reuses: number;
  poolFailures: number;
  limitFailures: number;
}

/** A xorshift generator: the churn is the same on every run, but for the pool's timing. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

async function race(cfg: Config): Promise<{ churn: Churn; reports: Report[]; iommu: Iommu }> {
  const iommu = Iommu.createSync({ maxMemoryBytes: cfg.maxMemoryBytes, translators: 5, iotlbEntries: 64, maxDomains: 8, pasidBits: 0 });
  expect(iommu.shared).toBe(true);
  const probes: [number, number][] = []; // [rid, iova]
  const probeSpace: Space[] = [];
  const spaces: Space[] = cfg.spaces.map((sc, k) => {
    const fd = iommu.open(sc.pageLimit === undefined ? undefined : { limits: { pages: sc.pageLimit } });
    const ioas = fd.ioasAlloc();
    const dev = iommu.addDevice({ bdf: `00:0${k + 2}.0` });
    dev.bind(fd);
    const hwpt = dev.attach(ioas);
    const view = testing.fdView(fd).objects.find((o) => o.id === hwpt);
    if (view?.type !== 'hwpt-paging') throw new Error('expected a HWPT_PAGING');
    const s: Space = {
      name: sc.name, fd, ioas, rid: dev.rid, domain: view.domain, regions: [], maps: new Map(), maxLive: sc.maxLive,
      live: new Set(), under: [new Map(), new Map(), new Map(), new Map()], probesOf: new Map(),
    };
    for (let r = 0; r < sc.regions; r++) {
      const region = (r + 1) * REGION;
      s.regions.push(region);
      const offs = r < sc.anchored ? [...PROBES, ANCHOR + 8] : PROBES;
      s.probesOf.set(region, offs.map((off) => {
        probes.push([s.rid, region + off]);
        probeSpace.push(s);
        return probes.length - 1;
      }));
    }
    return s;
  });

  const account = (s: Space, iova: number, m: Mapping | undefined): void => {
    if (m) s.maps.set(iova, m);
    else s.maps.delete(iova);
    for (let level = 1; level <= 3; level++) {
      const key = Math.floor(iova / 2 ** shiftOf(level));
      s.under[level]!.set(key, (s.under[level]!.get(key) ?? 0) + (m ? 1 : -1));
    }
  };
  /** A probe's translation in the radix-minimal tree of what is mapped (spare tables are invisible). */
  const expected = (p: number): number => {
    const s = probeSpace[p]!;
    const x = probes[p]![1];
    const page = x - (x % K);
    const small = s.maps.get(page);
    if (small?.size === K) return encodeOk(small.phys + (x - page), 12);
    const block = x - (x % M2);
    const large = s.maps.get(block);
    if (large?.size === M2) return encodeOk(large.phys + (x - block), 21);
    for (let level = 3; level >= 1; level--) {
      if (!s.under[level]!.get(Math.floor(x / 2 ** shiftOf(level)))) return encodeFault(NOT_PRESENT, level);
    }
    return encodeFault(NOT_PRESENT, 0);
  };

  // The timeline (spare-timeline.mjs) and the control words.
  const cap = Math.max(512, Math.floor(HISTORY / probes.length));
  const control = new SharedArrayBuffer(16);
  const ctl = new Int32Array(control);
  const history = new SharedArrayBuffer(probes.length * cap * 16);
  const countsBuf = new SharedArrayBuffer(probes.length * 4);
  const hist = new Float64Array(history);
  const counts = new Int32Array(countsBuf);
  const last = probes.map(() => Number.NaN);
  const append = (p: number, v: number, result: number, always = false): void => {
    if (result === last[p] && !always) return;
    last[p] = result;
    const n = counts[p]!;
    const at = (p * cap + (n % cap)) * 2;
    hist[at] = v;
    hist[at + 1] = result;
    Atomics.store(counts, p, n + 1);
  };

  // Anchors, then version 0 for every probe.
  let serial = 0;
  for (const [k, s] of spaces.entries()) {
    for (const region of s.regions.slice(0, cfg.spaces[k]!.anchored)) {
      const m = { size: K, phys: PHYS_BASE + serial++ * M2 };
      s.fd.ioasMap(s.ioas, { iova: region + ANCHOR, length: K, phys: m.phys });
      account(s, region + ANCHOR, m);
    }
  }
  probes.forEach((_, p) => append(p, 0, expected(p)));

  // The engine's view, for the counts of what each call did.
  const spareOf = (s: Space): number => {
    const e = testing.engineOf(iommu);
    return e.core.u32[(e.layout.domains + s.domain * abi.DOM_SIZE + abi.DOM_SPARE) >>> 2]!;
  };
  const pathOf = (s: Space, iova: number) => testing.tablePath(iommu, s.domain, BigInt(iova));
  /** The epoch each translator slot announces (0: not in a call). */
  const slotEpochs = (): number[] => {
    const e = testing.engineOf(iommu);
    const l = e.layout;
    return Array.from({ length: l.slotCount }, (_, i) => e.core.u32[(l.slots + i * l.slotSize + abi.SLOT_EPOCH) >>> 2]!);
  };
  /**
   * The limbo rule (docs/architecture.md): a page unlinked from a table is reused only once every
   * translator slot has announced a later epoch. Each table page the owner sees on a path is noted
   * with the epoch and the slots' announcements then; when a map builds a path through a page seen
   * before, that page was released (at a 2 MiB leaf, by a sweep or a bound) and reused since, so no
   * slot may still announce what it did then, below that epoch: that call began before the release
   * and may still be reading the page. (Below, not at: a call that read the epoch at the
   * observation but stored it only after the release, preempted in between, reads no page it
   * could not reach then, and may show the same number.)
   */
  const seen = new Map<number, { epoch: number; slots: number[] }>();
  const observe = (pages: number[]): void => {
    const o = { epoch: testing.engineOf(iommu).core.ctrl(abi.CTRL_EPOCH), slots: slotEpochs() };
    for (const page of pages) seen.set(page, o);
  };
  const earlyReuses: unknown[] = [];

  const reports = (cfg.modes ?? ['call', 'bigint', 'batch']).map((mode) => new Promise<Report>((resolve, reject) => {
    const w = new Worker(workerUrl, {
      workerData: { handle: iommu.translatorHandle({ batchCapacity: 32 }), control, history, counts: countsBuf, cap, probes, mode },
    });
    w.once('message', resolve);
    w.once('error', reject);
  }));
  while (Atomics.load(ctl, CTL_READY) < reports.length) await new Promise((r) => setTimeout(r, 5));

  const churn: Churn = { versions: 0, maps: 0, unmaps: 0, revives: 0, spareAtReleases: 0, poolSweeps: 0, fdReleases: 0, boundSweeps: 0, reuses: 0, poolFailures: 0, limitFailures: 0 };
  const pick = rng(0x5ba2e);
  const totalWeight = cfg.spaces.reduce((a, sc) => a + sc.weight, 0);
  const pickSpace = (): Space => {
    let w = pick(totalWeight);
    for (const [k, sc] of cfg.spaces.entries()) {
      if (w < sc.weight) return spaces[k]!;
      w -= sc.weight;
    }
    throw new Error('unreachable');
  };

  /** One control call: timeline first, then the call, then `returned`. */
  const step = (): void => {
    const s = pickSpace();
    let region = s.regions[pick(s.regions.length)]!;
    const slot = SLOTS[pick(SLOTS.length)]!;
    let iova = region + slot.off;
    let size: number = slot.size;
    const here = s.maps.get(iova);
    let unmap = here?.size === size;
    if (!unmap) {
      // A map needs its range empty: a 2 MiB leaf over 4 KiB ones (or the reverse) waits.
      const block = iova - (iova % M2);
      const clash = size === M2 ? [block, block + K].some((a) => s.maps.has(a)) : s.maps.get(block)?.size === M2 || here !== undefined;
      if (clash) return;
      if (s.live.size >= s.maxLive) {
        // At the space's bound: unmap one of its leaves instead.
        const keys = [...s.live];
        iova = keys[pick(keys.length)]!;
        size = s.maps.get(iova)!.size;
        region = iova - (iova % REGION);
        unmap = true;
      }
    }
    const v = churn.versions + 1;
    const touched = s.probesOf.get(region)!;
    const others = spaces.filter((o) => o !== s);
    const sparesBefore = spaces.map(spareOf);
    const { pages, counts } = pathOf(s, iova);
    observe(pages);
    if (unmap) {
      // The walk may stop at any level while the entries and counts drop one by one.
      for (const p of touched) append(p, v, ANY_FAULT, true);
      account(s, iova, undefined);
      s.live.delete(iova);
      for (const p of touched) append(p, v, expected(p), true);
      s.fd.ioasUnmap(s.ioas, iova, size);
      churn.unmaps++;
      if (spareOf(s) < sparesBefore[spaces.indexOf(s)]! - 3) churn.boundSweeps++;
    } else {
      const revives = counts.includes(0) && (size === K || counts.indexOf(0) < 2);
      const releasesSpareAt = size === M2 && counts.length === 3 && counts[2] === 0;
      const m = { size, phys: PHYS_BASE + serial++ * M2 };
      account(s, iova, m);
      for (const p of touched) append(p, v, expected(p));
      try {
        s.fd.ioasMap(s.ioas, { iova, length: size, phys: m.phys });
        s.live.add(iova);
        churn.maps++;
        if (revives) churn.revives++;
        if (releasesSpareAt) churn.spareAtReleases++;
        const built = pathOf(s, iova).pages.filter((page) => !pages.includes(page));
        for (const page of built) {
          const r = seen.get(page);
          if (!r) continue;
          churn.reuses++;
          const now = slotEpochs();
          if (now.some((x, i) => x !== 0 && x < r.epoch && x === r.slots[i])) earlyReuses.push({ page, at: iova, seen: r, now });
        }
        observe(built);
      } catch (e) {
        if ((e as IommuError).errno !== 'ENOMEM') throw e;
        if (/limits\.pages/.test((e as Error).message)) churn.limitFailures++;
        else churn.poolFailures++;
        account(s, iova, undefined);
        for (const p of touched) append(p, v, expected(p), true);
      }
      // A map revives at most three spare pages, or two and releases one: a larger drop is a sweep,
      // of every domain when the pool ran dry, of this FD's alone when over its page limit.
      const after = spaces.map(spareOf);
      const k = spaces.indexOf(s);
      const swept = after[k]! < sparesBefore[k]! - 3;
      if (others.some((o) => after[spaces.indexOf(o)]! < sparesBefore[spaces.indexOf(o)]!)) churn.poolSweeps++;
      else if (swept && cfg.spaces[k]!.pageLimit !== undefined) churn.fdReleases++;
      else if (swept) churn.poolSweeps++;
    }
    Atomics.store(ctl, CTL_RETURNED, v);
    churn.versions = v;
  };

  const end = performance.now() + cfg.raceMs;
  while (performance.now() < end) {
    for (let i = 0; i < 64; i++) step();
    await new Promise((r) => setImmediate(r));
  }
  Atomics.store(ctl, CTL_STOP, 1);
  const results = await Promise.all(reports);

  // The engine alone agrees with the owner's record of every probe (the timeline's last state).
  for (let p = 0; p < probes.length; p++) {
    const t = iommu.translate(probes[p]![0], 0, probes[p]![1], Access.Read);
    const got = t.ok ? encodeOk(Number(t.phys), Math.log2(Number(t.size))) : encodeFault(NOT_PRESENT, t.fault!.level);
    expect(got, `probe 0x${probes[p]![1].toString(16)}`).toBe(expected(p));
  }
  expect(testing.guardViolations(iommu)).toEqual([]);
  expect(earlyReuses.slice(0, 3), 'a released page reused while a translator was still in a call from before its release').toEqual([]);
  console.log(`spare race: ${JSON.stringify(churn)}; ${results.map((r) => `${r.mode} ${r.checked} checked (${r.hits} hits, ${r.unchecked} unchecked)`).join(', ')}`);
  for (const s of spaces) s.fd.close();
  return { churn, reports: results, iommu };
}

function expectClean(reports: Report[]): void {
  for (const r of reports) {
    expect(r.firstViolations, `${r.mode}: ${JSON.stringify(r.firstViolations)}`).toEqual([]);
    expect(r.violations).toBe(0);
    expect(r.checked, r.mode).toBeGreaterThan(10_000);
    expect(r.unchecked, r.mode).toBeLessThan(r.checked / 100);
    expect(r.hits, `${r.mode}: the race mixed translations with faults`).toBeGreaterThan(0);
    expect(r.hits).toBeLessThan(r.checked);
  }
}

describe.skipIf(!existsSync(dist))('spare tables under worker translators', () => {
  test('revives, unmaps and releases of spare chains (at a 2 MiB leaf, on a dry pool, over an FD page limit) race walks safely', async () => {
    // Space A: an FD whose page limit its live tables never reach (at most 4 leaves live: 1 + 4 * 3
    // pages with two anchors' 2 * 3), but its spares do. Space B: no limit, enough regions that its
    // tables (live or spare) outgrow the ~2 MiB pool.
    const { churn, reports } = await race({
      spaces: [
        { name: 'A', regions: 12, anchored: 2, pageLimit: 24, maxLive: 4, weight: 1 },
        { name: 'B', regions: 80, anchored: 20, maxLive: Infinity, weight: 3 },
      ],
      maxMemoryBytes: 2 * 2 ** 20,
      raceMs: 4000,
    });
    expectClean(reports);
    expect(churn.limitFailures).toBe(0); // an undone map would leave transient faults the timeline does not allow
    expect(churn.revives).toBeGreaterThan(100);
    expect(churn.spareAtReleases).toBeGreaterThan(20);
    expect(churn.reuses).toBeGreaterThan(20);
    expect(churn.poolSweeps).toBeGreaterThan(5);
    expect(churn.fdReleases).toBeGreaterThan(5);
  });

  test('chains revived over and over: a walk sees a revived page only once its whole path counts it', async () => {
    // Two regions (one anchored, so its chain starts below a live level-2 table), one leaf live at
    // a time: nearly every map revives a spare chain (or puts a 2 MiB leaf where a spare leaf table
    // is), and the workers walk nothing but these chains.
    const { churn, reports } = await race({
      spaces: [{ name: 'D', regions: 2, anchored: 1, maxLive: 1, weight: 1 }],
      maxMemoryBytes: 2 * 2 ** 20,
      raceMs: 3000,
      modes: ['batch', 'batch'], // the most walks per second: a revived chain's window is a few stores wide
    });
    expectClean(reports);
    expect(churn.revives).toBeGreaterThan(churn.maps / 2);
    expect(churn.spareAtReleases).toBeGreaterThan(20);
    expect(churn.reuses).toBeGreaterThan(20);
  });

  test('spares that outnumber max(1024, the other pages in use) are all released, under walks', async () => {
    const { churn, reports } = await race({
      spaces: [{ name: 'C', regions: 400, anchored: 100, maxLive: 120, weight: 1 }],
      maxMemoryBytes: 64 * 2 ** 20,
      raceMs: 3000,
    });
    expectClean(reports);
    expect(churn.revives).toBeGreaterThan(100);
    expect(churn.boundSweeps).toBeGreaterThan(2);
  });
});
