/**
 * The mappings of one domain, as the guest created them: one entry per MAP request (never merged,
 * never split: UNMAP removes whole entries, §5.13.6.6). Addresses are in 4 KiB page numbers, exact
 * as doubles (a u64 address has a page number below 2^52), so the hot path needs no BigInt.
 *
 * Invariant: entries are sorted by `start` and do not overlap (`end[i] <= start[i + 1]`); `end` is
 * exclusive. Entries whose flags give neither READ nor WRITE exist only here, not in the engine
 * (iommufd cannot map without a permission).
 * @module
 */

export class MappingIndex {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private readonly physOf: number[] = [];
  private readonly flagsOf: number[] = [];

  get size(): number {
    return this.starts.length;
  }

  /** Index of the first entry ending after page `page` (entries before it lie wholly below). */
  lowerBound(page: number): number {
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! > page) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** True when some entry shares a page with `[start, end)`. */
  overlaps(start: number, end: number): boolean {
    const i = this.lowerBound(start);
    return i < this.starts.length && this.starts[i]! < end;
  }

  /** Adds `[start, end)`, which overlaps no entry (checked by the caller with `overlaps`). */
  insert(start: number, end: number, phys: number, flags: number): void {
    const i = this.lowerBound(start);
    if (i === this.starts.length) {
      this.starts.push(start);
      this.ends.push(end);
      this.physOf.push(phys);
      this.flagsOf.push(flags);
    } else {
      this.starts.splice(i, 0, start);
      this.ends.splice(i, 0, end);
      this.physOf.splice(i, 0, phys);
      this.flagsOf.splice(i, 0, flags);
    }
  }

  start(i: number): number {
    return this.starts[i]!;
  }

  end(i: number): number {
    return this.ends[i]!;
  }

  flags(i: number): number {
    return this.flagsOf[i]!;
  }

  /** Removes entries `[from, to)`. */
  remove(from: number, to: number): void {
    if (to <= from) return;
    if (to === this.starts.length && from === to - 1) {
      this.starts.pop();
      this.ends.pop();
      this.physOf.pop();
      this.flagsOf.pop();
      return;
    }
    this.starts.splice(from, to - from);
    this.ends.splice(from, to - from);
    this.physOf.splice(from, to - from);
    this.flagsOf.splice(from, to - from);
  }

  clear(): void {
    this.remove(0, this.starts.length);
  }

  /** Every entry as `[start, end, phys, flags]` in page numbers (tests, diagnostics). */
  entries(): [number, number, number, number][] {
    return this.starts.map((s, i) => [s, this.ends[i]!, this.physOf[i]!, this.flagsOf[i]!]);
  }
}
