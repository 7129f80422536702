/**
 * One endpoint of the virtio-iommu: an ioasid device bound to the model's FD, named by its
 * requester ID (the endpoint ID of §5.13.6.3, as QEMU uses the BDF). It knows its domain (none =
 * unattached: bypass or blocked by `config.bypass`, §5.13.6.1) and the regions it reports with
 * PROBE: the MSI window and the device's reserved regions, merged so that no two overlap
 * (§5.13.6.8.2: one MSI property at most, no overlaps).
 * @module
 */
import type { DeviceFd } from '../../api';
import type { Domain } from './domain';
import { RESV_MEM_T } from './layout';

/** A reserved region as PROBE reports it: inclusive bytes and a RESV_MEM subtype. */
export interface ReservedRegion {
  start: bigint;
  end: bigint;
  subtype: number;
}

export class Endpoint {
  domain: Domain | undefined;
  /** Sorted, disjoint; what PROBE reports and MAP may not cover. */
  readonly regions: readonly ReservedRegion[];
  /** `regions` in 4 KiB pages: `[startPages[i], endPages[i])` holds every byte of region i. */
  readonly startPages: readonly number[];
  readonly endPages: readonly number[];
  /** Endpoints with the same key can share an identity address space. */
  readonly regionsKey: string;

  constructor(readonly dev: DeviceFd, msi: { start: bigint; end: bigint } | undefined) {
    this.regions = mergeRegions(dev.reservedRegions.map((r) => ({ start: r.start, end: r.last })), msi);
    this.startPages = this.regions.map((r) => Number(r.start >> 12n));
    this.endPages = this.regions.map((r) => Number(r.end >> 12n) + 1);
    this.regionsKey = this.regions.map((r) => `${r.start}-${r.end}`).join(',');
  }

  get rid(): number {
    return this.dev.rid;
  }
}

/** The union of `device` regions minus the MSI window, plus that window, sorted by start. */
function mergeRegions(device: { start: bigint; end: bigint }[], msi: { start: bigint; end: bigint } | undefined): ReservedRegion[] {
  const sorted = [...device].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const union: { start: bigint; end: bigint }[] = [];
  for (const r of sorted) {
    const last = union[union.length - 1];
    if (last && r.start <= last.end + 1n) last.end = r.end > last.end ? r.end : last.end;
    else union.push({ ...r });
  }
  const out: ReservedRegion[] = [];
  for (const r of union) {
    if (!msi || r.end < msi.start || r.start > msi.end) {
      out.push({ ...r, subtype: RESV_MEM_T.RESERVED });
      continue;
    }
    if (r.start < msi.start) out.push({ start: r.start, end: msi.start - 1n, subtype: RESV_MEM_T.RESERVED });
    if (r.end > msi.end) out.push({ start: msi.end + 1n, end: r.end, subtype: RESV_MEM_T.RESERVED });
  }
  if (msi) out.push({ start: msi.start, end: msi.end, subtype: RESV_MEM_T.MSI });
  return out.sort((a, b) => (a.start < b.start ? -1 : 1));
}
