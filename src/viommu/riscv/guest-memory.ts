/**
 * The IOMMU's own accesses to guest memory (directory tables, queues, fence stores): 64-bit
 * little-endian words inside the Iommu's guest RAM and below 2^PAS. Anything else is an access
 * fault (`undefined` / `false`), which the caller turns into the cause the specification names for
 * that structure; nothing here throws and nothing writes outside guest RAM.
 * @module
 */
import type { Iommu } from '../../api';

export class GuestMemory {
  private view: DataView | undefined;
  private buffer: ArrayBufferLike | undefined;
  private readonly base: bigint;
  private readonly limit: bigint;

  /** @param pasBits physical address width (`capabilities.PAS`). */
  constructor(private readonly iommu: Iommu, pasBits: number) {
    this.base = iommu.ramBase;
    const end = iommu.ramBase + BigInt(iommu.ram.byteLength);
    const pasEnd = 1n << BigInt(pasBits);
    this.limit = end < pasEnd ? end : pasEnd;
  }

  /** The RAM offset of `[addr, addr + bytes)`, or -1 when any byte is outside. */
  offsetOf(addr: bigint, bytes: number): number {
    if (addr < this.base || addr + BigInt(bytes) > this.limit) return -1;
    return Number(addr - this.base);
  }

  /** The word at `addr` (8-byte aligned by every caller), or undefined on an access fault. */
  read64(addr: bigint): bigint | undefined {
    const at = this.offsetOf(addr, 8);
    return at < 0 ? undefined : this.dataView().getBigUint64(at, true);
  }

  /** Stores a word; false on an access fault (nothing written). */
  write64(addr: bigint, value: bigint): boolean {
    const at = this.offsetOf(addr, 8);
    if (at < 0) return false;
    this.dataView().setBigUint64(at, value, true);
    return true;
  }

  /** Stores a 32-bit word (IOFENCE.C data); false on an access fault. */
  write32(addr: bigint, value: number): boolean {
    const at = this.offsetOf(addr, 4);
    if (at < 0) return false;
    this.dataView().setUint32(at, value >>> 0, true);
    return true;
  }

  /** Stores consecutive words only if all of them are inside (a record is written whole or not at all). */
  writeWords(addr: bigint, words: readonly bigint[]): boolean {
    const at = this.offsetOf(addr, words.length * 8);
    if (at < 0) return false;
    const v = this.dataView();
    for (let i = 0; i < words.length; i++) v.setBigUint64(at + i * 8, words[i]!, true);
    return true;
  }

  /** The 32-bit word at RAM offset `at` (from `offsetOf`): the command queue's allocation-free reads. */
  u32At(at: number): number {
    return this.dataView().getUint32(at, true);
  }

  /**
   * A view over RAM. Growing a non-shared engine memory detaches the old buffer (byteLength 0):
   * then a new view is made. A shared buffer is never detached and RAM lies below the growing page
   * pool, so the first view stays valid (and `memory.buffer`, which may allocate, is not read here).
   */
  private dataView(): DataView {
    if (!this.view || this.buffer!.byteLength === 0) {
      const ram = this.iommu.ram;
      this.buffer = ram.buffer;
      this.view = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
    }
    return this.view;
  }
}
