/**
 * IOTINVAL commands waiting to reach the engine. Specification 1.0 section 4.1: commands complete
 * asynchronously, and only an IOFENCE.C completion guarantees that earlier commands are done; so
 * page invalidations are gathered per HWPT, adjacent pages merged into ranges, and handed to
 * `hwptInvalidate` in one call at the next point that orders them: an IOFENCE.C or any other
 * command, a `ddtp` write, or a request through the model. Linux's unmap of n pages (n IOTINVALs,
 * then one IOFENCE.C) thus costs one engine invalidation of one range.
 * @module
 */
import type { IommuFd } from '../../api';

/** More separate ranges than this for one HWPT: invalidate all of it (over-invalidating is legal). */
const MAX_RANGES = 64;

interface Pending {
  all: boolean;
  /** [first page address, end address) pairs, numbers while exact (below 2^53), else bigints. */
  ranges: [number | bigint, number | bigint][];
}

export class PendingInvalidations {
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly fd: IommuFd) {}

  /** The 4 KiB page at `addr` of `hwptId`. */
  page(hwptId: number, addr: number | bigint): void {
    const p = this.entry(hwptId);
    if (p.all) return;
    const last = p.ranges[p.ranges.length - 1];
    const end = typeof addr === 'number' ? addr + 4096 : addr + 4096n;
    if (last && typeof last[1] === typeof addr && last[1] === addr) {
      last[1] = end;
    } else if (p.ranges.length >= MAX_RANGES) {
      p.all = true;
      p.ranges.length = 0;
    } else {
      p.ranges.push([addr, end]);
    }
  }

  /** Everything cached from `hwptId`. */
  all(hwptId: number): void {
    const p = this.entry(hwptId);
    p.all = true;
    p.ranges.length = 0;
  }

  /** Hands every pending invalidation to the engine. */
  flush(): void {
    if (this.pending.size === 0) return;
    for (const [hwptId, p] of this.pending) {
      // leaf: an IOTINVAL names the leaf containing ADDR, superpages cached from other pages included.
      const entries = p.all ? [{}] : p.ranges.map(([a, e]) => ({ iova: a, length: typeof a === 'number' ? (e as number) - a : (e as bigint) - a, leaf: true }));
      this.fd.hwptInvalidate(hwptId, entries);
    }
    this.pending.clear();
  }

  private entry(hwptId: number): Pending {
    let p = this.pending.get(hwptId);
    if (!p) this.pending.set(hwptId, (p = { all: false, ranges: [] }));
    return p;
  }
}
