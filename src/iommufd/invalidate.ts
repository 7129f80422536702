/**
 * IOMMU_HWPT_INVALIDATE for user-managed HWPTs: the guest changed its tables and names what may be
 * cached from before. Without it cached translations may stay (as on hardware); after it returns,
 * no translation in any thread uses a cached result for what it named.
 *
 * An entry names, for this HWPT: everything (`{}`), one PASID (`{ pasid }`, NO_PASID = the RID
 * attachment), or an address range (`{ iova, length }`, optionally with `pasid`). It removes exactly
 * the IOTLB entries of this HWPT whose 4 KiB page lies in the range (and whose PASID matches): a
 * probe of the few sets those pages hash to when the range is small, an exact scan of every
 * translator's IOTLB otherwise, a generation bump for "everything" (assembly/iotlb.ts describes
 * the race-free protocol). Entries cache per 4 KiB page, so a changed superpage leaf is named by its
 * whole range, as VT-d's address-mask invalidation requires — or, with `leaf: true`, by any address in
 * it (RISC-V IOTINVAL.VMA with AV=1): a scan comparing each entry's cached leaf range, taken only
 * when a translator has cached a superpage for the domain (assembly/iotlb.ts `iotlbInvalidateLeafScan`).
 *
 * A nest parent's translations are inside its children's cached results, which are keyed by the
 * children's input addresses: invalidating a parent (any entry) ends all of its children's entries.
 *
 * iommufd semantics (Linux include/uapi/linux/iommufd.h `struct iommu_hwpt_invalidate`; the invalidation
 * cases of the selftest's alloc_hwpt_nested, tools/testing/selftests/iommu/iommufd.c): a paging (engine-managed) HWPT is EINVAL;
 * entries are applied in order and the call stops at the first bad one, reporting its errno and how
 * many entries were handled before it (`InvalidateError.handled`); an empty list succeeds with 0.
 * @module
 */
import * as abi from '../../assembly/abi';
import { int, u64, describe, unknownKey } from '../base/args';
import { toLast } from '../base/range';
import { fail, IommuError, type Errno } from '../base/errno';
import type { FdState } from './fd-state';
import { HwptPaging } from './hwpt';
import { HwptUser } from './hwpt-user';

/** One invalidation request. */
export interface InvalidateEntry {
  /** Only this PASID's attachment (NO_PASID = the RID). Default: every attachment. */
  pasid?: number;
  /** With `length`: only pages of [iova, iova + length). Default: every address. */
  iova?: bigint | number;
  /** With `iova`: the length of the range in bytes. */
  length?: bigint | number;
  /**
   * With `iova`/`length`: name leaves, not pages — also drop translations cached from a larger
   * (superpage) leaf that overlaps the range, from whichever of its pages they were cached. A
   * RISC-V IOTINVAL.VMA with AV=1 names the leaf containing ADDR this way (RISC-V IOMMU 1.0
   * section 4.1.1); without `leaf`, as VT-d requires, a changed superpage is named by its whole range.
   */
  leaf?: boolean;
}

/** The error of a partly applied invalidation: `handled` entries were applied before the bad one. */
export class InvalidateError extends IommuError {
  /** @internal */
  constructor(
    errno: Errno,
    op: string,
    detail: string,
    /** How many entries were applied before the bad one. */
    readonly handled: number,
  ) {
    super(errno, op, detail);
  }
}

const ENTRY_KEYS = ['pasid', 'iova', 'length', 'leaf'];
/** The last 4 KiB page of the 64-bit space: page numbers (< 2^52) are exact as numbers. */
const LAST_PAGE = 2 ** 52 - 1;
/** Probing costs (pairs × pages × slots × 2) loads; past this many pages per pair, scan instead. */
const PROBE_PAGES = 64;

/** A checked entry: pages `first..last` (numbers, exact below 2^52) of `pasid` (undefined = any). */
interface Range {
  pasid: number | undefined;
  first: number;
  last: number;
  all: boolean;
  leaf: boolean;
}

/**
 * Checks entry `i` (each field read once) in this order: object, unknown field (EOPNOTSUPP), pasid,
 * iova/length pairing, leaf, then iova, length and their sum as `u64`/`toLast` check them.
 */
function parseEntry(op: string, entry: unknown, i: number): Range {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail('EINVAL', op, `entries[${i}]: expected an object, got ${describe(entry)}`);
  const unknown = unknownKey(entry, ENTRY_KEYS);
  if (unknown !== undefined) fail('EOPNOTSUPP', op, `entries[${i}]: unknown field '${unknown}'`);
  const e = entry as InvalidateEntry;
  const pasidIn = e.pasid, iova = e.iova, length = e.length, leaf = e.leaf;
  const pasid = pasidIn === undefined ? undefined : int(op, `entries[${i}].pasid`, pasidIn, 0, 2 ** abi.PASID_BITS - 1);
  if ((iova === undefined) !== (length === undefined)) fail('EINVAL', op, `entries[${i}]: iova and length go together`);
  if (leaf !== undefined && typeof leaf !== 'boolean') fail('EINVAL', op, `entries[${i}].leaf: expected a boolean, got ${describe(leaf)}`);
  if (leaf && iova === undefined) fail('EINVAL', op, `entries[${i}]: leaf needs iova and length`);
  if (iova === undefined) return { pasid, first: 0, last: LAST_PAGE, all: true, leaf: false };
  // Numbers whose range ends below 2^53: exact as doubles and valid (u64 and toLast accept every
  // such pair), so the pages are computed without BigInts. `length <= MAX_SAFE_INTEGER - iova` is
  // exact where `iova + length` could round; then `iova + length - 1` is exact too.
  if (typeof iova === 'number' && typeof length === 'number' && Number.isSafeInteger(iova) && Number.isSafeInteger(length) &&
    iova >= 0 && length > 0 && length <= Number.MAX_SAFE_INTEGER - iova) {
    return { pasid, first: Math.floor(iova / 4096), last: Math.floor((iova + length - 1) / 4096), all: false, leaf: leaf === true };
  }
  const start = u64(op, `entries[${i}].iova`, iova);
  const last = toLast(op, `entries[${i}].iova`, start, u64(op, `entries[${i}].length`, length));
  return { pasid, first: Number(start >> 12n), last: Number(last >> 12n), all: false, leaf: leaf === true };
}

/**
 * Applies `entries` to HWPT `hwptId` of `state`. @returns the number of entries handled.
 * @throws ENOENT no such object; EINVAL not a user-managed HWPT, entries not an array, a bad entry;
 * EOPNOTSUPP an unknown field in an entry; EOVERFLOW a range past 2^64 (InvalidateError with
 * `handled` for errors in entries).
 */
export function hwptInvalidate(state: FdState, op: string, hwptId: number, entries: unknown): number {
  const hwpt = state.table.get(op, hwptId);
  if (hwpt instanceof HwptPaging) fail('EINVAL', op, `HWPT ${hwptId} is engine-managed (hwpt-paging): its caches follow ioasUnmap`);
  if (!(hwpt instanceof HwptUser)) fail('EINVAL', op, `object ${hwptId} is a ${hwpt.type}, expected a user-managed HWPT`);
  if (!Array.isArray(entries)) fail('EINVAL', op, `entries: expected an array, got ${describe(entries)}`);
  const list = entries as unknown[];
  let handled = 0;
  for (; handled < list.length; handled++) {
    let r: Range;
    try {
      r = parseEntry(op, list[handled], handled);
    } catch (e) {
      if (e instanceof IommuError) throw new InvalidateError(e.errno, op, e.message.slice(e.message.indexOf('(') + 1, -1), handled);
      throw e;
    }
    apply(state, hwpt, r);
    // What the children cached went through this table (when it is a parent).
    if (hwpt.children.size !== 0) for (const child of hwpt.children) state.engine.invalidateDomain(child.domain);
  }
  return handled;
}

function apply(state: FdState, hwpt: HwptUser, r: Range): void {
  const engine = state.engine;
  const dom = hwpt.domain;
  if (r.all && r.pasid === undefined) {
    engine.invalidateDomain(dom);
    return;
  }
  if (r.leaf && engine.invalidateLeafScan(dom, r.pasid, r.first, r.last)) return; // a superpage was cached: the scan compared leaf ranges
  // Probe when the (rid, pasid) pairs attached to this HWPT -- only they can have entries under
  // its domain -- times the pages are few. Entries of pairs detached earlier are dead already
  // (detach ends the domain's generation).
  if (!r.all && pairCount(state, hwpt.id, r.pasid) * (r.last - r.first + 1) <= PROBE_PAGES) {
    for (const dev of state.devices) {
      for (const [pasid, h] of dev.attachedHwpts()) {
        if (h.id === hwpt.id && (r.pasid === undefined || r.pasid === pasid)) engine.invalidatePages(dom, dev.rid, pasid, r.first, r.last);
      }
    }
  } else {
    engine.invalidateScan(dom, r.pasid, r.first, r.last);
  }
}

/** How many (rid, pasid) pairs of `state`'s devices are attached to HWPT `hwptId` (of `pasid`, or any). */
function pairCount(state: FdState, hwptId: number, pasid: number | undefined): number {
  let n = 0;
  for (const dev of state.devices) {
    for (const [p, h] of dev.attachedHwpts()) if (h.id === hwptId && (pasid === undefined || pasid === p)) n++;
  }
  return n;
}
