// Guest RAM windows (README "Embedding in an emulator"): several disjoint windows, the engine inside
// a region of an emulator's memory, RAM in buffers the engine does not own. x86-64 tables (Intel SDM
// Vol. 3A §4.5) are spread over two windows so every walk crosses between them; A/D updates and DMA
// are read back from the caller's own views.
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import { Access, Iommu, NO_PASID, type IommuFd } from '../src/index';
import * as testing from './testing';
import { errnoOf } from './helpers';
import { createInMode, RAM_MODES, REGION_OFFSET, type RamMode } from './ram-modes';

const K = 4096;
const P = 1n, RW = 2n, US = 4n, A = 32n, D = 64n;
const TABLE = P | RW | US;
/** Two windows: low RAM below a hole and high RAM above 4 GiB, as on an x86 machine. */
const LOW = 0x10_0000n;
const HIGH = 0x1_0000_0000n;
const WINDOWS = [{ base: LOW, bytes: 64 * K }, { base: HIGH, bytes: 64 * K }];

/** Reads and writes guest-physical u64 words through the caller's views of the windows. */
class Guest {
  private next = new Map<bigint, bigint>();
  constructor(private readonly views: Map<bigint, Uint8Array>) {
    for (const base of views.keys()) this.next.set(base, base);
  }
  private at(addr: bigint): [DataView, number] {
    for (const [base, v] of this.views) {
      if (addr >= base && addr < base + BigInt(v.length)) return [new DataView(v.buffer, v.byteOffset, v.length), Number(addr - base)];
    }
    throw new Error(`0x${addr.toString(16)} is not guest RAM`);
  }
  read(addr: bigint): bigint {
    const [v, o] = this.at(addr);
    return v.getBigUint64(o, true);
  }
  write(addr: bigint, value: bigint): void {
    const [v, o] = this.at(addr);
    v.setBigUint64(o, value, true);
  }
  /** A zeroed 4 KiB table page in the window at `base`. */
  table(base: bigint): bigint {
    const t = this.next.get(base)!;
    this.next.set(base, t + BigInt(K));
    for (let i = 0n; i < 512n; i++) this.write(t + 8n * i, 0n);
    return t;
  }
}

/**
 * x86-64 4-level tables for `va` -> `page`: root and level-1 table in the high window, level-2 and
 * level-0 tables in the low one. Returns the entry addresses by level.
 */
function mapAcross(g: Guest, va: bigint, page: bigint): { root: bigint; entries: bigint[] } {
  const tables = [g.table(LOW), g.table(LOW), g.table(HIGH), g.table(HIGH)]; // levels 0..3
  const entries = tables.map((t, level) => t + 8n * ((va >> BigInt(12 + 9 * level)) & 511n));
  for (let level = 3; level > 0; level--) g.write(entries[level]!, tables[level - 1]! | TABLE);
  g.write(entries[0]!, page | TABLE);
  return { root: tables[3]!, entries };
}

function attachTables(iommu: Iommu, root: bigint): { fd: IommuFd; rid: number; hwpt: number } {
  const dev = iommu.addDevice({ bdf: '00:03.0' });
  const fd = iommu.open();
  const devId = dev.bind(fd);
  const hwpt = fd.hwptAlloc({ devId, table: { format: 'x86-64', root, levels: 4, hwAccessDirty: true } });
  dev.attach(hwpt);
  return { fd, rid: dev.rid, hwpt };
}

const VA = 0x7f12_3456_7000n;

describe.each(RAM_MODES)('two RAM windows, RAM in %s', (mode: RamMode) => {
  const rig = () => {
    const made = createInMode(mode, WINDOWS, { translators: 2, iotlbEntries: 64, maxDomains: 8, maxMemoryBytes: 16 << 20 });
    const g = new Guest(new Map(WINDOWS.map((w, i) => [w.base, made.rams[i]!])));
    return { ...made, g };
  };

  test('a walk whose tables alternate between the windows translates, and its A/D writes land in the caller\'s RAM', () => {
    const { iommu, g } = rig();
    const page = HIGH + 0x8000n;
    const { root, entries } = mapAcross(g, VA, page);
    const { rid } = attachTables(iommu, root);
    const t = iommu.translate(rid, NO_PASID, VA + 0x123n, Access.Write);
    expect(t.fault).toBeUndefined();
    expect(t.phys).toBe(page + 0x123n);
    expect(entries.map((e) => g.read(e) & (A | D))).toEqual([A | D, A, A, A]);
  });

  test('DMA goes to whichever window the translation lands in; a leaf outside both is not-ram, a table outside both outside-ram', () => {
    const { iommu, g } = rig();
    const { root, entries } = mapAcross(g, VA, LOW + 0xc000n);
    g.write(entries[0]! + 8n, (HIGH + 0xe000n) | TABLE); // VA + 4 KiB, in the same level-0 table
    const { rid } = attachTables(iommu, root);
    const data = Uint8Array.from({ length: K }, (_, i) => (i * 13 + 5) & 0xff);
    expect(iommu.dmaWrite(rid, NO_PASID, VA + 0x800n, data)).toEqual({ bytes: K });
    const back = new Uint8Array(K);
    expect(iommu.dmaRead(rid, NO_PASID, VA + 0x800n, back)).toEqual({ bytes: K });
    expect(back).toEqual(data);
    expect(g.read(LOW + 0xc800n)).toBe(new DataView(data.buffer).getBigUint64(0, true));
    expect(g.read(HIGH + 0xe000n)).toBe(new DataView(data.buffer).getBigUint64(K / 2, true));
    g.write(entries[0]! + 16n, 0x8000_0000n | TABLE); // a hole between the windows
    expect(iommu.dmaRead(rid, NO_PASID, VA + 0x2000n, back)).toMatchObject({ bytes: 0, fault: { reason: 'not-ram' } });
    g.write(entries[1]! + 8n, 0x8000_0000n | TABLE); // a level-0 table in the hole
    const t = iommu.translate(rid, NO_PASID, VA + 0x20_0000n, Access.Read);
    expect(t.fault).toMatchObject({ reason: 'outside-ram', addr: 0x8000_0000n + 8n * ((VA >> 12n) & 511n) });
  });

  test('access objects copy across windows and refuse a range outside them with EFAULT', () => {
    const { iommu, rams } = rig();
    const fd = iommu.open();
    const ioas = fd.ioasAlloc();
    fd.ioasMap(ioas, { iova: 0x1000, length: K, phys: LOW });
    fd.ioasMap(ioas, { iova: 0x2000, length: K, phys: HIGH + BigInt(K) });
    fd.ioasMap(ioas, { iova: 0x3000, length: K, phys: 0x8000_0000 });
    const access = fd.accessCreate(ioas);
    const data = Uint8Array.from({ length: 2 * K - 200 }, (_, i) => (i * 7) & 0xff);
    access.write(0x1000 + 100, data);
    expect(rams[0]!.slice(100, K)).toEqual(data.subarray(0, K - 100));
    expect(rams[1]!.slice(K, 2 * K - 100)).toEqual(data.subarray(K - 100));
    expect(errnoOf(() => access.read(0x2f00, new Uint8Array(0x200)))).toBe('EFAULT');
  });
});

describe('RAM window options', () => {
  const memory = () => new WebAssembly.Memory({ initial: 64, maximum: 64, shared: true });
  test.each([
    ['overlapping windows', { ram: [{ base: 0, bytes: 2 * K }, { base: K, bytes: K }] }],
    ['unaligned base', { ram: [{ base: 0x800, bytes: K }] }],
    ['bytes not a page multiple', { ram: { base: 0, bytes: K + 8 } }],
    ['offset not a multiple of 8', { ram: [{ base: 0, bytes: K, buffer: new ArrayBuffer(2 * K), offset: 4 }] }],
    ['window past its buffer', { ram: [{ base: 0, bytes: 2 * K, buffer: new ArrayBuffer(2 * K), offset: 8 }] }],
    ['offset without buffer or memory', { ram: [{ base: 0, bytes: K, offset: 0 }] }],
    ['too many windows', { ram: Array.from({ length: 17 }, (_, i) => ({ base: i * K, bytes: K })) }],
    ['memory without region', { memory: memory() }],
    ['window in memory without offset', { memory: memory(), region: { offset: 0, bytes: 2 << 20 }, ram: [{ base: 0, bytes: K }] }],
    ['window overlapping the region', { memory: memory(), region: { offset: 0, bytes: 2 << 20 }, ram: [{ base: 0, bytes: K, offset: (2 << 20) - K }] }],
    ['region past the memory', { memory: memory(), region: { offset: 2 << 20, bytes: 4 << 20 } }],
    ['region too small', { memory: memory(), region: { offset: 0, bytes: 64 * K } }],
    ['unaligned region', { memory: memory(), region: { offset: 8, bytes: 2 << 20 } }],
    ['maxMemoryBytes with memory', { memory: memory(), region: { offset: 0, bytes: 2 << 20 }, maxMemoryBytes: 2 << 20 }],
    ['shared: false with a shared memory', { memory: memory(), region: { offset: 0, bytes: 2 << 20 }, shared: false }],
  ])('%s is EINVAL', (_, opts) => {
    expect(errnoOf(() => Iommu.createSync(opts as never))).toBe('EINVAL');
  });

  test('one-page DMAs, repeated (call-cache hits), land on both sides of a window across 4 GiB; below it and 4 GiB above it is not-ram', () => {
    const base = 0x1_0000_0000 - 2 * K;
    const iommu = Iommu.createSync({ ram: { base, bytes: 4 * K } });
    const dev = iommu.addDevice({ bdf: '00:05.0' });
    const fd = iommu.open();
    dev.bind(fd);
    const ioas = fd.ioasAlloc();
    dev.attach(ioas);
    // IOVA page i goes to window page 3 - i; page 4 to the page below the window, page 5 to the
    // window's first page plus 4 GiB (same low address word): neither is RAM.
    for (let i = 0; i < 4; i++) fd.ioasMap(ioas, { iova: i * K, length: K, phys: base + (3 - i) * K });
    fd.ioasMap(ioas, { iova: 4 * K, length: K, phys: base - K });
    fd.ioasMap(ioas, { iova: 5 * K, length: K, phys: base + 2 ** 32 });
    let hits = 0;
    for (let round = 0; round < 2; round++) {
      hits = iommu.stats().hits;
      for (let i = 0; i < 4; i++) {
        const data = Uint8Array.of(round, i, 0xa5);
        expect(iommu.dmaWrite(dev.rid, NO_PASID, i * K + 100, data)).toEqual({ bytes: 3 });
        expect([...iommu.ram.subarray((3 - i) * K + 100, (3 - i) * K + 103)]).toEqual([round, i, 0xa5]);
        const back = new Uint8Array(3);
        expect(iommu.dmaRead(dev.rid, NO_PASID, i * K + 100, back)).toEqual({ bytes: 3 });
        expect(back).toEqual(data);
      }
      const r = iommu.dmaWrite(dev.rid, NO_PASID, 4 * K + 8, Uint8Array.of(1));
      expect(r).toMatchObject({ bytes: 0, fault: { reason: 'not-ram', phys: BigInt(base - K + 8) } });
      const high = iommu.dmaWrite(dev.rid, NO_PASID, 5 * K + 8, Uint8Array.of(1));
      expect(high).toMatchObject({ bytes: 0, fault: { reason: 'not-ram', phys: BigInt(base + 2 ** 32 + 8) } });
    }
    expect(iommu.ram[8]).toBe(0); // the not-ram write of page 5 did not land at the same low address
    expect(iommu.stats().hits - hits).toBe(10); // the second round: 4 writes, 4 reads and the 2 not-ram writes
  });

  test('adjacent windows are fine, a copy may run across them; the single-window form still works', () => {
    const buffer = new ArrayBuffer(K);
    const iommu = Iommu.createSync({ ram: [{ base: K, bytes: K, buffer }, { base: 0, bytes: K }] });
    expect(iommu.ramWindows().map((w) => [w.base, w.bytes.length])).toEqual([[0n, K], [BigInt(K), K]]);
    const fd = iommu.open();
    const ioas = fd.ioasAlloc();
    fd.ioasMap(ioas, { iova: 0, length: 2 * K, phys: 0 });
    fd.accessCreate(ioas).write(K - 2, Uint8Array.of(1, 2, 3, 4));
    expect([...iommu.ramWindows()[0]!.bytes.subarray(K - 2), ...new Uint8Array(buffer, 0, 2)]).toEqual([1, 2, 3, 4]);
    expect(Iommu.createSync({ ram: { base: 0x8000_0000, bytes: K } }).ramBase).toBe(0x8000_0000n);
  });
});

describe('the engine inside an emulator\'s memory', () => {
  test('it never grows the memory: ENOMEM when its region is full; nothing outside the region changes but A/D bits and DMA', () => {
    const { iommu, memory, rams } = createInMode('memory', WINDOWS, { translators: 1, iotlbEntries: 64, maxDomains: 8 }, 512 * K);
    const size = memory!.buffer.byteLength;
    const g = new Guest(new Map(WINDOWS.map((w, i) => [w.base, rams[i]!])));
    const { root, entries } = mapAcross(g, VA, LOW + 0x8000n);
    // Poison the rest of the emulator's memory: every byte outside the region and the windows.
    const all = new Uint8Array(memory!.buffer);
    const region = { start: REGION_OFFSET, end: REGION_OFFSET + 512 * K };
    const inWindow = (i: number) => rams.some((r) => i >= r.byteOffset && i < r.byteOffset + r.length);
    for (let i = 0; i < all.length; i++) if ((i < region.start || i >= region.end) && !inWindow(i)) all[i] = 0xa5;
    const before = all.slice();
    const { fd, rid } = attachTables(iommu, root);
    iommu.dmaWrite(rid, NO_PASID, VA, new Uint8Array(64).fill(7));
    const ioas = fd.ioasAlloc();
    const dev = iommu.addDevice({ bdf: '00:06.0' });
    dev.bind(fd);
    dev.attach(ioas); // an engine-managed domain: maps take table pages from the region
    let mapped = 0;
    const err = errnoOf(() => {
      for (;; mapped++) fd.ioasMap(ioas, { iova: mapped * 0x4000_0000, length: K, phys: LOW });
    });
    expect(err).toBe('ENOMEM');
    expect(mapped).toBeGreaterThan(5);
    expect(memory!.buffer.byteLength).toBe(size);
    const changed: number[] = [];
    for (let i = 0; i < all.length; i++) if ((i < region.start || i >= region.end) && all[i] !== before[i]) changed.push(i);
    // Allowed: the bytes of the four table entries (A/D updates) and the 64 bytes of DMA.
    const at = (pa: bigint): number => (pa >= HIGH ? rams[1]!.byteOffset + Number(pa - HIGH) : rams[0]!.byteOffset + Number(pa - LOW));
    const expected = new Set<number>();
    for (const e of entries) for (let b = 0; b < 8; b++) expected.add(at(e) + b);
    for (let i = 0; i < 64; i++) expected.add(at(LOW + 0x8000n) + i);
    expect(changed.length).toBeGreaterThan(64);
    expect(changed.filter((i) => !expected.has(i))).toEqual([]);
    expect(testing.guardViolations(iommu)).toEqual([]);
  });

  test('an unshared memory without a maximum (an emulator\'s exported memory) works, also after the emulator grows it', () => {
    const memory = new WebAssembly.Memory({ initial: 64 });
    const iommu = Iommu.createSync({ memory, region: { offset: 0, bytes: 2 << 20 }, ram: [{ base: LOW, bytes: 64 * K, offset: 3 << 20 }], translators: 1, maxDomains: 8 });
    expect(iommu.shared).toBe(false);
    const fd = iommu.open();
    const dev = iommu.addDevice({ bdf: '00:04.0' });
    dev.bind(fd);
    const ioas = fd.ioasAlloc();
    dev.attach(ioas);
    fd.ioasMap(ioas, { iova: 0, length: 64 * K, phys: LOW });
    memory.grow(1); // detaches every view of the old buffer
    expect(iommu.dmaWrite(dev.rid, NO_PASID, 0x10, Uint8Array.of(1, 2, 3))).toEqual({ bytes: 3 });
    expect([...new Uint8Array(memory.buffer, (3 << 20) + 0x10, 3)]).toEqual([1, 2, 3]);
    expect(errnoOf(() => iommu.translatorHandle())).toBe('EOPNOTSUPP');
  });
});

describe('RAM in a buffer the engine does not own', () => {
  test('an unshared ArrayBuffer works on the owner thread; workers are refused (they would get a copy)', () => {
    const buffer = new ArrayBuffer(128 * K);
    const iommu = Iommu.createSync({ ram: [{ base: LOW, bytes: 64 * K, buffer, offset: 64 * K }, { base: HIGH, bytes: 64 * K }], translators: 2 });
    const g = new Guest(new Map([[LOW, new Uint8Array(buffer, 64 * K)], [HIGH, iommu.ramWindows()[1]!.bytes]]));
    const { root, entries } = mapAcross(g, VA, LOW);
    const { rid } = attachTables(iommu, root);
    expect(iommu.translate(rid, NO_PASID, VA, Access.Write).phys).toBe(LOW);
    expect(g.read(entries[0]!) & (A | D)).toBe(A | D);
    expect(errnoOf(() => iommu.translatorHandle())).toBe('EOPNOTSUPP');
  });
});

describe.each(['memory', 'external'] as const)('workers with RAM in %s', (mode) => {
  test('a worker attached to the same memory walks (A/D by compare-and-swap) and DMAs into the caller\'s RAM', async () => {
    const { iommu, rams } = createInMode(mode, WINDOWS, { translators: 2, iotlbEntries: 64, maxDomains: 8, maxMemoryBytes: 16 << 20 });
    const g = new Guest(new Map(WINDOWS.map((w, i) => [w.base, rams[i]!])));
    const { root, entries } = mapAcross(g, VA, HIGH + 0x8000n);
    const { rid } = attachTables(iommu, root);
    const handle = iommu.translatorHandle({ batchCapacity: 16 });
    const worker = new Worker(new URL('./workers/ram-worker.mjs', import.meta.url), { workerData: { handle, rid, iova: VA } });
    const reply = await new Promise<{ phys: string; wrote: number; read: number[] }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    expect(BigInt(reply.phys)).toBe(HIGH + 0x8000n);
    expect(reply.wrote).toBe(16);
    expect(reply.read).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    expect([...rams[1]!.subarray(0x8000, 0x8010)]).toEqual(reply.read);
    expect(entries.map((e) => g.read(e) & (A | D))).toEqual([A | D, A, A, A]);
  });
});

describe('snapshots and guest RAM', () => {
  test('snapshot({ ram: false }) leaves the engine\'s RAM out; the restored engine translates the same', () => {
    const iommu = Iommu.createSync({ ram: WINDOWS, maxMemoryBytes: 16 << 20 });
    const rams = iommu.ramWindows().map((w) => w.bytes);
    const g = new Guest(new Map(WINDOWS.map((w, i) => [w.base, rams[i]!])));
    const { root } = mapAcross(g, VA, LOW + 0x8000n);
    const { rid } = attachTables(iommu, root);
    const full = iommu.snapshot();
    const lean = iommu.snapshot({ ram: false });
    expect(full.length - lean.length).toBeGreaterThan(4 * K - 16); // the four table pages (the headers differ too)
    const restored = Iommu.restore(lean).iommu;
    expect(restored.ramWindows().every((w) => w.bytes.every((b) => b === 0))).toBe(true);
    restored.ramWindows().forEach((w, i) => w.bytes.set(rams[i]!)); // the emulator restores its RAM itself
    expect(restored.translate(rid, NO_PASID, VA, Access.Read).phys).toBe(LOW + 0x8000n);
    expect(Iommu.restore(full).iommu.translate(rid, NO_PASID, VA, Access.Read).phys).toBe(LOW + 0x8000n);
    expect(errnoOf(() => iommu.snapshot({ ram: 1 } as never))).toBe('EINVAL');
  });

  test.each(['memory', 'external'] as const)('RAM in %s: restore takes the same memory and buffers back, with or without RAM', (mode) => {
    const { iommu, rams, memory } = createInMode(mode, WINDOWS, { translators: 2, maxDomains: 8 });
    const g = new Guest(new Map(WINDOWS.map((w, i) => [w.base, rams[i]!])));
    const { root } = mapAcross(g, VA, HIGH + 0x8000n);
    const { rid } = attachTables(iommu, root);
    const buffers = mode === 'external' ? WINDOWS.map((w, i) => ({ base: w.base, buffer: rams[i]!.buffer as SharedArrayBuffer, offset: rams[i]!.byteOffset })) : undefined;
    const back = { ...(memory ? { memory } : {}), ...(buffers ? { ram: buffers } : {}) };
    const lean = iommu.snapshot({ ram: false });
    const full = iommu.snapshot();
    const saved = rams.map((r) => r.slice());
    rams.forEach((r) => r.fill(0));
    // Without RAM the emulator puts its RAM back itself; with RAM, restore does.
    rams.forEach((r, i) => r.set(saved[i]!));
    expect(Iommu.restore(lean, back).iommu.translate(rid, NO_PASID, VA, Access.Read).phys).toBe(HIGH + 0x8000n);
    rams.forEach((r) => r.fill(0));
    const restored = Iommu.restore(full, back).iommu;
    expect(rams.map((r) => r.slice())).toEqual(saved);
    expect(restored.translate(rid, NO_PASID, VA, Access.Read).phys).toBe(HIGH + 0x8000n);
    expect(errnoOf(() => Iommu.restore(full))).toBe('EINVAL'); // the memory or buffers are needed
  });
});

describe('iommu.ram validity (a view of an unshared memory is detached when it grows)', () => {
  test('a kept view goes empty after growth; iommu.ram re-read is live; shared memory keeps old views valid', () => {
    for (const shared of [false, true]) {
      const iommu = Iommu.createSync({ shared, ram: { base: 0, bytes: 64 * K }, maxMemoryBytes: 64 << 20 });
      const kept = iommu.ram;
      const fd = iommu.open();
      const ioas = fd.ioasAlloc();
      const dev = iommu.addDevice({ bdf: '00:05.0' });
      dev.bind(fd);
      dev.attach(ioas);
      // Enough table pages to grow the memory past its initial size.
      for (let i = 0; i < 600; i++) fd.ioasMap(ioas, { iova: i * 0x4000_0000, length: K, phys: 0 });
      expect(kept.length).toBe(shared ? 64 * K : 0);
      expect(iommu.ram.length).toBe(64 * K);
      iommu.ram[5] = 42;
      expect(iommu.dmaRead(dev.rid, NO_PASID, 0, new Uint8Array(8))).toEqual({ bytes: 8 });
      const b = new Uint8Array(8);
      iommu.dmaRead(dev.rid, NO_PASID, 0, b);
      expect(b[5]).toBe(42);
    }
  });
});
