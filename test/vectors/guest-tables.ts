/**
 * A guest writing page tables into its RAM, for tests: 4 KiB table pages handed out from a bump
 * allocator inside `iommu.ram` (or a view of RAM the caller owns), entries written as little-endian u64 words. Format-neutral: callers
 * give the entry words (x86-64 or RISC-V bits) and the level geometry.
 */
import type { Iommu } from '../../src/index';

export class GuestRam {
  private next: bigint;

  constructor(
    /** The engine (its `ram`), or the caller's own view of the RAM window. */
    private readonly source: Iommu | Uint8Array,
    /** Guest-physical base of RAM (`Iommu.create({ ram })`). */
    readonly base: bigint,
    /** First address the table allocator may use. */
    first = base,
  ) {
    this.next = first;
  }

  private view(): DataView {
    const ram = this.source instanceof Uint8Array ? this.source : this.source.ram;
    return new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  }

  read(addr: bigint): bigint {
    return this.view().getBigUint64(Number(addr - this.base), true);
  }

  write(addr: bigint, value: bigint): void {
    this.view().setBigUint64(Number(addr - this.base), value, true);
  }

  /** A zeroed table of `bytes` (4 KiB, or 16 KiB for an x4 root), aligned to its size. */
  table(bytes = 4096n): bigint {
    this.next = (this.next + bytes - 1n) & ~(bytes - 1n);
    const t = this.next;
    this.next += bytes;
    for (let a = t; a < t + bytes; a += 8n) this.write(a, 0n);
    return t;
  }
}

/** Index of `va` at `level` (generic_pt numbering, 9 bits per level; `topBits` at the top). */
export function indexAt(va: bigint, level: number, topLevel = -1, topBits = 9): bigint {
  const bits = level === topLevel ? BigInt(topBits) : 9n;
  return (va >> BigInt(12 + 9 * level)) & ((1n << bits) - 1n);
}

/**
 * Page tables of one address space in guest RAM. `tableEntry(addr)` makes the pointer word for a
 * next-level table at `addr`; entries of existing tables are reused, so mappings share tables.
 */
export class GuestTables {
  /** table address -> index -> child table address */
  private readonly children = new Map<bigint, Map<bigint, bigint>>();
  /** Address of the entry written for each level by the last `map` (level -> address). */
  lastEntries = new Map<number, bigint>();

  constructor(
    readonly ram: GuestRam,
    readonly root: bigint,
    readonly levels: number,
    private readonly tableEntry: (addr: bigint, level: number) => bigint,
    /** Index bits of the root table (11 for RISC-V x4 roots). */
    private readonly topBits = 9,
    /** Translates a table address before the guest writes it (nested: GPA -> RAM address). */
    private readonly locate: (gpa: bigint) => bigint = (a) => a,
  ) {}

  /** Address of the entry for `va` at `level` inside `table`. */
  entryAddr(table: bigint, va: bigint, level: number): bigint {
    return table + 8n * indexAt(va, level, this.levels - 1, this.topBits);
  }

  /**
   * Writes the walk for `va` down to `leafLevel`, ending in `leaf`. Missing tables are allocated
   * with `alloc()` (their addresses as the walker sees them) and linked with `pointer(level)` words
   * (default: `tableEntry`), or with the per-level word override `pointers[level]`.
   */
  map(va: bigint, leafLevel: number, leaf: bigint, alloc: () => bigint, pointers: Record<number, bigint> = {}): void {
    this.lastEntries = new Map();
    let table = this.root;
    for (let level = this.levels - 1; level > leafLevel; level--) {
      const at = this.entryAddr(table, va, level);
      const kids = this.children.get(table) ?? new Map<bigint, bigint>();
      this.children.set(table, kids);
      const index = indexAt(va, level, this.levels - 1, this.topBits);
      let child = kids.get(index);
      if (child === undefined) {
        child = alloc();
        kids.set(index, child);
      }
      this.ram.write(this.locate(at), pointers[level] ?? this.tableEntry(child, level));
      this.lastEntries.set(level, this.locate(at));
      table = child;
    }
    const at = this.entryAddr(table, va, leafLevel);
    this.ram.write(this.locate(at), leaf);
    this.lastEntries.set(leafLevel, this.locate(at));
  }
}
