// Properties of nested translation and invalidation, over random guest tables (seeded).
//
// 1. Composition: a nested translation equals stage 2 applied to a stage-1 walk whose table reads
//    are themselves translated by stage 2. The stage-1 walk here is a small JS walker; every stage-2
//    lookup is the engine's own single-stage translation of a second device attached to the parent
//    alone. Checked for RISC-V Sv39 over a guest G stage (Sv39x4) and x86-64 over an engine-managed
//    stage 2 (VT-d nesting).
// 2. Invalidation removes exactly what it names: after the guest rewrites every PTE, entries named
//    by an invalidation translate anew, and every entry it did not name that was cached still hits
//    with the old result.
import { describe, expect, test } from 'vitest';
import { Access, Iommu, NO_PASID, type Translation } from '../src/index';
import { GuestRam, GuestTables } from './vectors/guest-tables';

/** xorshift32: deterministic randomness. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

const RAM = 0x8000_0000n;
const MiB = 0x10_0000n;

type Expect = { ok: true; phys: bigint; size: bigint; perm: number } | { ok: false; stage: number; implicit: boolean; addr?: bigint };

function summary(t: Translation): Expect {
  if (t.ok) return { ok: true, phys: t.phys, size: t.size, perm: t.perm };
  const f = t.fault!;
  return { ok: false, stage: f.stage, implicit: !!f.implicit, ...(f.stage === 2 ? { addr: f.addr ?? 0n } : {}) };
}

interface Format {
  name: string;
  /** Stage-1 entry words. */
  table(gpa: bigint): bigint;
  leaf(gpa: bigint, level: number, perm: number): bigint;
  /** Decodes a stage-1 entry for the JS walker. */
  decode(e: bigint, level: number): { kind: 'none' } | { kind: 'table'; gpa: bigint } | { kind: 'leaf'; gpa: bigint; perm: number };
  levels: number;
  leafLevels: number[];
}

const RISCV_S: Format = {
  name: 'sv39',
  levels: 3,
  leafLevels: [0, 1],
  table: (gpa) => ((gpa >> 12n) << 10n) | 1n,
  leaf: (gpa, _level, perm) => ((gpa >> 12n) << 10n) | 1n | (BigInt(perm) << 1n) | 0x10n | 0xc0n, // V, RWX, U, A, D
  decode: (e, level) => {
    if (!(e & 1n)) return { kind: 'none' };
    const gpa = ((e >> 10n) & ((1n << 44n) - 1n)) << 12n;
    const perm = Number((e >> 1n) & 7n);
    if (perm === 0) return { kind: 'table', gpa };
    return { kind: 'leaf', gpa, perm: perm | (level < 0 ? 0 : 0) };
  },
};

const X86: Format = {
  name: 'x86-64',
  levels: 4,
  leafLevels: [0, 1],
  table: (gpa) => gpa | 0x27n,
  // P, U, A, D; R/W from perm bit 1; XD unless perm bit 2.
  leaf: (gpa, level, perm) => gpa | 0x65n | (perm & 2 ? 2n : 0n) | (level > 0 ? 0x80n : 0n) | (perm & 4 ? 0n : 1n << 63n),
  decode: (e, level) => {
    if (!(e & 1n)) return { kind: 'none' };
    const gpa = e & 0x000f_ffff_ffff_f000n;
    if (level > 0 && !(e & 0x80n)) return { kind: 'table', gpa };
    return { kind: 'leaf', gpa: gpa & ~((1n << BigInt(12 + 9 * level)) - 1n), perm: 1 | (e & 2n ? 2 : 0) | (e >> 63n ? 0 : 4) };
  },
};

/**
 * A machine: stage 2 maps GPA [0, 8 MiB) of data (with holes) and [8, 10 MiB) of stage-1 tables to
 * RAM; stage-1 tables map random IOVAs to random data GPAs (some in holes). Device A is attached to
 * the nested HWPT, device B to stage 2 alone.
 */
function machine(fmt: Format, seed: number) {
  const r = rng(seed);
  const iommu = Iommu.createSync({ ram: { base: RAM, bytes: 16 << 20 }, translators: 1, iotlbEntries: 1024, maxDomains: 8, maxMemoryBytes: 64 << 20 });
  const devA = iommu.addDevice({ bdf: '00:03.0' });
  const devB = iommu.addDevice({ bdf: '00:04.0' });
  const fd = iommu.open();
  const idA = devA.bind(fd);
  devB.bind(fd);
  // Stage-2 backing: GPA g -> RAM + shuffle(g) per 2 MiB chunk of data; tables [8, 10 MiB) -> RAM + 8 MiB.
  const chunks = [0n, 1n, 2n, 3n].sort(() => r() - 0.5);
  const holes = new Set<bigint>(); // unmapped 64 KiB blocks of data GPA space
  for (let i = 0; i < 12; i++) holes.add(BigInt(Math.floor(r() * 128)));
  const s2map: { gpa: bigint; hpa: bigint; size: bigint; perm: number }[] = [];
  for (let c = 0n; c < 4n; c++) {
    const big = r() < 0.4 && ![...holes].some((h) => h >> 5n === c);
    if (big) s2map.push({ gpa: c * 2n * MiB, hpa: RAM + chunks[Number(c)]! * 2n * MiB, size: 2n * MiB, perm: pick(r, [3, 7]) });
    else {
      for (let p = 0n; p < 512n; p++) {
        const gpa = c * 2n * MiB + p * 0x1000n;
        if (holes.has(gpa >> 16n)) continue;
        s2map.push({ gpa, hpa: RAM + chunks[Number(c)]! * 2n * MiB + p * 0x1000n, size: 0x1000n, perm: pick(r, [1, 3, 3, 7]) });
      }
    }
  }
  s2map.push({ gpa: 8n * MiB, hpa: RAM + 8n * MiB, size: 2n * MiB, perm: 3 });
  const ram = new GuestRam(iommu, RAM, RAM + 12n * MiB); // physical tables (G stage) from 12 MiB
  let parent: number;
  if (fmt === RISCV_S) {
    const root = ram.table(0x4000n);
    const g = new GuestTables(ram, root, 3, (a) => ((a >> 12n) << 10n) | 1n, 11);
    for (const m of s2map) {
      const level = m.size === 0x1000n ? 0 : 1;
      g.map(m.gpa, level, ((m.hpa >> 12n) << 10n) | 1n | (BigInt(m.perm) << 1n) | 0x10n | 0xc0n, () => ram.table());
    }
    parent = fd.hwptAlloc({ devId: idA, nestParent: true, table: { format: 'sv39x4', root } });
  } else {
    const ioas = fd.ioasAlloc();
    for (const m of s2map) fd.ioasMap(ioas, { iova: m.gpa, length: m.size, phys: m.hpa, write: (m.perm & 2) !== 0 });
    parent = fd.hwptAlloc({ devId: idA, ptId: ioas, nestParent: true });
  }
  // Stage-1 tables at GPAs [8, 10 MiB), written through RAM + GPA.
  let nextTable = 8n * MiB;
  const s1alloc = (): bigint => {
    const gpa = nextTable;
    nextTable += 0x1000n;
    for (let a = 0n; a < 0x1000n; a += 8n) ram.write(RAM + gpa + a, 0n);
    return gpa;
  };
  const s1root = s1alloc();
  const s1 = new GuestTables(ram, s1root, fmt.levels, fmt.table, 9, (gpa) => RAM + gpa);
  const iovas: bigint[] = [];
  for (let i = 0; i < 48; i++) {
    const level = pick(r, fmt.leafLevels);
    const size = 1n << BigInt(12 + 9 * level);
    const iova = (BigInt(Math.floor(r() * 2 ** 26)) << 12n) & ~(size - 1n);
    const gpa = (BigInt(Math.floor(r() * 2 ** 23)) & ~(size - 1n)) % (8n * MiB);
    const perm = pick(r, [1, 3, 5, 7]);
    s1.map(iova, level, fmt.leaf(gpa, level, perm), s1alloc);
    for (let k = 0; k < 4; k++) iovas.push(iova + (BigInt(Math.floor(r() * Number(size))) & ~7n));
  }
  for (let i = 0; i < 32; i++) iovas.push(BigInt(Math.floor(r() * 2 ** 38)) & ~7n); // mostly unmapped
  const nested = fd.hwptAlloc({ devId: idA, ptId: parent, table: { format: fmt.name as 'sv39', root: s1root } });
  devA.attach(nested);
  devB.attach(parent);
  return { iommu, ram, devA, devB, fd, nested, parent, iovas, s1root, s1, s1alloc, r };
}

/** The reference: the stage-1 walk in JS, every table read and the final GPA through device B (stage 2 alone). */
function composed(m: ReturnType<typeof machine>, fmt: Format, iova: bigint, access: number): Expect {
  const s2 = (gpa: bigint, acc: number): Translation => m.iommu.translate(m.devB.rid, NO_PASID, gpa, acc);
  let table = m.s1root;
  for (let level = fmt.levels - 1; level >= 0; level--) {
    const pteGpa = table + 8n * ((iova >> BigInt(12 + 9 * level)) & 511n);
    const t = s2(pteGpa, Access.Read);
    if (!t.ok) return { ok: false, stage: 2, implicit: true, addr: pteGpa };
    const d = fmt.decode(m.ram.read(t.phys), level);
    if (d.kind === 'none') return { ok: false, stage: 1, implicit: false };
    if (d.kind === 'table') {
      table = d.gpa;
      continue;
    }
    const size = 1n << BigInt(12 + 9 * level);
    const need = (access & 1 ? 1 : 0) | (access & 2 ? 2 : 0) | (access & 4 ? 4 : 0);
    if ((d.perm & need) !== need) return { ok: false, stage: 1, implicit: false };
    const gpa = d.gpa + (iova & (size - 1n));
    const f = s2(gpa, access);
    if (!f.ok) return { ok: false, stage: 2, implicit: false, addr: gpa };
    return { ok: true, phys: f.phys, size: size < f.size ? size : f.size, perm: d.perm & f.perm };
  }
  return { ok: false, stage: 1, implicit: false };
}

describe('property: nested translation = stage 2 ∘ (stage-1 walk with stage-2-translated table reads)', () => {
  for (const fmt of [RISCV_S, X86]) {
    for (const seed of [1, 2, 3, 4]) {
      test(`${fmt.name} over ${fmt === RISCV_S ? 'sv39x4' : 'engine stage 2'}, seed ${seed}`, () => {
        const m = machine(fmt, seed * 7919);
        let oks = 0;
        let s2faults = 0;
        for (const iova of m.iovas) {
          for (const access of [Access.Read, Access.Write, Access.Exec]) {
            const want = composed(m, fmt, iova, access);
            // Twice: the second is an IOTLB hit when cached, and must say the same.
            for (let k = 0; k < 2; k++) {
              const got = summary(m.iommu.translate(m.devA.rid, NO_PASID, iova, access));
              expect(got, `iova 0x${iova.toString(16)} access ${access}`).toEqual(want);
            }
            if (want.ok) oks++;
            else if (want.stage === 2) s2faults++;
          }
        }
        expect(oks).toBeGreaterThan(50); // the random tables really translate...
        expect(s2faults).toBeGreaterThan(0); // ...and really hit stage-2 holes
        m.fd.close();
      });
    }
  }
});

/** What `dmaRead`/`dmaWrite` of `length` bytes at `iova` must do: page by page through `composed`. */
function composedDma(m: ReturnType<typeof machine>, fmt: Format, iova: bigint, length: number, access: number) {
  const chunks: { at: number; phys: bigint; bytes: number }[] = [];
  let done = 0;
  while (done < length) {
    const a = iova + BigInt(done);
    const bytes = Math.min(length - done, 0x1000 - Number(a & 0xfffn));
    const t = composed(m, fmt, a, access);
    if (!t.ok) return { bytes: done, stage: t.stage, chunks };
    chunks.push({ at: done, phys: t.phys, bytes });
    done += bytes;
  }
  return { bytes: done, stage: undefined, chunks };
}

describe('property: DMA over nested leaves moves what the composed walk names', () => {
  for (const fmt of [RISCV_S, X86]) {
    for (const seed of [5, 6]) {
      test(`${fmt.name}, seed ${seed}: reads and writes of up to 64 KiB, cold and then warm (runs of cached leaves)`, () => {
        const m = machine(fmt, seed * 7919);
        const ram = m.iommu.ram;
        // Also 32 consecutive IOVA pages on scattered data GPAs: spans whose cached leaves do not
        // continue each other's output (not-present entries are never cached: no invalidation due).
        const run = 0x3f00_0000n;
        for (let i = 0n; i < 32n; i++) m.s1.map(run + i * 0x1000n, 0, fmt.leaf((BigInt(Math.floor(m.r() * 2048)) << 12n) % (8n * MiB), 0, 3), m.s1alloc);
        const iovas = [...m.iovas, ...Array.from({ length: 24 }, () => run + BigInt(Math.floor(m.r() * 16 * 0x1000)))];
        let moved = 0;
        for (const iova of iovas) {
          const length = 1 + Math.floor(m.r() * 0x10000);
          for (const write of [false, true]) {
            const want = composedDma(m, fmt, iova, length, write ? Access.Write : Access.Read);
            for (let k = 0; k < 2; k++) {
              const data = Uint8Array.from({ length }, (_, i) => (i * 7 + k + (write ? 1 : 0)) & 0xff);
              const got = write ? m.iommu.dmaWrite(m.devA.rid, NO_PASID, iova, data) : m.iommu.dmaRead(m.devA.rid, NO_PASID, iova, data);
              const what = `iova 0x${iova.toString(16)} +${length} ${write ? 'write' : 'read'} pass ${k}`;
              expect({ bytes: got.bytes, stage: got.fault?.stage }, what).toEqual({ bytes: want.bytes, stage: want.stage });
              for (const c of want.chunks) {
                const at = Number(c.phys - RAM);
                expect(Buffer.compare(ram.subarray(at, at + c.bytes), data.subarray(c.at, c.at + c.bytes)), `${what} at +${c.at}`).toBe(0);
              }
              moved += got.bytes;
            }
          }
        }
        expect(moved).toBeGreaterThan(1 << 20); // spans really moved bytes across many leaves
        m.fd.close();
      });
    }
  }
});

describe('property: invalidation removes exactly what it names', () => {
  const PAGES = 48;
  const BASE = 0x20_0000_0000n; // IOVA of page 0 (Sv39 low half)
  const pte = (pa: bigint): bigint => ((pa >> 12n) << 10n) | 0xd7n; // V R W U A D

  function setup(seed: number) {
    const iommu = Iommu.createSync({ ram: { base: RAM, bytes: 4 << 20 }, translators: 2, iotlbEntries: 4096, maxDomains: 8, maxMemoryBytes: 64 << 20 });
    const ram = new GuestRam(iommu, RAM);
    const dev = iommu.addDevice({ bdf: '00:05.0' });
    const fd = iommu.open();
    const devId = dev.bind(fd);
    const root = ram.table();
    const t = new GuestTables(ram, root, 3, (a) => ((a >> 12n) << 10n) | 1n);
    const leafAt: bigint[] = [];
    for (let i = 0; i < PAGES; i++) {
      t.map(BASE + BigInt(i) * 0x1000n, 0, pte(0x1_0000_0000n + BigInt(i) * 0x1000n), () => ram.table());
      leafAt.push(t.lastEntries.get(0)!);
    }
    const hwpt = fd.hwptAlloc({ devId, pasid: true, table: { format: 'sv39', root } });
    const pasids = [NO_PASID, fd.pasidAlloc(), fd.pasidAlloc()];
    for (const p of pasids) dev.attach(hwpt, p === NO_PASID ? undefined : { pasid: p });
    return { iommu, ram, dev, fd, hwpt, pasids, leafAt, r: rng(seed) };
  }

  function translateCounted(w: ReturnType<typeof setup>, pasid: number, page: number): { t: Translation; hit: boolean } {
    const before = w.iommu.stats().hits;
    const t = w.iommu.translate(w.dev.rid, pasid, BASE + BigInt(page) * 0x1000n + 0x10n, Access.Read);
    return { t, hit: w.iommu.stats().hits === before + 1 };
  }

  for (const seed of [11, 12, 13, 14, 15, 16]) {
    test(`random invalidations, seed ${seed}`, () => {
      const w = setup(seed);
      let generation = 0n;
      const target = (page: number): bigint => 0x1_0000_0000n + generation * 0x100_0000n + BigInt(page) * 0x1000n + 0x10n;
      for (let round = 0; round < 12; round++) {
        // Fill: every (pasid, page) translates to the current generation and is then cached.
        for (const p of w.pasids) for (let i = 0; i < PAGES; i++) expect(translateCounted(w, p, i).t.phys).toBe(target(i));
        const cached = new Set<string>();
        for (const p of w.pasids) for (let i = 0; i < PAGES; i++) if (translateCounted(w, p, i).hit) cached.add(`${p}/${i}`);
        expect(cached.size).toBeGreaterThan(PAGES * 2); // almost everything fits
        // The guest moves every page, without telling anyone yet.
        generation++;
        for (let i = 0; i < PAGES; i++) w.ram.write(w.leafAt[i]!, pte(target(i) & ~0xfffn));
        // Name something: a range (small: probed; large: scanned), a PASID, or a range of one PASID.
        const first = Math.floor(w.r() * PAGES);
        const count = 1 + Math.floor(w.r() * (w.r() < 0.5 ? 3 : PAGES - first));
        const kind = pick(w.r, ['range', 'range', 'pasid', 'range+pasid'] as const);
        const pasid = pick(w.r, w.pasids);
        const entry = kind === 'pasid' ? { pasid } : {
          iova: BASE + BigInt(first) * 0x1000n + BigInt(Math.floor(w.r() * 4096)), // unaligned start names its page
          length: BigInt(count - 1) * 0x1000n + 1n,
          ...(kind === 'range+pasid' ? { pasid } : {}),
        };
        expect(w.fd.hwptInvalidate(w.hwpt, [entry])).toBe(1);
        const named = (p: number, i: number): boolean =>
          (kind === 'pasid' || (i >= first && i < first + count)) && (kind === 'range' || p === pasid);
        for (const p of w.pasids) {
          for (let i = 0; i < PAGES; i++) {
            const { t, hit } = translateCounted(w, p, i);
            if (named(p, i)) {
              expect(hit, `named ${p}/${i} must miss`).toBe(false);
              expect(t.phys).toBe(target(i));
            } else if (cached.has(`${p}/${i}`)) {
              expect(hit, `unnamed ${p}/${i} must stay cached (round ${round}, ${kind})`).toBe(true);
              expect(t.phys).toBe(target(i) - 0x100_0000n); // still the old result, as on hardware
            }
          }
        }
        // Then everything, so the next round starts from the truth.
        w.fd.hwptInvalidate(w.hwpt, [{}]);
      }
      w.fd.close();
    });
  }
});
