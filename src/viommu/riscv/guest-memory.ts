/**
 * The IOMMU's own accesses to guest memory (directory tables, queues, fence stores, message
 * writes): little-endian words inside one of the Iommu's guest RAM windows and below 2^PAS.
 * Anything else is an access fault (`undefined` / `false` / -1), which the caller turns into the
 * cause the specification names for that structure; nothing here throws and nothing writes outside
 * guest RAM.
 * @module
 */
import type { Iommu } from '../../api';

interface Window {
  base: bigint;
  end: bigint;
  /** `base` and `end` as numbers when `end` ≤ 2^53 (exact), else NaN (`offsetOfNumber` skips it). */
  baseNumber: number;
  endNumber: number;
  u8: Uint8Array;
  view: DataView;
}

export class GuestMemory {
  private windows: Window[] = [];
  /** The window the last `offsetOf` found (the offset it returned is into this window). */
  private current: Window | undefined;
  private readonly pasEnd: bigint;
  /** 2^PAS as a number (exact: a power of two). */
  private readonly pasEndNumber: number;

  /** @param pasBits physical address width (`capabilities.PAS`). */
  constructor(private readonly iommu: Iommu, pasBits: number) {
    this.pasEnd = 1n << BigInt(pasBits);
    this.pasEndNumber = 2 ** pasBits;
    this.refresh();
  }

  /**
   * The offset of `[addr, addr + bytes)` in the window holding all of it (which `u32At`, `bytes`
   * and the word accessors then use), or -1 when no window does or it reaches 2^PAS.
   */
  offsetOf(addr: bigint, bytes: number): number {
    const end = addr + BigInt(bytes);
    if (end > this.pasEnd) return -1;
    if (this.detached()) this.refresh();
    for (const w of this.windows) {
      if (addr >= w.base && end <= w.end) {
        this.current = w;
        return Number(addr - w.base);
      }
    }
    return -1;
  }

  /**
   * `offsetOf` for an address given as a number (a safe integer), without BigInts when a window
   * below 2^53 holds all of it; anything else takes `offsetOf`'s exact path, so the result is the same.
   */
  offsetOfNumber(addr: number, bytes: number): number {
    if (this.detached()) this.refresh();
    const end = addr + bytes;
    for (const w of this.windows) {
      if (addr >= w.baseNumber && end <= w.endNumber && end <= this.pasEndNumber) {
        this.current = w;
        return addr - w.baseNumber;
      }
    }
    return this.offsetOf(BigInt(addr), bytes);
  }

  /** The bytes of the window the last successful `offsetOf` found. */
  bytes(): Uint8Array {
    return this.current!.u8;
  }

  /** The 32-bit word at offset `at` (from `offsetOf`): the command queue's allocation-free reads. */
  u32At(at: number): number {
    return this.current!.view.getUint32(at, true);
  }

  /** The word at `addr` (8-byte aligned by every caller), or undefined on an access fault. */
  read64(addr: bigint): bigint | undefined {
    const at = this.offsetOf(addr, 8);
    return at < 0 ? undefined : this.current!.view.getBigUint64(at, true);
  }

  /** Stores a 32-bit word (IOFENCE.C data, messages); false on an access fault (nothing written). */
  write32(addr: bigint, value: number): boolean {
    const at = this.offsetOf(addr, 4);
    if (at < 0) return false;
    this.current!.view.setUint32(at, value >>> 0, true);
    return true;
  }

  /** Stores consecutive words only if all of them are inside (a record is written whole or not at all). */
  writeWords(addr: bigint, words: readonly bigint[]): boolean {
    const at = this.offsetOf(addr, words.length * 8);
    if (at < 0) return false;
    for (let i = 0; i < words.length; i++) this.current!.view.setBigUint64(at + i * 8, words[i]!, true);
    return true;
  }

  /**
   * Views of every window. A view of an unshared engine memory is detached (length 0) when the
   * memory grows: then they are made again. Shared memory and emulator-owned buffers never detach.
   */
  private refresh(): void {
    this.windows = this.iommu.ramWindows().map(({ base, bytes }) => {
      const end = base + BigInt(bytes.byteLength);
      const exact = end <= 1n << 53n;
      return {
        base, end, baseNumber: exact ? Number(base) : NaN, endNumber: exact ? Number(end) : NaN,
        u8: bytes, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      };
    });
    this.current = undefined;
  }

  /** True when a window's view was detached by memory growth (its bytes are gone, not empty). */
  private detached(): boolean {
    for (const w of this.windows) if (w.u8.byteLength === 0 && w.end > w.base) return true;
    return false;
  }
}
