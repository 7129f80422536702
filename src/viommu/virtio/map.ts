/**
 * MAP (§5.13.6.5) and UNMAP (§5.13.6.6), the strict-mode hot path: one of each per DMA buffer.
 * Fields are read as u32 halves and turned into 4 KiB page numbers (exact doubles), checks run in
 * the order flags → domain → bypass → ordering → alignment → input range → reserved regions →
 * overlap → capacity, and only then does the engine see the request, with a reused arguments
 * object. The domain's mapping index, not iommufd, decides UNMAP: iommufd's ENOENT covers both
 * "nothing mapped" and "split", and it does not roll back.
 * @module
 */
import { readU32 } from './bytes';
import type { Domain } from './domain';
import { MAP_F, STATUS } from './layout';
import { statusOf, type Model } from './model';

/** Mappings per domain before MAP answers NOMEM (cloud-hypervisor caps at 2^20 too). */
export const MAX_MAPPINGS = 1 << 20;
const TWO_20 = 1048576;
const PAGES_IN_U64 = 2 ** 52;
/** Page numbers below this give byte addresses that are safe integers. */
const SAFE_PAGES = 2 ** 41;

const pageOf = (lo: number, hi: number): number => hi * TWO_20 + (lo >>> 12);
const addressOf = (page: number): number | bigint => (page < SAFE_PAGES ? page * 4096 : BigInt(page) << 12n);

/** virt_start and virt_end of the request being handled, as u32 halves (requests run one at a time). */
const span = { startLo: 0, startHi: 0, endLo: 0, endHi: 0 };

/**
 * The paging domain named at offset 4 (or the status refusing it), with `span` read from
 * virt_start @8 and virt_end @16. @returns INVAL too when virt_end < virt_start.
 */
function target(m: Model, r: Uint8Array): Domain | number {
  const d = m.domains.get(readU32(r, 4));
  if (d === undefined) return STATUS.NOENT;
  if (d.bypass) return STATUS.INVAL;
  span.startLo = readU32(r, 8);
  span.startHi = readU32(r, 12);
  span.endLo = readU32(r, 16);
  span.endHi = readU32(r, 20);
  if (span.endHi < span.startHi || (span.endHi === span.startHi && span.endLo < span.startLo)) return STATUS.INVAL;
  return d;
}

/** Readable: head, domain le32 @4, virt_start le64 @8, virt_end le64 @16, phys_start le64 @24, flags le32 @32. */
export function map(m: Model, r: Uint8Array): number {
  const flags = readU32(r, 32);
  if ((flags & ~MAP_F.MASK) !== 0) return STATUS.INVAL;
  if ((flags & MAP_F.MMIO) !== 0 && !m.mmio) return STATUS.INVAL;
  const d = target(m, r);
  if (typeof d === 'number') return d;
  const psLo = readU32(r, 24);
  const psHi = readU32(r, 28);
  if ((span.startLo & 0xfff) !== 0 || (psLo & 0xfff) !== 0 || (span.endLo & 0xfff) !== 0xfff) return STATUS.RANGE;
  const start = pageOf(span.startLo, span.startHi);
  const end = pageOf(span.endLo, span.endHi) + 1;
  const phys = pageOf(psLo, psHi);
  const g = m.opts.granulePages;
  if (g > 1 && (start % g !== 0 || end % g !== 0 || phys % g !== 0)) return STATUS.RANGE;
  if (phys + (end - start) > PAGES_IN_U64) return STATUS.RANGE; // phys_end would pass 2^64
  if (start < m.inputFirst || end > m.inputEnd) return STATUS.RANGE;
  if (d.touchesReserved(start, end)) return STATUS.INVAL;
  if (d.mappings.overlaps(start, end)) return STATUS.INVAL;
  if (d.mappings.size >= MAX_MAPPINGS) return STATUS.NOMEM;
  // A mapping without READ or WRITE allows nothing: it lives in the index only.
  if ((flags & (MAP_F.READ | MAP_F.WRITE)) !== 0) {
    const a = m.mapArgs;
    a.iova = addressOf(start);
    a.length = addressOf(end - start);
    a.phys = addressOf(phys);
    a.read = (flags & MAP_F.READ) !== 0;
    a.write = (flags & MAP_F.WRITE) !== 0;
    try {
      m.fd.ioasMap(d.ioasId, a);
    } catch (e) {
      return statusOf(e);
    }
  }
  d.mappings.insert(start, end, phys, flags);
  return STATUS.OK;
}

/** Readable: head, domain le32 @4, virt_start le64 @8, virt_end le64 @16, reserved[4] @24 (ignored: a MAY). */
export function unmap(m: Model, r: Uint8Array): number {
  const d = target(m, r);
  if (typeof d === 'number') return d;
  const first = pageOf(span.startLo, span.startHi); // the page holding virt_start
  const last = pageOf(span.endLo, span.endHi); // the page holding virt_end
  if (first < m.inputFirst || last >= m.inputEnd) return STATUS.RANGE;
  // Mappings wholly inside [virt_start, virt_end] lie in pages [innerStart, innerEnd).
  const innerStart = (span.startLo & 0xfff) === 0 ? first : first + 1;
  const innerEnd = (span.endLo & 0xfff) === 0xfff ? last + 1 : last;
  const idx = d.mappings;
  const from = idx.lowerBound(first);
  let to = from;
  while (to < idx.size && idx.start(to) <= last) to++;
  if (to === from) return STATUS.OK; // nothing mapped there: nothing to remove
  // Only the first and the last touched mapping can straddle an end: then remove nothing.
  if (idx.start(from) < innerStart || idx.end(to - 1) > innerEnd) return STATUS.RANGE;
  let status: number = STATUS.OK;
  for (let i = from; i < to; i++) {
    if ((idx.flags(i) & (MAP_F.READ | MAP_F.WRITE)) === 0) continue;
    try {
      m.fd.ioasUnmap(d.ioasId, addressOf(idx.start(i)), addressOf(idx.end(i) - idx.start(i)));
    } catch (e) {
      status = statusOf(e); // cannot happen while the index mirrors the IOAS; reported, not hidden
    }
  }
  idx.remove(from, to);
  return status;
}
