// RiscvIommu driven by a guest driver written as Linux's (examples/riscv-iommu/guest-driver.mjs):
// mapping, DMA, unmap with IOTINVAL + IOFENCE.C, faults in the fault queue, wired interrupts,
// the page-request queue and its ATS.PRGR response path.
import { describe, expect, test } from 'vitest';
import { Access, DEFAULT_CAPABILITIES, Iommu, NO_PASID, RiscvIommu } from '../src/index';
import { GuestDriver } from '../examples/riscv-iommu/guest-driver.mjs';

const RAM = { base: 0x8000_0000n, bytes: 4 << 20 };
const HEAP = { start: 0x8020_0000n, end: 0x8040_0000n };
const BUF = 0x8010_0000n;

/** An Iommu with an initialised guest driver and (unless `pci` is false) the emulator's device 00:01.0, requester ID 8. */
function machine(opts: ConstructorParameters<typeof RiscvIommu>[1] = {}, { pci: withPci = true, pri = false } = {}) {
  const iommu = Iommu.createSync({ ram: RAM, shared: false });
  const pci = withPci ? iommu.addDevice({ bdf: '00:01.0', pri }) : undefined!;
  const dev = new RiscvIommu(iommu, opts);
  const driver = new GuestDriver(dev, iommu, HEAP);
  driver.init();
  return { iommu, pci, dev, driver };
}

describe('RiscvIommu under a Linux-like guest driver', () => {
  test('map, DMA, unmap: the unmapped page faults at once (IOTINVAL dropped the cached translation)', () => {
    const { iommu, dev, driver } = machine({}, { pci: false }); // device_id 8 is a device the model adds
    driver.attach(8);
    driver.map(8, 0x1000n, BUF);
    const data = new Uint8Array([1, 2, 3, 4]);
    expect(dev.dmaWrite(8, undefined, 0x1004n, data)).toEqual({ bytes: 4, status: 'success' });
    expect([...iommu.ram.subarray(Number(BUF - RAM.base) + 4, Number(BUF - RAM.base) + 8)]).toEqual([1, 2, 3, 4]);
    const back = new Uint8Array(4);
    expect(dev.dmaRead(8, undefined, 0x1004n, back).status).toBe('success');
    expect([...back]).toEqual([1, 2, 3, 4]);
    expect(dev.translate(8, undefined, 0x1000n, Access.Read)).toMatchObject({ status: 'success', pa: BUF });
    driver.unmap(8, 0x1000n);
    expect(dev.translate(8, undefined, 0x1000n, Access.Read).status).toBe('unsupported-request');
    const faults = driver.drainFaults();
    expect(faults).toEqual([{ cause: 13, devid: 8, iotval: 0x1000n, iotval2: 0n }]);
  });

  test('a device without a context faults with cause 258; another device does not see the first one\'s mappings', () => {
    const { dev, driver } = machine();
    driver.attach(8);
    driver.map(8, 0x2000n, BUF);
    driver.attach(16);
    expect(dev.translate(16, undefined, 0x2000n, Access.Read).status).toBe('unsupported-request');
    expect(dev.dmaWrite(24, undefined, 0x2000n, new Uint8Array(8))).toEqual({ bytes: 0, status: 'unsupported-request' });
    expect(driver.drainFaults().map((f) => [f.cause, f.devid])).toEqual([[13, 16], [258, 24]]);
  });

  test('detach (V = 0 + IODIR) stops the device at once, also its DMA that bypasses the model', () => {
    const { iommu, pci, dev, driver } = machine();
    driver.attach(8);
    driver.map(8, 0x3000n, BUF);
    expect(dev.translate(8, undefined, 0x3000n, Access.Write).status).toBe('success');
    expect(iommu.translate(pci.rid, NO_PASID, 0x3000n, Access.Write).ok).toBe(true);
    driver.detach(8);
    expect(iommu.translate(pci.rid, NO_PASID, 0x3000n, Access.Write).ok).toBe(false);
    expect(dev.translate(8, undefined, 0x3000n, Access.Write).status).toBe('unsupported-request');
    expect(driver.drainFaults().map((f) => f.cause)).toEqual([258]);
  });

  test('wired interrupts follow ipsr and icvec: fiv asserts on a fault record and drops when fip is cleared', () => {
    const wires: [number, boolean][] = [];
    const { dev, driver } = machine({ onInterrupt: (v, on) => wires.push([v, on]) });
    wires.length = 0;
    dev.translate(99, undefined, 0n, Access.Read); // no context: cause 258
    expect(wires).toEqual([[1, true]]);
    driver.drainFaults(); // writes ipsr = 2 first
    expect(wires).toEqual([[1, true], [1, false]]);
  });

  test('the emulator\'s device is the device_id equal to its requester ID; its own DMA goes through the engine', () => {
    const { iommu, pci, dev, driver } = machine();
    driver.attach(8);
    driver.map(8, 0x5000n, BUF);
    // The IODIR that published the context loaded it: the device's own DMA needs no request through the model first.
    expect(iommu.translate(pci.rid, NO_PASID, 0x5008n, Access.Read)).toMatchObject({ ok: true, phys: BUF + 8n });
    expect(dev.translate(8, undefined, 0x5000n, Access.Read).status).toBe('success');
    driver.unmap(8, 0x5000n);
    expect(iommu.translate(pci.rid, NO_PASID, 0x5008n, Access.Read).ok).toBe(false);
  });
});

describe('page-request queue (ATS/PRI)', () => {
  test('a PRI device\'s fault becomes a PQ record; ATS.PRGR answers the device, which then translates', () => {
    const { pci, dev, driver } = machine({ capabilities: DEFAULT_CAPABILITIES | (1n << 25n) }, { pri: true });
    const pq = driver.allocPage();
    dev.mmioWrite(56, 8, ((pq >> 12n) << 10n) | 7n); // pqb: 256 entries
    dev.mmioWrite(80, 4, 0x103n);
    expect(dev.mmioRead(80, 4)).toBe(0x10003n);
    driver.attach(8);
    const dc = driver.dcAddress(8);
    driver.write64(dc, driver.read64(dc) | 6n); // EN_ATS | EN_PRI
    driver.send(0x3n | (1n << 33n) | (8n << 40n), 0n);
    driver.sync();

    expect(dev.translate(8, undefined, 0x7123n, Access.Write).status).toBe('unsupported-request');
    expect(dev.mmioRead(68, 4)).toBe(1n); // pqt
    expect(dev.mmioRead(84, 4) & 8n).toBe(8n); // ipsr.pip
    const header = driver.read64(pq);
    const payload = driver.read64(pq + 8n);
    expect(header).toBe(8n << 40n); // DID 8, no PASID
    expect(payload & 7n).toBe(2n | 4n); // W, L
    expect(payload & ~0xfffn).toBe(0x7000n);
    expect(driver.drainFaults()).toEqual([]); // a page request, not a fault record

    driver.map(8, 0x7000n, BUF);
    const prg = (payload >> 3n) & 0x1ffn;
    driver.send(0x4n | (1n << 7n) | (8n << 40n), prg << 32n); // ATS.PRGR, response code 0: Success
    driver.sync();
    expect(pci.pageResponses()).toMatchObject([{ code: 'success', grpid: Number(prg), addr: 0x7000n }]);
    expect(dev.translate(8, undefined, 0x7123n, Access.Write)).toMatchObject({ status: 'success', pa: BUF + 0x123n });
  });

  test('without ATS the page-request registers are absent and ATS commands are illegal', () => {
    const { dev, driver } = machine();
    dev.mmioWrite(56, 8, 0x1007n);
    expect(dev.mmioRead(56, 8)).toBe(0n);
    dev.mmioWrite(80, 4, 0x3n);
    expect(dev.mmioRead(80, 4)).toBe(0n);
    driver.send(0x4n | (1n << 7n), 0n);
    expect(dev.mmioRead(72, 4) & 0x400n).toBe(0x400n); // cmd_ill
  });
});

describe('RiscvIommu arguments', () => {
  test('wrong types and ranges are EINVAL and change nothing; odd but well-typed accesses are the guest\'s business', () => {
    const { dev } = machine();
    const before = [0, 16, 24, 32, 36, 72, 84].map((o) => dev.mmioRead(o, o === 16 || o === 24 ? 8 : 4));
    const einval = (f: () => unknown) => expect(f).toThrow(expect.objectContaining({ errno: 'EINVAL' }));
    einval(() => dev.mmioWrite(4096, 4, 0n));
    einval(() => dev.mmioWrite(36, 0, 0n));
    einval(() => dev.mmioWrite(36, 4, -1n));
    einval(() => dev.mmioWrite(36, 4, 1n << 64n));
    einval(() => dev.mmioRead(1.5, 4));
    einval(() => dev.translate(1 << 24, undefined, 0n, Access.Read));
    einval(() => dev.translate(8, 1 << 20, 0n, Access.Read));
    einval(() => dev.translate(8, undefined, -1n, Access.Read));
    einval(() => dev.translate(8, undefined, 0n, 16));
    einval(() => dev.dmaRead(8, undefined, 0n, [] as unknown as Uint8Array));
    expect([0, 16, 24, 32, 36, 72, 84].map((o) => dev.mmioRead(o, o === 16 || o === 24 ? 8 : 4))).toEqual(before);
    // Misaligned, partial and too-wide accesses read 0 and are dropped, as the reference model does.
    expect(dev.mmioRead(72, 8)).toBe(0n);
    expect(dev.mmioRead(74, 2)).toBe(0n);
    dev.mmioWrite(36, 2, 5n);
    expect(dev.mmioRead(36, 4)).toBe(before[4]);
    expect(() => new RiscvIommu(Iommu.createSync({ ram: RAM, shared: false }), { capabilities: 1n << 21n })).toThrow(expect.objectContaining({ errno: 'EINVAL' }));
    expect(() => new RiscvIommu(Iommu.createSync({ ram: RAM, shared: false }), { devices: [] } as never)).toThrow(expect.objectContaining({ errno: 'EOPNOTSUPP' }));
    expect(() => new RiscvIommu({} as never)).toThrow(expect.objectContaining({ errno: 'EINVAL' }));
  });
});

describe('IOTINVAL by leaf', () => {
  test('IOTINVAL.VMA with AV=1 at one page of a superpage drops the translation cached from another page', () => {
    const { dev, driver } = machine({}, { pci: false });
    driver.attach(8);
    driver.map(8, 0x1000n, BUF); // builds the Sv39 tables; then the level-1 entry becomes a 2 MiB leaf
    const root = driver.contexts.get(8).root as bigint;
    const l1 = (((driver.read64(root) >> 10n) & ((1n << 44n) - 1n)) << 12n);
    driver.write64(l1, ((0x8020_0000n >> 12n) << 10n) | 0xd7n);
    driver.send(0x1n | (1n << 32n) | (driver.contexts.get(8).pscid << 12n), 0n); // flush the PSCID, as Linux does for a superpage map
    driver.sync();
    expect(dev.translate(8, undefined, 0x5000n, Access.Read)).toMatchObject({ status: 'success', pa: 0x8020_5000n, size: 0x20_0000n });
    driver.write64(l1, ((0x8060_0000n >> 12n) << 10n) | 0xd7n);
    driver.invalidatePage(driver.contexts.get(8).pscid, 0x1000n); // another page of the same leaf
    driver.sync();
    expect(dev.translate(8, undefined, 0x5000n, Access.Read)).toMatchObject({ status: 'success', pa: 0x8060_5000n });
  });
});

describe('guest RAM in several windows', () => {
  test('directory, tables and fault queue in a high window, DMA into a low one', () => {
    const LOW = 0x8000_0000n, HIGH = 0x1_0000_0000n;
    const iommu = Iommu.createSync({ ram: [{ base: LOW, bytes: 1 << 20 }, { base: HIGH, bytes: 1 << 20 }], shared: false });
    const dev = new RiscvIommu(iommu);
    const high = iommu.ramWindows().find((w) => w.base === HIGH)!;
    const put = (gpa: bigint, v: bigint) => new DataView(high.bytes.buffer, high.bytes.byteOffset, high.bytes.byteLength).setBigUint64(Number(gpa - HIGH), v, true);
    // 1-level DDT at HIGH, device 5: Sv39 at HIGH + 0x1000 mapping IOVA 0x4000 to LOW + 0x8000.
    put(HIGH + 5n * 32n + 24n, (8n << 60n) | ((HIGH + 0x1000n) >> 12n));
    put(HIGH + 5n * 32n, 1n);
    put(HIGH + 0x1000n, (((HIGH + 0x2000n) >> 12n) << 10n) | 1n);
    put(HIGH + 0x2000n, (((HIGH + 0x3000n) >> 12n) << 10n) | 1n);
    put(HIGH + 0x3000n + 4n * 8n, (((LOW + 0x8000n) >> 12n) << 10n) | 0xd7n);
    dev.mmioWrite(40, 8, ((HIGH + 0x10000n) >> 12n) << 10n); // fqb in the high window
    dev.mmioWrite(76, 4, 0x3n);
    dev.mmioWrite(16, 8, 2n | ((HIGH >> 12n) << 10n));
    expect(dev.dmaWrite(5, undefined, 0x4010n, new Uint8Array([7, 8, 9]))).toEqual({ bytes: 3, status: 'success' });
    const low = iommu.ramWindows().find((w) => w.base === LOW)!;
    expect([...low.bytes.subarray(0x8010, 0x8013)]).toEqual([7, 8, 9]);
    expect(dev.translate(6, undefined, 0x4010n, Access.Read).status).toBe('unsupported-request');
    expect(dev.mmioRead(52, 4)).toBe(1n); // the record went to the high window
    expect(new DataView(high.bytes.buffer, high.bytes.byteOffset).getBigUint64(0x10000, true) & 0xfffn).toBe(258n);
  });
});
