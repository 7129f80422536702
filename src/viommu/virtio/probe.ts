/**
 * PROBE (§5.13.6.8): the endpoint's properties, one RESV_MEM per reserved region (the MSI window
 * as subtype MSI, the device's reserved regions as RESERVED), back to back from offset 0, the rest
 * of the `probe_size` bytes zeroed. Properties that do not fit in `probe_size` are left out whole.
 * @module
 */
import { readU32, writeU16, writeU64 } from './bytes';
import { PROBE_T, PROP_HEAD_SIZE, RESV_MEM_SIZE, STATUS, TAIL_SIZE } from './layout';
import type { Model } from './model';

/** Readable: head, endpoint le32 @4, reserved[64] @8 (ignored). Writable: properties[probe_size], tail. */
export function probe(m: Model, r: Uint8Array, w: Uint8Array): number {
  const size = m.opts.probeSize;
  // A properties area shorter than probe_size gets no property (SHOULD), only the tail.
  if (w.length < size + TAIL_SIZE) return STATUS.INVAL;
  const ep = m.endpoint(readU32(r, 4));
  if (!ep) return STATUS.NOENT;
  w.fill(0, 0, size);
  let at = 0;
  for (const region of ep.regions) {
    if (at + RESV_MEM_SIZE > size) break;
    writeU16(w, at, PROBE_T.RESV_MEM);
    writeU16(w, at + 2, RESV_MEM_SIZE - PROP_HEAD_SIZE); // the length excludes the header
    w[at + 4] = region.subtype;
    writeU64(w, at + 8, region.start);
    writeU64(w, at + 16, region.end);
    at += RESV_MEM_SIZE;
  }
  return STATUS.OK;
}
