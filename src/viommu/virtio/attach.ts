/**
 * ATTACH (§5.13.6.3) and DETACH (§5.13.6.4). Everything that can refuse is checked before any
 * state changes, then the engine call that can still fail (a new IOAS, the device attach) runs
 * before the domain table is touched, so a refused request changes nothing.
 * @module
 */
import { allZero, readU32 } from './bytes';
import { Domain } from './domain';
import { ATTACH_F_BYPASS, STATUS } from './layout';
import { statusOf, type Model } from './model';

/** Readable: head, domain le32 @4, endpoint le32 @8, flags le32 @12, reserved[4] @16. */
export function attach(m: Model, r: Uint8Array): number {
  const domainId = readU32(r, 4);
  const flags = readU32(r, 12);
  if (!allZero(r, 16, 4)) return STATUS.INVAL; // MUST reject a non-zero reserved field
  if ((flags & ~ATTACH_F_BYPASS) !== 0) return STATUS.INVAL; // MUST reject unknown flags
  const bypass = (flags & ATTACH_F_BYPASS) !== 0;
  // Bypass domains exist only once BYPASS_CONFIG is negotiated; before, the bit is unknown.
  if (bypass && !m.bypassConfig) return STATUS.INVAL;
  const range = m.opts.domainRange;
  if (range && (domainId < range.start || domainId > range.end)) return STATUS.RANGE;
  const ep = m.endpoint(readU32(r, 8));
  if (!ep) return STATUS.NOENT;
  const existing = m.domains.get(domainId);
  if (existing) {
    if (existing.bypass !== bypass) return STATUS.INVAL; // SHOULD reject a type mismatch
    if (ep.domain === existing) return STATUS.OK; // already there: keep the mappings
    // The endpoint's reserved regions hold mappings of the domain: incompatible properties.
    if (!bypass && existing.clashesWith(ep)) return STATUS.UNSUPP;
  }
  let d = existing;
  if (!d) {
    let ioasId = 0;
    if (!bypass) {
      try {
        ioasId = m.fd.ioasAlloc();
      } catch (e) {
        return statusOf(e);
      }
    }
    d = new Domain(domainId, bypass, ioasId);
  }
  try {
    // The engine's attach replaces the old one: the implicit DETACH of §5.13.6.3, atomically.
    ep.dev.attach(bypass ? m.identity.ioasFor(ep) : d.ioasId);
  } catch (e) {
    if (!existing && d.ioasId !== 0) m.fd.destroy(d.ioasId);
    return statusOf(e);
  }
  m.leaveDomain(ep);
  if (!existing) m.domains.set(domainId, d);
  d.add(ep);
  ep.domain = d;
  return STATUS.OK;
}

/** Readable: head, domain le32 @4, endpoint le32 @8, reserved[8] @12 (ignored, as the spec says). */
export function detach(m: Model, r: Uint8Array): number {
  const ep = m.endpoint(readU32(r, 8));
  if (!ep) return STATUS.NOENT;
  const d = m.domains.get(readU32(r, 4));
  // Not attached to that domain: the device MAY reject; it does, and changes nothing (as QEMU).
  if (!d || ep.domain !== d) return STATUS.INVAL;
  m.placeUnattached(ep);
  m.leaveDomain(ep);
  return STATUS.OK;
}
