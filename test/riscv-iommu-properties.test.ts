// Bad input never hurts RiscvIommu (a property test with a fixed seed; a longer campaign with
// RISCV_IOMMU_FUZZ_OPS=N, `npm run fuzz:riscv`):
// - random MMIO at every offset and size, random guest memory under the DDT, PDT and queues,
//   random commands and requests never throw, never hang (bounded work per `cqt` write), and never
//   write outside guest RAM (the engine's guard pages around it stay intact);
// - under random traffic that leaves the directory and page tables alone, one device never
//   translates through another device's context (its results stay in its own physical range).
import { describe, expect, test } from 'vitest';
import { Access, DEFAULT_CAPABILITIES, Iommu, MAX_COMMANDS_PER_RUN, NO_PASID, RiscvIommu } from '../src/index';
import { guardViolations } from './testing';
import { GuestDriver } from '../examples/riscv-iommu/guest-driver.mjs';

const OPS = Number(process.env.RISCV_IOMMU_FUZZ_OPS ?? 4000);
const SEED = Number(process.env.RISCV_IOMMU_FUZZ_SEED ?? 0x5eed1234);

/** xorshift32: a fixed stream per seed. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const u32 = (): number => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
  const below = (n: number): number => u32() % n;
  const u64 = (): bigint => (BigInt(u32()) << 32n) | BigInt(u32());
  const pick = <T>(xs: readonly T[]): T => xs[below(xs.length)]!;
  return { u32, below, u64, pick };
}

const REGS = [0, 8, 16, 24, 32, 36, 40, 48, 52, 56, 64, 68, 72, 76, 80, 84, 88, 760, 768, 1024];
const RAM_BASE = 0x10_0000n;
const RAM_BYTES = 1 << 20;

describe('RiscvIommu property: bad input never hurts', () => {
  test(`random MMIO, memory, commands and requests (${OPS} ops, seed 0x${SEED.toString(16)})`, () => {
    const r = rng(SEED);
    const iommu = Iommu.createSync({ ram: { base: RAM_BASE, bytes: RAM_BYTES }, shared: false, maxDomains: 64 });
    const caps = r.pick([DEFAULT_CAPABILITIES, DEFAULT_CAPABILITIES | (1n << 22n), DEFAULT_CAPABILITIES | (1n << 25n)]);
    const dev = new RiscvIommu(iommu, { capabilities: caps, fctl: r.pick([0, 2]), onInterrupt: () => {} });
    const ramPage = (): bigint => RAM_BASE + BigInt(r.below(RAM_BYTES >>> 12)) * 4096n;
    // Plausible values reach deep into the model: pointers into RAM (and just outside it), modes.
    const plausible = (): bigint => {
      switch (r.below(6)) {
        case 0: return r.u64();
        case 1: return ((ramPage() >> 12n) << 10n) | BigInt(r.below(16));
        case 2: return BigInt(r.below(64));
        case 3: return (BigInt(r.pick([0, 1, 2, 3, 8, 9, 10])) << 60n) | (ramPage() >> 12n) | (BigInt(r.below(4)) << 44n);
        case 4: return ((ramPage() >> 12n) << 10n) | BigInt(r.pick([0x1, 0x7, 0xf, 0xcf, 0xd7, 0x21, 0x2a1, 0x101]));
        default: return ((RAM_BASE + BigInt(RAM_BYTES) + BigInt(r.below(8)) * 4096n) >> 12n) << 10n | 1n; // just past RAM
      }
    };
    const view = () => new DataView(iommu.ram.buffer, iommu.ram.byteOffset, iommu.ram.byteLength);
    const statuses: Record<string, number> = {};
    const DEVIDS = [0, 1, 8, 0x7f, 0x80, 0x1234, 0x800000, 0xffffff];
    const lowPage = (): bigint => RAM_BASE + BigInt(r.below(64)) * 4096n;
    const put = (addr: bigint, v: bigint) => view().setBigUint64(Number(addr - RAM_BASE), v & ((1n << 64n) - 1n), true);
    /** A well-formed start that random traffic then breaks: queues on, a DDT, a context on the path of a device. */
    const program = () => {
      dev.mmioWrite(16, 8, 0n);
      const root = lowPage();
      const mode = 2 + r.below(3);
      dev.mmioWrite(16, 8, BigInt(mode) | ((root >> 12n) << 10n));
      dev.mmioWrite(24, 8, ((lowPage() >> 12n) << 10n) | BigInt(r.below(8)));
      dev.mmioWrite(72, 4, 0x103n);
      dev.mmioWrite(40, 8, ((lowPage() >> 12n) << 10n) | BigInt(r.below(7)));
      dev.mmioWrite(76, 4, 0x103n);
      const devid = r.pick(DEVIDS);
      const ext = (caps & (1n << 22n)) !== 0n;
      const leafBits = ext ? 6 : 7;
      let table = root;
      for (let level = mode - 2; level > 0; level--) {
        const shift = leafBits + 9 * (level - 1);
        const next = lowPage();
        put(table + BigInt((devid >>> shift) & 0x1ff) * 8n, ((next >> 12n) << 10n) | 1n);
        table = next;
      }
      const dc = table + BigInt((devid & ((1 << leafBits) - 1)) * (ext ? 64 : 32));
      const g16k = (lowPage() & ~0x3fffn) >> 12n;
      put(dc + 8n, r.below(2) ? 0n : (BigInt(r.pick([8, 9, 10])) << 60n) | (BigInt(r.below(4)) << 44n) | g16k);
      put(dc + 16n, BigInt(r.below(8)) << 12n);
      put(dc + 24n, (BigInt(r.pick([0, 8, 9, 10, 1, 2, 3])) << 60n) | (lowPage() >> 12n));
      put(dc, BigInt(r.pick([0x1, 0x21, 0x121, 0x181, 0x1a1, 0x2a1, 0x11, 0x7])));
    };
    for (let op = 0; op < OPS; op++) {
      const kind = r.below(10);
      if (r.below(40) === 0) program();
      else if (kind < 4) {
        const offset = r.below(3) === 0 ? r.below(4096) : r.pick(REGS) + r.pick([0, 0, 0, 4, 2, 1]);
        const size = r.pick([4, 8, 4, 8, 1, 2, 3, 5, 7]);
        if (r.below(3) === 0) dev.mmioRead(Math.min(offset, 4095), size);
        else dev.mmioWrite(Math.min(offset, 4095), size, r.below(2) ? plausible() & ((1n << 64n) - 1n) : BigInt(r.u32()));
      } else if (kind < 7) {
        // Guest memory: mostly the low pages where tables and queues land, as words that look like entries.
        const at = r.below(2) ? BigInt(r.below(64)) * 4096n + BigInt(r.below(512)) * 8n : BigInt(r.below(RAM_BYTES >>> 3)) * 8n;
        view().setBigUint64(Number(at), plausible() & ((1n << 64n) - 1n), true);
      } else if (kind < 9) {
        const devid = r.below(8) ? r.pick(DEVIDS) : r.below(1 << 24);
        const pid = r.below(3) === 0 ? undefined : r.pick([0, 1, 0xff, 0x100, 0x1ffff, 0xfffff, r.below(1 << 20)]);
        const t = dev.translate(devid, pid, r.below(4) === 0 ? r.u64() : BigInt(r.below(1 << 24)), r.below(16));
        expect(['success', 'unsupported-request', 'completer-abort']).toContain(t.status);
        const k = `${t.status}${t.size !== undefined ? ` ${t.size}` : ''}`;
        statuses[k] = (statuses[k] ?? 0) + 1;
      } else {
        const buf = new Uint8Array(r.below(64) + 1);
        const res = r.below(2) ? dev.dmaRead(r.below(256), undefined, BigInt(r.below(1 << 22)), buf) : dev.dmaWrite(r.below(256), undefined, BigInt(r.below(1 << 22)), buf);
        expect(res.bytes).toBeLessThanOrEqual(buf.length);
      }
      if (op % 64 === 0) expect(guardViolations(iommu)).toEqual([]);
    }
    expect(guardViolations(iommu)).toEqual([]);
    console.log('riscv-iommu property: request outcomes', statuses, 'fqt', dev.mmioRead(52, 4), 'cqh', dev.mmioRead(32, 4));
  }, 120_000);

  test('a command queue of 2^32 entries over all of RAM: one cqt write does bounded work', () => {
    const iommu = Iommu.createSync({ ram: { base: 0n, bytes: 1 << 24 }, shared: false });
    const dev = new RiscvIommu(iommu, { fctl: 2 });
    const view = new DataView(iommu.ram.buffer, iommu.ram.byteOffset, iommu.ram.byteLength);
    // Every entry a legal IOTINVAL.VMA: nothing stops the queue but the tail.
    for (let a = 0; a < 1 << 24; a += 16) view.setBigUint64(a, 1n, true);
    dev.mmioWrite(24, 8, 0x1fn); // cqb: PPN 0, 2^32 entries
    dev.mmioWrite(72, 4, 1n);
    dev.mmioWrite(36, 4, 0xffffffffn);
    expect(dev.mmioRead(32, 4)).toBe(BigInt(MAX_COMMANDS_PER_RUN)); // stopped at the bound, not the tail
    dev.mmioWrite(36, 4, 0xffffffffn); // the next trigger continues
    expect(dev.mmioRead(32, 4)).toBe(BigInt(2 * MAX_COMMANDS_PER_RUN));
  });

  test(`isolation: device contexts never leak into each other under random traffic (${OPS} ops)`, () => {
    const r = rng(SEED ^ 0xa5a5a5a5);
    const iommu = Iommu.createSync({ ram: { base: 0x8000_0000n, bytes: 8 << 20 }, shared: false });
    const pciA = iommu.addDevice({ bdf: '00:01.0' }); // requester ID 8
    const pciB = iommu.addDevice({ bdf: '00:02.0' }); // requester ID 16
    const dev = new RiscvIommu(iommu, { fctl: 2 });
    // Tables and queues in [0x8060_0000, 0x8080_0000); A's memory 0x8000_0000.., B's 0x8020_0000..;
    // random traffic writes anywhere below 0x8060_0000 and sends commands, never touching tables.
    const driver = new GuestDriver(dev, iommu, { start: 0x8060_0000n, end: 0x8080_0000n });
    driver.init();
    const ranges = { 8: [0x8000_0000n, 0x8020_0000n], 16: [0x8020_0000n, 0x8040_0000n] } as Record<number, [bigint, bigint]>;
    const pages = 64;
    for (const devid of [8, 16]) {
      driver.attach(devid);
      for (let p = 0; p < pages; p++) driver.map(devid, BigInt(p) * 4096n, ranges[devid]![0] + BigInt(p) * 4096n);
    }
    const view = () => new DataView(iommu.ram.buffer, iommu.ram.byteOffset, iommu.ram.byteLength);
    const within = (devid: number, pa: bigint) => pa >= ranges[devid]![0] && pa < ranges[devid]![1];
    for (let op = 0; op < OPS; op++) {
      const kind = r.below(4);
      if (kind === 0) {
        view().setBigUint64(r.below((6 << 20) >>> 3) * 8, r.u64(), true);
      } else if (kind === 1) {
        // Any command the guest may send: invalidations of anything, fences, junk.
        const d0 = r.pick([0x1n | (BigInt(r.below(4)) << 32n) | (1n << 10n), 0x3n | (1n << 33n) | (BigInt(r.pick([8, 16, 24])) << 40n), 0x3n, 0x3002n, 0x81n, r.u64()]);
        driver.send(d0, r.below(2) ? 0n : (BigInt(r.below(pages)) << 10n));
        if (r.below(2)) dev.mmioWrite(72, 4, 0x703n); // clear cmd_ill / cqmf: resume
      } else if (kind === 2) {
        dev.mmioWrite(r.pick([48, 84, 76, 760, 8, 0]), 4, BigInt(r.u32()));
      } else {
        const devid = r.pick([8, 16]);
        const iova = BigInt(r.below(pages)) * 4096n + BigInt(r.below(4096));
        const t = dev.translate(devid, undefined, iova, r.pick([Access.Read, Access.Write]));
        if (t.status === 'success') expect(within(devid, t.pa!)).toBe(true);
        const e = iommu.translate(devid === 8 ? pciA.rid : pciB.rid, NO_PASID, iova, Access.Read);
        if (e.ok) expect(within(devid, e.phys)).toBe(true);
        expect(dev.translate(24, undefined, iova, Access.Read).status).toBe('unsupported-request');
      }
    }
  }, 120_000);
});
