/**
 * Fixtures: engines set up through the public API only (Iommu.createSync, open, ioasAlloc,
 * ioasMap, addDevice, bind, attach, hwptAlloc, pasidAlloc), each with an idiomatic-TS twin
 * (baselines/ts.ts) that receives the same devices, attachments and mappings, plus the address
 * sets and request lists the scenarios translate. Everything random is seeded: runs are repeatable.
 * @module
 */
import { Access, Iommu, type DeviceFd, type IommuFd, type IommuOptions } from '../src/index';
import { TsIommu, type TsDevice, type TsDomain } from './baselines/ts';

export const PAGE = 4096n;

/** mulberry32: a seeded u32 generator. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A uniformly random integer in [0, 2^bits) as a BigInt (bits <= 64). */
export function randomBits(next: () => number, bits: number): bigint {
  const v = (BigInt(next()) << 32n) | BigInt(next());
  return bits >= 64 ? v : v & ((1n << BigInt(bits)) - 1n);
}

/** A Fisher-Yates shuffle of [0, n). */
export function permutation(next: () => number, n: number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/** One 4 KiB mapping. */
export interface Page {
  iova: bigint;
  phys: bigint;
}

/** One DMA request. */
export interface Request {
  rid: number;
  pasid: number;
  iova: bigint;
  access: number;
}

/** An engine and its idiomatic-TS twin, with one PASID-capable device bound to one FD. */
export interface Twin {
  iommu: Iommu;
  fd: IommuFd;
  dev: DeviceFd;
  devId: number;
  ts: TsIommu;
  tsDev: TsDevice;
}

/** An address space in both engines: an IOAS (with the HWPT the device uses) and a TS domain. */
export interface Space {
  ioas: number;
  /** The HWPT ID (auto HWPT for a RID attach). */
  hwpt: number;
  domain: TsDomain;
}

export function makeTwin(opts: IommuOptions = {}): Twin {
  const iommu = Iommu.createSync(opts);
  const dev = iommu.addDevice({ bdf: '0000:03:00.0' });
  const fd = iommu.open();
  const devId = dev.bind(fd);
  const ts = new TsIommu((iommu.addressWidth - 12) / 9, opts.iotlbEntries ?? 4096);
  return { iommu, fd, dev, devId, ts, tsDev: ts.addDevice(dev.rid) };
}

/** A new IOAS the device's RID translates through (auto HWPT). */
export function ridSpace(t: Twin): Space {
  const ioas = t.fd.ioasAlloc();
  const hwpt = t.dev.attach(ioas);
  const domain = t.ts.createDomain();
  t.tsDev.ridDomain = domain;
  return { ioas, hwpt, domain };
}

/** A new IOAS with a PASID-capable HWPT, not yet attached to anything. */
export function pasidSpace(t: Twin): Space {
  const ioas = t.fd.ioasAlloc();
  const hwpt = t.fd.hwptAlloc({ devId: t.devId, ptId: ioas, pasid: true });
  return { ioas, hwpt, domain: t.ts.createDomain() };
}

/** Allocates a PASID in the twin's FD and attaches it to `s` in both engines. */
export function attachPasid(t: Twin, s: Space): number {
  const pasid = t.fd.pasidAlloc();
  t.dev.attach(s.hwpt, { pasid });
  t.tsDev.pasids.set(pasid, s.domain);
  return pasid;
}

/** Maps every page (one 4 KiB ioasMap each) in both engines. */
export function mapPages(t: Twin, s: Space, pages: Page[]): void {
  for (const p of pages) {
    t.fd.ioasMap(s.ioas, { iova: p.iova, length: PAGE, phys: p.phys });
    s.domain.map(p.iova, p.phys, PAGE, 3);
  }
}

/** A random 4 KiB-aligned output address below 2^40 (never contiguous: every leaf stays 4 KiB). */
export function randomPhys(next: () => number): bigint {
  return randomBits(next, 28) << 12n;
}

/** `n` pages at contiguous IOVAs from `base`, random output addresses: few table pages. */
export function hotPages(next: () => number, base: bigint, n: number): Page[] {
  return Array.from({ length: n }, (_, i) => ({ iova: base + BigInt(i) * PAGE, phys: randomPhys(next) }));
}

/** `count` distinct random multiples of `align` in (0, 2^width). */
export function randomBases(next: () => number, width: number, count: number, align: bigint): bigint[] {
  const bases = new Set<bigint>();
  while (bases.size < count) {
    const base = (randomBits(next, width) / align) * align;
    if (base !== 0n) bases.add(base);
  }
  return [...bases];
}

/**
 * `clusters` runs of `perCluster` contiguous pages at random, disjoint, run-aligned IOVAs below
 * 2^width: every run sits in its own upper-level tables, so the walk touches many table pages.
 */
export function scatteredPages(next: () => number, width: number, clusters: number, perCluster: number): Page[] {
  return randomBases(next, width, clusters, BigInt(perCluster) * PAGE).flatMap((base) => hotPages(next, base, perCluster));
}

/** A request for `page` at a random 8-byte-aligned offset; the `i`th request reads when even, writes when odd. */
export function requestAt(next: () => number, rid: number, pasid: number, page: Page, i: number): Request {
  return { rid, pasid, iova: page.iova + BigInt((next() & 511) * 8), access: i & 1 ? Access.Write : Access.Read };
}

/** `n` requests of the RID (no PASID) over `pages`, visiting them in the order `order` (cycled). */
export function requestsOver(next: () => number, rid: number, pages: Page[], order: number[], n: number): Request[] {
  return Array.from({ length: n }, (_, i) => requestAt(next, rid, 0, pages[order[i % order.length]!]!, i));
}

/** Table pages a radix tree of `levels` levels needs for `pages` 4 KiB leaves (root included). */
export function radixTablePages(pages: readonly Page[], levels: number): number {
  let total = 1;
  for (let level = 0; level < levels - 1; level++) {
    // A level-`level` table covers 2^(21 + 9 level) bytes of IOVA: count the distinct ones.
    const shift = BigInt(21 + 9 * level);
    total += new Set(pages.map((p) => p.iova >> shift)).size;
  }
  return total;
}
