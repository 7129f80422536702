// x86-64 paging vectors built by hand from the Intel SDM Vol. 3A §4.5 (entry formats, Tables 4-15
// to 4-20), §4.6 (access rights), §4.8 (A/D flags), §3.3.7.1 (canonical addresses) and the VT-d
// specification §3.6 (first-stage translation: privileged requests, A/D updates) and §3.8 (nested
// translation): for every bit the walker interprets, at every level, 4- and 5-level. Expected
// values are written out from those rules, not computed by the engine.
import { beforeEach, describe, expect, test } from 'vitest';
import { Access, NO_PASID, type Iommu, type Translation } from '../src/index';
import { createInMode, RAM_MODES, type RamMode } from './ram-modes';
import { GuestRam, GuestTables } from './vectors/guest-tables';

const P = 1n, RW = 2n, US = 4n, PWT = 8n, PCD = 16n, A = 32n, D = 64n, PS = 128n, G = 256n;
const XD = 1n << 63n;
const TABLE = P | RW | US | A;
const LEAF = P | RW | US | A | D;
const R = Access.Read, W = Access.Write, X = Access.Exec, PRIV = Access.Priv;
const RAM = 0x8000_0000n;
const RAM_BYTES = 8 << 20;

/** A canonical low-half IOVA whose index is different at every level. */
const VA = 0x0000_1234_5678_9abcn;
const PAGE_4K = 0x1_2345_6000n;
const PAGE_2M = 0x4060_0000n;
const PAGE_1G = 0x1_c000_0000n;

interface World {
  iommu: Iommu;
  ram: GuestRam;
  t: GuestTables;
  alloc: () => bigint;
  tr: (va: bigint, access: number) => Translation;
}

/** Where guest RAM is for the running test (test/ram-modes.ts); set by the mode's beforeEach. */
let mode: RamMode = 'engine';

function world(opts: { levels?: 4 | 5; hwAccessDirty?: boolean; paBits?: number } = {}): World {
  const { iommu, rams } = createInMode(mode, { base: RAM, bytes: RAM_BYTES }, { translators: 1, iotlbEntries: 64, maxDomains: 8, maxMemoryBytes: 32 << 20 });
  const ram = new GuestRam(rams[0]!, RAM);
  const levels = opts.levels ?? 4;
  const root = ram.table();
  const t = new GuestTables(ram, root, levels, (addr) => addr | TABLE);
  const dev = iommu.addDevice({ bdf: '00:02.0' });
  const fd = iommu.open();
  const devId = dev.bind(fd);
  const hwpt = fd.hwptAlloc({
    devId,
    table: { format: 'x86-64', root, levels, ...(opts.hwAccessDirty === undefined ? {} : { hwAccessDirty: opts.hwAccessDirty }), ...(opts.paBits ? { features: { paBits: opts.paBits } } : {}) },
  });
  dev.attach(hwpt);
  const tr = (va: bigint, access: number): Translation => {
    fd.hwptInvalidate(hwpt, [{}]); // every vector request walks
    return iommu.translate(dev.rid, NO_PASID, va, access);
  };
  return { iommu, ram, t, alloc: () => ram.table(), tr };
}

const ok = (t: Translation, phys: bigint, size: bigint, perm: number): void => {
  expect(t.fault, JSON.stringify(t.fault, (_, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))).toBeUndefined();
  expect({ phys: t.phys, size: t.size, perm: t.perm }).toEqual({ phys, size, perm });
};
const fault = (t: Translation, reason: string, level?: number): void => {
  expect(t.ok).toBe(false);
  expect(t.fault!.reason).toBe(reason);
  if (level !== undefined) expect(t.fault!.level).toBe(level);
  expect(t.fault!.stage).toBe(1);
};

let vectors = 0;
/** A vector: one request against hand-written tables with its hand-written expectation. */
const vector = (name: string, fn: () => void): void => {
  vectors++;
  test(name, fn);
};

// Every vector runs with guest RAM in the engine, in an emulator's memory and in an external buffer.
describe.each(RAM_MODES)('RAM in %s', (m) => {
  beforeEach(() => {
    mode = m;
  });

  describe('x86-64 leaves and sizes (SDM Tables 4-15..4-20)', () => {
    for (const access of [R, W, X]) {
      vector(`4 KiB PTE, ${['', 'read', 'write', '', 'exec'][access]}: PA = PTE[51:12] + VA[11:0]`, () => {
        const w = world();
        w.t.map(VA, 0, PAGE_4K | LEAF, w.alloc);
        ok(w.tr(VA, access), PAGE_4K + 0xabcn, 0x1000n, 7);
      });
    }
    vector('2 MiB PDE leaf (PS): PA = PDE[51:21] + VA[20:0]', () => {
      const w = world();
      w.t.map(VA, 1, PAGE_2M | PS | LEAF, w.alloc);
      ok(w.tr(VA, R), 0x4078_9abcn, 0x20_0000n, 7);
    });
    vector('1 GiB PDPTE leaf (PS): PA = PDPTE[51:30] + VA[29:0]', () => {
      const w = world();
      w.t.map(VA, 2, PAGE_1G | PS | LEAF, w.alloc);
      ok(w.tr(VA, R), 0x1_d678_9abcn, 0x4000_0000n, 7);
    });
    vector('2 MiB leaf: bit 12 is PAT, not address', () => {
      const w = world();
      w.t.map(VA, 1, PAGE_2M | 0x1000n | PS | LEAF, w.alloc);
      ok(w.tr(VA, R), 0x4078_9abcn, 0x20_0000n, 7);
    });
    vector('1 GiB leaf: bit 12 is PAT, not address', () => {
      const w = world();
      w.t.map(VA, 2, PAGE_1G | 0x1000n | PS | LEAF, w.alloc);
      ok(w.tr(VA, R), 0x1_d678_9abcn, 0x4000_0000n, 7);
    });
    vector('4 KiB PTE: bit 7 is PAT (no PS meaning at level 0)', () => {
      const w = world();
      w.t.map(VA, 0, PAGE_4K | PS | LEAF, w.alloc);
      ok(w.tr(VA, R), PAGE_4K + 0xabcn, 0x1000n, 7);
    });
    vector('5-level: 4 KiB leaf under a PML5E', () => {
      const w = world({ levels: 5 });
      const va = 0x00ab_cdef_1234_5678n;
      w.t.map(va, 0, PAGE_4K | LEAF, w.alloc);
      ok(w.tr(va, R), PAGE_4K + 0x678n, 0x1000n, 7);
    });
    vector('5-level: 1 GiB leaf', () => {
      const w = world({ levels: 5 });
      w.t.map(VA, 2, PAGE_1G | PS | LEAF, w.alloc);
      ok(w.tr(VA, W), 0x1_d678_9abcn, 0x4000_0000n, 7);
    });
  });

  describe('x86-64 reserved bits', () => {
    for (const [bit, level] of [[13n, 1], [20n, 1], [13n, 2], [21n, 2], [29n, 2]] as const) {
      vector(`${level === 1 ? '2 MiB' : '1 GiB'} leaf with bit ${bit} set (below the page size, above PAT) is reserved`, () => {
        const w = world();
        w.t.map(VA, level, (level === 1 ? PAGE_2M : PAGE_1G) | (1n << bit) | PS | LEAF, w.alloc);
        fault(w.tr(VA, R), 'reserved', level);
      });
    }
    vector('PS in a PML4E is reserved', () => {
      const w = world();
      w.t.map(VA, 0, PAGE_4K | LEAF, w.alloc, { 3: 0n });
      w.ram.write(w.t.lastEntries.get(3)!, 0x20_0000n | TABLE | PS);
      fault(w.tr(VA, R), 'reserved', 3);
    });
    vector('PS in a PML5E is reserved', () => {
      const w = world({ levels: 5 });
      w.t.map(VA, 0, PAGE_4K | LEAF, w.alloc);
      const e = w.t.lastEntries.get(4)!;
      w.ram.write(e, w.ram.read(e) | PS);
      fault(w.tr(VA, R), 'reserved', 4);
    });
    for (const level of [0, 1, 2, 3]) {
      vector(`paBits 46: address bit 47 in a level-${level} entry is reserved`, () => {
        const w = world({ paBits: 46 });
        w.t.map(VA, 0, PAGE_4K | LEAF, w.alloc);
        const e = w.t.lastEntries.get(level)!;
        w.ram.write(e, w.ram.read(e) | (1n << 47n));
        fault(w.tr(VA, R), 'reserved', level);
      });
    }
    vector('default output width 52: address bit 51 is an address bit', () => {
      const w = world();
      w.t.map(VA, 0, (1n << 51n) | PAGE_4K | LEAF, w.alloc);
      ok(w.tr(VA, R), (1n << 51n) + PAGE_4K + 0xabcn, 0x1000n, 7);
    });
    vector('ignored bits 62:52, 11:9, G, PWT, PCD in every entry, and D in a non-leaf', () => {
      const w = world();
      const junk = (0x7ffn << 52n) | (7n << 9n) | G | PWT | PCD;
      w.t.map(VA, 0, PAGE_4K | LEAF | junk, w.alloc, {});
      for (const level of [1, 2, 3]) {
        const e = w.t.lastEntries.get(level)!;
        w.ram.write(e, w.ram.read(e) | junk | D);
      }
      ok(w.tr(VA, W), PAGE_4K + 0xabcn, 0x1000n, 7);
    });
  });

  describe('x86-64 present bit at every level', () => {
    for (const level of [0, 1, 2, 3, 4]) {
      vector(`P = 0 at level ${level} is not present`, () => {
        const w = world({ levels: 5 });
        w.t.map(VA, 0, PAGE_4K | LEAF, w.alloc);
        const e = w.t.lastEntries.get(level)!;
        w.ram.write(e, w.ram.read(e) & ~P);
        fault(w.tr(VA, R), 'not-present', level);
      });
    }
  });

  describe('x86-64 access rights (SDM §4.6, VT-d §3.6.1): R/W and U/S ANDed, XD ORed over levels', () => {
    for (const level of [0, 1, 2, 3]) {
      vector(`R/W = 0 at level ${level}: reads and exec work, writes fault (user and privileged)`, () => {
        const w = world();
        w.t.map(VA, 0, PAGE_4K | LEAF, w.alloc);
        const e = w.t.lastEntries.get(level)!;
        w.ram.write(e, w.ram.read(e) & ~RW);
        ok(w.tr(VA, R), PAGE_4K + 0xabcn, 0x1000n, 5);
        ok(w.tr(VA, X), PAGE_4K + 0xabcn, 0x1000n, 5);
        fault(w.tr(VA, W), 'permission', 0);
        fault(w.tr(VA, W | PRIV), 'permission', 0); // write protection applies to privileged requests
      });
      vector(`U/S = 0 at level ${level}: user requests fault, privileged ones read, write and execute`, () => {
        const w = world();
        w.t.map(VA, 0, PAGE_4K | LEAF, w.alloc);
        const e = w.t.lastEntries.get(level)!;
        w.ram.write(e, w.ram.read(e) & ~US);
        fault(w.tr(VA, R), 'permission', 0);
        fault(w.tr(VA, W), 'permission', 0);
        fault(w.tr(VA, X), 'permission', 0);
        ok(w.tr(VA, R | PRIV), PAGE_4K + 0xabcn, 0x1000n, 7);
        ok(w.tr(VA, W | PRIV), PAGE_4K + 0xabcn, 0x1000n, 7);
        ok(w.tr(VA, X | PRIV), PAGE_4K + 0xabcn, 0x1000n, 7);
      });
      vector(`XD at level ${level}: execute faults for both privileges, data accesses work`, () => {
        const w = world();
        w.t.map(VA, 0, PAGE_4K | LEAF, w.alloc);
        const e = w.t.lastEntries.get(level)!;
        w.ram.write(e, w.ram.read(e) | XD);
        fault(w.tr(VA, X), 'permission', 0);
        fault(w.tr(VA, X | PRIV), 'permission', 0);
        ok(w.tr(VA, R), PAGE_4K + 0xabcn, 0x1000n, 3);
        ok(w.tr(VA, W), PAGE_4K + 0xabcn, 0x1000n, 3);
      });
    }
    vector('a privileged request never executes from a user page (U/S = 1 at every level)', () => {
      const w = world();
      w.t.map(VA, 0, PAGE_4K | LEAF, w.alloc);
      fault(w.tr(VA, X | PRIV), 'permission', 0);
      ok(w.tr(VA, R | PRIV), PAGE_4K + 0xabcn, 0x1000n, 7); // data accesses to user pages are allowed
    });
    vector('rights of a 2 MiB leaf combine the PDE with the levels above', () => {
      const w = world();
      w.t.map(VA, 1, PAGE_2M | PS | LEAF, w.alloc);
      const e = w.t.lastEntries.get(2)!;
      w.ram.write(e, w.ram.read(e) & ~RW);
      fault(w.tr(VA, W), 'permission', 1);
      ok(w.tr(VA, R), 0x4078_9abcn, 0x20_0000n, 5);
    });
  });

  describe('x86-64 canonical addresses (SDM §3.3.7.1)', () => {
    for (const va of [0x0000_8000_0000_0000n, 0xffff_7fff_ffff_f000n, 0x0001_0000_0000_0000n, 0x8000_0000_0000_0000n]) {
      vector(`4-level: 0x${va.toString(16)} is not canonical`, () => {
        const w = world();
        fault(w.tr(va, R), 'non-canonical', 3);
      });
    }
    vector('4-level: the high half (bits 63:47 set) translates through PML4 index 256', () => {
      const w = world();
      const va = 0xffff_8000_0000_1234n;
      w.t.map(va, 0, PAGE_4K | LEAF, w.alloc);
      ok(w.tr(va, R), PAGE_4K + 0x234n, 0x1000n, 7);
    });
    vector('5-level: bit 56 set alone is not canonical', () => {
      const w = world({ levels: 5 });
      fault(w.tr(0x0100_0000_0000_0000n, R), 'non-canonical', 4);
    });
    vector('5-level: bits 55:48 are address bits, and the high half translates', () => {
      const w = world({ levels: 5 });
      const lo = 0x0080_0000_0000_2000n;
      const hi = 0xff00_0000_0000_3000n;
      w.t.map(lo, 0, PAGE_4K | LEAF, w.alloc);
      w.t.map(hi, 0, (PAGE_4K + 0x1000n) | LEAF, w.alloc);
      ok(w.tr(lo, R), PAGE_4K, 0x1000n, 7);
      ok(w.tr(hi, R), PAGE_4K + 0x1000n, 0x1000n, 7);
    });
  });

  describe('x86-64 accessed and dirty flags (SDM §4.8, VT-d §3.6.2)', () => {
    const clean = (w: World): void => {
      w.t.map(VA, 0, PAGE_4K | P | RW | US, w.alloc);
      for (const level of [1, 2, 3]) {
        const e = w.t.lastEntries.get(level)!;
        w.ram.write(e, w.ram.read(e) & ~A);
      }
    };
    vector('a read sets A in every entry used and leaves D clear', () => {
      const w = world();
      clean(w);
      const before = [0, 1, 2, 3].map((l) => w.ram.read(w.t.lastEntries.get(l)!));
      ok(w.tr(VA, R), PAGE_4K + 0xabcn, 0x1000n, 7);
      expect([0, 1, 2, 3].map((l) => w.ram.read(w.t.lastEntries.get(l)!))).toEqual(before.map((e) => e | A));
    });
    vector('a write sets A everywhere and D in the leaf only', () => {
      const w = world();
      clean(w);
      const before = [0, 1, 2, 3].map((l) => w.ram.read(w.t.lastEntries.get(l)!));
      ok(w.tr(VA, W), PAGE_4K + 0xabcn, 0x1000n, 7);
      expect([0, 1, 2, 3].map((l) => w.ram.read(w.t.lastEntries.get(l)!))).toEqual([before[0]! | A | D, ...before.slice(1).map((e) => e | A)]);
    });
    vector('a write to a 2 MiB leaf sets D in the PDE', () => {
      const w = world();
      w.t.map(VA, 1, PAGE_2M | PS | P | RW | US, w.alloc);
      ok(w.tr(VA, W), 0x4078_9abcn, 0x20_0000n, 7);
      expect(w.ram.read(w.t.lastEntries.get(1)!)).toBe(PAGE_2M | PS | P | RW | US | A | D);
    });
    vector('a refused write sets A in the tables it used but not in the leaf', () => {
      const w = world();
      w.t.map(VA, 0, PAGE_4K | P | US, w.alloc);
      for (const level of [1, 2, 3]) {
        const e = w.t.lastEntries.get(level)!;
        w.ram.write(e, w.ram.read(e) & ~A);
      }
      fault(w.tr(VA, W), 'permission', 0);
      expect(w.ram.read(w.t.lastEntries.get(0)!)).toBe(PAGE_4K | P | US);
      for (const level of [1, 2, 3]) expect(w.ram.read(w.t.lastEntries.get(level)!) & A).toBe(A);
    });
    vector('a cached clean translation does not serve a write: the write walks and sets D', () => {
      const w = world();
      w.t.map(VA, 0, PAGE_4K | P | RW | US | A, w.alloc);
      const dev = w.iommu.translate(0x10, NO_PASID, VA, R); // 00:02.0 = RID 0x10; fills the IOTLB
      ok(dev, PAGE_4K + 0xabcn, 0x1000n, 7);
      const hits = w.iommu.stats().hits;
      ok(w.iommu.translate(0x10, NO_PASID, VA, W), PAGE_4K + 0xabcn, 0x1000n, 7);
      expect(w.iommu.stats().hits).toBe(hits); // a miss, not a hit
      expect(w.ram.read(w.t.lastEntries.get(0)!)).toBe(PAGE_4K | P | RW | US | A | D);
      ok(w.iommu.translate(0x10, NO_PASID, VA, W), PAGE_4K + 0xabcn, 0x1000n, 7);
      expect(w.iommu.stats().hits).toBe(hits + 1); // now dirty: cached for writes
    });
    vector('hwAccessDirty off: a leaf without A faults ad-disabled and nothing is written', () => {
      const w = world({ hwAccessDirty: false });
      clean(w);
      const before = [0, 1, 2, 3].map((l) => w.ram.read(w.t.lastEntries.get(l)!));
      fault(w.tr(VA, R), 'ad-disabled', 0);
      expect([0, 1, 2, 3].map((l) => w.ram.read(w.t.lastEntries.get(l)!))).toEqual(before);
    });
    vector('hwAccessDirty off: A set, D clear: reads work, writes fault ad-disabled; table A bits are not needed', () => {
      const w = world({ hwAccessDirty: false });
      w.t.map(VA, 0, PAGE_4K | P | RW | US | A, w.alloc);
      const e = w.t.lastEntries.get(2)!;
      w.ram.write(e, w.ram.read(e) & ~A);
      ok(w.tr(VA, R), PAGE_4K + 0xabcn, 0x1000n, 7);
      fault(w.tr(VA, W), 'ad-disabled', 0);
      expect(w.ram.read(w.t.lastEntries.get(0)!)).toBe(PAGE_4K | P | RW | US | A);
    });
  });

  describe('x86-64 nested over an engine-managed stage 2 (VT-d §3.8)', () => {
    /** Stage 2 maps GPA [0, 8 MiB) to RAM; stage-1 tables live at GPAs. */
    function nestedWorld(opts: { tableGpaWritable?: boolean } = {}) {
      const { iommu, rams } = createInMode(mode, { base: RAM, bytes: RAM_BYTES }, { translators: 1, iotlbEntries: 64, maxDomains: 8, maxMemoryBytes: 32 << 20 });
      const ram = new GuestRam(rams[0]!, RAM, RAM + 0x10_0000n);
      const dev = iommu.addDevice({ bdf: '00:02.0' });
      const fd = iommu.open();
      const devId = dev.bind(fd);
      const ioas = fd.ioasAlloc();
      const writable = opts.tableGpaWritable ?? true;
      // GPA 1 MiB..2 MiB holds the stage-1 tables; the rest of [0, 8 MiB) is data.
      fd.ioasMap(ioas, { iova: 0, length: 0x10_0000, phys: RAM });
      fd.ioasMap(ioas, { iova: 0x10_0000, length: 0x10_0000, phys: RAM + 0x10_0000n, write: writable });
      fd.ioasMap(ioas, { iova: 0x20_0000, length: 0x60_0000, phys: RAM + 0x20_0000n });
      const parent = fd.hwptAlloc({ devId, ptId: ioas, nestParent: true });
      const gpaOf = (addr: bigint): bigint => addr - RAM;
      const rootRam = ram.table();
      const t = new GuestTables(ram, gpaOf(rootRam), 4, (gpa) => gpa | TABLE, 9, (gpa) => gpa + RAM);
      const hwpt = fd.hwptAlloc({ devId, ptId: parent, table: { format: 'x86-64', root: gpaOf(rootRam) } });
      dev.attach(hwpt);
      const tr = (va: bigint, access: number): Translation => iommu.translate(dev.rid, NO_PASID, va, access);
      return { iommu, ram, t, fd, ioas, parent, hwpt, alloc: () => gpaOf(ram.table()), tr };
    }
    vector('stage-1 4 KiB leaf to GPA 0x30_0000 over a stage-2 2 MiB leaf: HPA, size 4 KiB', () => {
      const w = nestedWorld();
      w.t.map(VA, 0, 0x30_0000n | LEAF, w.alloc);
      ok(w.tr(VA, W), RAM + 0x30_0abcn, 0x1000n, 3); // engine stage 2 grants R/W, no X
    });
    vector('stage-1 2 MiB leaf over stage-2 2 MiB leaves: size 2 MiB', () => {
      const w = nestedWorld();
      w.t.map(VA, 1, 0x40_0000n | PS | LEAF, w.alloc);
      ok(w.tr(VA, R), RAM + 0x40_0000n + 0x18_9abcn, 0x20_0000n, 3);
    });
    vector('final GPA not mapped by stage 2: a stage-2 fault with that GPA, not implicit', () => {
      const w = nestedWorld();
      w.t.map(VA, 0, 0x90_0000n | LEAF, w.alloc);
      const t = w.tr(VA, R);
      expect(t.fault).toMatchObject({ reason: 'not-present', stage: 2, addr: 0x90_0abcn });
      expect(t.fault!.implicit).toBeUndefined();
    });
    vector('stage-1 table GPA not mapped by stage 2: implicit stage-2 fault at the entry GPA', () => {
      const w = nestedWorld();
      w.t.map(VA, 0, 0x30_0000n | LEAF, w.alloc);
      const pde = w.t.lastEntries.get(1)!;
      w.ram.write(pde, 0xa0_0000n | TABLE); // the PT "lives" at GPA 10 MiB: unmapped
      const t = w.tr(VA, R);
      expect(t.fault).toMatchObject({ reason: 'not-present', stage: 2, implicit: true, addr: 0xa0_0000n + 8n * ((VA >> 12n) & 511n) });
    });
    vector('A/D update of a stage-1 entry needs stage-2 write permission: implicit write fault', () => {
      const w = nestedWorld({ tableGpaWritable: false });
      w.t.map(VA, 0, 0x30_0000n | P | RW | US, w.alloc); // leaf without A: the walk must write it
      const t = w.tr(VA, R);
      expect(t.fault).toMatchObject({ reason: 'permission', stage: 2, implicit: true, implicitWrite: true });
    });
    vector('unmapping the parent ends the nested cached result', () => {
      const w = nestedWorld();
      w.t.map(VA, 0, 0x30_0000n | LEAF, w.alloc);
      ok(w.tr(VA, R), RAM + 0x30_0abcn, 0x1000n, 3);
      const hits = w.iommu.stats().hits;
      ok(w.tr(VA, R), RAM + 0x30_0abcn, 0x1000n, 3);
      expect(w.iommu.stats().hits).toBe(hits + 1); // the nested result is an IOTLB hit
      w.fd.ioasUnmap(w.ioas, 0x20_0000, 0x60_0000);
      expect(w.tr(VA, R).fault).toMatchObject({ reason: 'not-present', stage: 2, addr: 0x30_0abcn });
    });
  });
});

test('vector count', () => {
  console.log(`x86-64 hand-built vectors: ${vectors / RAM_MODES.length}, in ${RAM_MODES.length} RAM modes`);
  expect(vectors).toBeGreaterThan(60 * RAM_MODES.length);
});
