// Where RiscvIommu's command queue fetches its commands (src/viommu/riscv/command-queue.ts): entry
// i at `base | i * 16` (the reference model's OR), a memory fault past guest RAM, and the same
// behaviour whether the address is computed as a number (a queue aligned to its size below 2^53)
// or as a bigint (a misaligned queue, a queue at or above 2^53, a window across 2^53).
import { describe, expect, test } from 'vitest';
import { DEFAULT_CAPABILITIES, Iommu, RiscvIommu } from '../src/index';

const REG = { cqb: 24, cqh: 32, cqt: 36, cqcsr: 72 };
const CSR_EN = 1, CSR_MF = 1 << 8, CSR_CMD_ILL = 1 << 10, CSR_ON = 1 << 16;
const LOW = 0x8000_0000n;
/** The 32-bit words the fences store, one per command. */
const SCRATCH = LOW + 0x20_0000n;

/** `capabilities` with PAS = `pas`. */
const withPas = (pas: number) => (DEFAULT_CAPABILITIES & ~(0x3fn << 32n)) | (BigInt(pas) << 32n);

function machine(ram: { base: bigint; bytes: number }[], pas = 46) {
  const iommu = Iommu.createSync({ ram, shared: false });
  const dev = new RiscvIommu(iommu, { capabilities: withPas(pas) });
  const windows = iommu.ramWindows();
  const at = (addr: bigint) => {
    const w = windows.find((x) => addr >= x.base && addr + 8n <= x.base + BigInt(x.bytes.byteLength))!;
    return new DataView(w.bytes.buffer, w.bytes.byteOffset + Number(addr - w.base), 8);
  };
  /** Turns the queue (back) on: 2^(log2szm1 + 1) entries at `base`. */
  const start = (base: bigint, log2szm1: number) => {
    dev.mmioWrite(REG.cqcsr, 4, 0); // cqb is taken only while the queue is off
    dev.mmioWrite(REG.cqb, 8, ((base >> 12n) << 10n) | BigInt(log2szm1));
    dev.mmioWrite(REG.cqcsr, 4, CSR_EN);
    expect(Number(dev.mmioRead(REG.cqcsr, 4)) & CSR_ON).toBe(CSR_ON);
  };
  /**
   * Writes command `i` at `addr` — IOFENCE.C (AV = 1) storing i + 1 at SCRATCH + 4 i — and
   * submits it with a `cqt` write of `tail`.
   */
  const fence = (addr: bigint, i: number, tail: number) => {
    const v = at(addr);
    v.setBigUint64(0, 0x2n | (1n << 10n) | (BigInt(i + 1) << 32n), true);
    at(addr + 8n).setBigUint64(0, (SCRATCH + BigInt(i) * 4n) >> 2n, true);
    dev.mmioWrite(REG.cqt, 4, tail);
  };
  const stored = (i: number) => at(SCRATCH + BigInt(i) * 4n).getUint32(0, true);
  const csr = () => Number(dev.mmioRead(REG.cqcsr, 4));
  const head = () => Number(dev.mmioRead(REG.cqh, 4));
  return { start, fence, stored, csr, head };
}

describe('RiscvIommu command queue addresses', () => {
  test('a queue aligned to its size: every entry at base + i * 16, then a memory fault past guest RAM', () => {
    // 512 entries (8 KiB) at the last 4 KiB page of RAM: entries 0..255 inside, 256 outside.
    const m = machine([{ base: LOW, bytes: (4 << 20) + 4096 }]);
    const base = LOW + (4n << 20n);
    m.start(base, 8);
    for (let i = 0; i < 256; i++) m.fence(base + BigInt(i) * 16n, i, i + 1);
    for (let i = 0; i < 256; i++) expect(m.stored(i)).toBe(i + 1);
    expect(m.csr() & (CSR_MF | CSR_CMD_ILL)).toBe(0);
    m.fence(base, 300, 257); // entry 256 is not in RAM: cqmf, cqh stays on it
    expect(m.csr() & CSR_MF).toBe(CSR_MF);
    expect(m.head()).toBe(256);
    expect(m.stored(300)).toBe(0);
  });

  test('a queue not aligned to its size: entry i at base | i * 16 (entries 256.. over 0..)', () => {
    // 512 entries (8 KiB) at an odd page: base | 0x1000 is base, so entry 256 is entry 0's address.
    const m = machine([{ base: LOW, bytes: 4 << 20 }]);
    const base = LOW + 0x1_1000n;
    m.start(base, 8);
    for (let i = 0; i < 260; i++) m.fence(base | (BigInt(i) * 16n), i, i + 1);
    expect(m.csr() & (CSR_MF | CSR_CMD_ILL)).toBe(0);
    for (let i = 0; i < 260; i++) expect(m.stored(i)).toBe(i + 1);
    expect(m.head()).toBe(260);
  });

  test('queues in a window across 2^53 and above it run as below it', () => {
    const top = 1n << 53n;
    const m = machine([{ base: LOW, bytes: 4 << 20 }, { base: top - 0x2000n, bytes: 0x4000 }], 56);
    // Below 2^53 in a window that is not (its end is no exact number); then at 2^53.
    for (const [n, base] of [[0, top - 0x1000n], [1, top]] as const) {
      m.start(base, 0); // 2 entries
      for (let i = 0; i < 3; i++) m.fence(base + BigInt((i % 2) * 16), n * 8 + i, (i + 1) % 2);
      for (let i = 0; i < 3; i++) expect(m.stored(n * 8 + i)).toBe(n * 8 + i + 1);
      expect(m.csr() & (CSR_MF | CSR_CMD_ILL)).toBe(0);
    }
  });
});
