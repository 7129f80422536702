/**
 * Guest RAM: the RAM windows one engine reads and writes, and the one place on the TS side that
 * turns a guest-physical address into bytes. Each window stands for guest-physical
 * [base, base + bytes) and lives either in the engine's WebAssembly.Memory (inside the engine's
 * own layout, or at any offset of a memory an emulator owns) or in an external ArrayBuffer /
 * SharedArrayBuffer (a JS emulator's typed array).
 *
 * Three readers, one description: the Wasm walkers read the window table this writes into the
 * memory (assembly/ram.ts) and reach external windows through the `ramLoad`/`ramCas` imports made
 * here; software DMA (dma.ts) and access objects (access.ts) copy through `read`/`write`.
 *
 * Views: a view of an unshared memory is detached when the memory grows; `view` re-creates it
 * then (a detached view has byteLength 0), so callers never hold a stale one across calls.
 * Addresses here are numbers: a window that ends above 2^53 (page tables of 56-bit RISC-V machines)
 * holds tables the walkers read, but is not reachable by software DMA.
 * @module
 */
import * as abi from '../../assembly/abi';

/** One window as the engine keeps it; structured-cloneable (translator handles carry it to workers). */
export interface RamWindowSpec {
  /** Guest-physical address of the first byte. */
  readonly base: bigint;
  /** Size of the window in bytes. */
  readonly bytes: number;
  /** Byte offset of the window in the memory, or in `buffer` when that is set. */
  readonly offset: number;
  /** The buffer holding the window when it is outside the memory. */
  readonly buffer?: ArrayBuffer | SharedArrayBuffer;
}

/** The imports the Wasm core needs for external windows (assembly/ram.ts). */
export interface RamImports {
  ramLoad(window: number, offset: number): bigint;
  ramCas(window: number, offset: number, expected: bigint, value: bigint): bigint;
}

const NO_WORDS = new BigInt64Array(0);

export class GuestRam {
  /** Sorted by base. */
  readonly windows: readonly RamWindowSpec[];
  private readonly views: Uint8Array[];
  /** Per window: u64 words of an external window (for the imports), empty for memory windows. */
  private readonly words: BigInt64Array[];
  /** Per window: first and end guest-physical address as numbers (NaN when the end is above 2^53). */
  private readonly starts: Float64Array;
  private readonly ends: Float64Array;
  /**
   * For `copyPage`: the first window's bytes up to the next 4 GiB boundary (all of them, for a
   * window inside one 4 GiB-aligned region), and the int32 address words where they start. Inside
   * one such region an address's offset from the start is the difference of the low words
   * (mod 2^32) when the high words are equal, so finding a page there takes integer operations only.
   * An empty view when there is no window, or the first ends above 2^53 (not reachable by number
   * addresses, as `find` says), so every page misses it; a detached view (the memory grew) has
   * length 0 and misses too, until `view(0)` re-creates it.
   */
  private head: Uint8Array = new Uint8Array(0);
  private readonly headBytes: number = 0;
  private readonly headLo: number = 0;
  private readonly headHi: number = 0;
  /** The imports of the core instance bound to this RAM. */
  readonly imports: RamImports;

  constructor(windows: readonly RamWindowSpec[], private readonly memory: WebAssembly.Memory) {
    this.windows = [...windows].sort((a, b) => (a.base < b.base ? -1 : 1));
    this.views = this.windows.map((w) => this.makeView(w));
    this.words = this.windows.map((w) => (w.buffer ? new BigInt64Array(w.buffer, w.offset, w.bytes / 8) : NO_WORDS));
    this.starts = Float64Array.from(this.windows, (w) => Number(w.base));
    this.ends = Float64Array.from(this.windows, (w) => (w.base + BigInt(w.bytes) <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(w.base) + w.bytes : NaN));
    const first = this.windows[0];
    if (first && this.ends[0]! >= 0) { // NaN compares false
      this.headLo = Number(first.base & 0xffffffffn) | 0;
      this.headHi = Number(first.base >> 32n) | 0;
      this.headBytes = Math.min(first.bytes, 2 ** 32 - (this.headLo >>> 0));
      this.head = this.views[0]!.subarray(0, this.headBytes);
    }
    const words = this.words;
    // Atomics on a BigInt64Array: whole-entry reads and A/D compare-and-swap that race correctly
    // with vCPUs and worker translators when the buffer is shared (and work alike when it is not).
    this.imports = {
      ramLoad: (window, offset) => Atomics.load(words[window]!, offset >>> 3),
      ramCas: (window, offset, expected, value) => Atomics.compareExchange(words[window]!, offset >>> 3, expected, value),
    };
  }

  /** True when the engine has no guest RAM. */
  get empty(): boolean {
    return this.windows.length === 0;
  }

  /** The bytes of window `i`, zero-copy (re-created when memory growth detached the last one). */
  view(i: number): Uint8Array {
    const v = this.views[i]!;
    if (v.byteLength !== 0 || this.windows[i]!.bytes === 0) return v;
    const fresh = (this.views[i] = this.makeView(this.windows[i]!));
    if (i === 0) this.head = fresh.subarray(0, this.headBytes);
    return fresh;
  }

  /** Index of the window holding all of guest-physical [phys, phys + length), or -1. */
  find(phys: number, length: number): number {
    const starts = this.starts;
    for (let i = 0; i < starts.length; i++) {
      // NaN ends (windows beyond 2^53) compare false: not reachable by number addresses.
      if (phys >= starts[i]! && phys + length <= this.ends[i]!) return i;
    }
    return -1;
  }

  /** True when guest-physical [phys, phys + length) is all RAM: one window, or windows that adjoin. */
  covers(phys: number, length: number): boolean {
    while (length > 0) {
      const i = this.find(phys, 1);
      if (i < 0) return false;
      const n = Math.min(length, this.ends[i]! - phys);
      phys += n;
      length -= n;
    }
    return true;
  }

  /** Copies guest-physical [phys, +n) into `dst` at `at`; false (nothing copied) when it is not all RAM. */
  read(phys: number, dst: Uint8Array, at: number, n: number): boolean {
    const i = this.find(phys, n);
    if (i < 0) return this.split(phys, dst, at, n, false);
    const from = phys - this.starts[i]!;
    dst.set(this.view(i).subarray(from, from + n), at);
    return true;
  }

  /** Copies `src[at, at + n)` to guest-physical `phys`; false (nothing copied) when it is not all RAM. */
  write(phys: number, src: Uint8Array, at: number, n: number): boolean {
    const i = this.find(phys, n);
    if (i < 0) return this.split(phys, src, at, n, true);
    this.view(i).set(at === 0 && n === src.length ? src : src.subarray(at, at + n), phys - this.starts[i]!);
    return true;
  }

  /**
   * The copy of a DMA inside one page (dma.ts), kept small for V8 to inline there. `lo`, `hi` are
   * the guest-physical address's words (int32 or uint32). When all of [address, + data.length) is
   * in the first window's first 4 GiB region (`head`): `write(address, data, 0, data.length)` if
   * `toRam`, else `read(...)`, and true; false, with nothing copied, otherwise (the caller then
   * takes `write`/`read`, which see every window).
   */
  copyPage(lo: number, hi: number, data: Uint8Array, toRam: boolean): boolean {
    const head = this.head;
    // Integer operations only: the offset (mod 2^32) from the head's first byte. An address below
    // it in the region wraps to at least 2^32 - headLo, which is at least head.length: a miss.
    const at = (lo - this.headLo) >>> 0;
    if ((hi | 0) !== this.headHi || at + data.length > head.length) return false;
    if (toRam) head.set(data, at);
    else data.set(head.subarray(at, at + data.length));
    return true;
  }

  /** The slow path of read/write: a range over adjoining windows, copied window by window. */
  private split(phys: number, data: Uint8Array, at: number, n: number, toRam: boolean): boolean {
    if (!this.covers(phys, n)) return false;
    while (n > 0) {
      const i = this.find(phys, 1);
      const chunk = Math.min(n, this.ends[i]! - phys);
      const from = phys - this.starts[i]!;
      if (toRam) this.view(i).set(data.subarray(at, at + chunk), from);
      else data.set(this.view(i).subarray(from, from + chunk), at);
      phys += chunk;
      at += chunk;
      n -= chunk;
    }
    return true;
  }

  /** The window table the core reads (RAMWIN_* records), as [byte offset in the table, u32] pairs. */
  tableWords(): [offset: number, value: number][] {
    const out: [number, number][] = [];
    this.windows.forEach((w, i) => {
      const at = i * abi.RAMWIN_SIZE;
      out.push([at + abi.RAMWIN_BASE_LO, Number(w.base & 0xffffffffn)]);
      out.push([at + abi.RAMWIN_BASE_HI, Number(w.base >> 32n)]);
      out.push([at + abi.RAMWIN_BYTES, w.bytes]);
      out.push([at + abi.RAMWIN_OFFSET, w.buffer ? abi.RAMWIN_EXTERNAL >>> 0 : w.offset]);
    });
    return out;
  }

  private makeView(w: RamWindowSpec): Uint8Array {
    return new Uint8Array(w.buffer ?? this.memory.buffer, w.offset, w.bytes);
  }
}
