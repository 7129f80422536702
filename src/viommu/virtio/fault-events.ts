/**
 * Which translation faults become event-queue reports (§5.13.6.9), and as what. Only endpoints of
 * this device report; a write into the endpoint's MSI window is an interrupt for the emulator, not
 * a fault; a malformed call of the emulator (`bad-request`) is not the guest's business. The
 * address is always given (VIRTIO_IOMMU_FAULT_F_ADDRESS), READ/WRITE follow the access.
 * @module
 */
import { Access, type FaultRecord } from '../../api';
import type { EventQueue } from './event-queue';
import { FAULT_F, FAULT_REASON, RESV_MEM_T } from './layout';
import type { Model } from './model';

function reasonOf(reason: FaultRecord['reason']): number {
  switch (reason) {
    case 'not-attached':
      return FAULT_REASON.DOMAIN;
    case 'not-present':
    case 'permission':
    case 'beyond-width':
      return FAULT_REASON.MAPPING;
    default:
      return FAULT_REASON.UNKNOWN;
  }
}

/** Queues the report for `f`, if it is one. @returns true when a report was queued. */
export function queueFault(m: Model, q: EventQueue, f: FaultRecord): boolean {
  if (f.reason === 'bad-request') return false;
  const ep = m.endpoints.get(f.rid);
  if (!ep) return false;
  if (f.access & Access.Write) {
    for (const r of ep.regions) if (r.subtype === RESV_MEM_T.MSI && f.iova >= r.start && f.iova <= r.end) return false;
  }
  let flags = FAULT_F.ADDRESS;
  if (f.access & Access.Read) flags |= FAULT_F.READ;
  if (f.access & Access.Write) flags |= FAULT_F.WRITE;
  return q.push(reasonOf(f.reason), flags, f.rid, Number(f.iova & 0xffffffffn), Number(f.iova >> 32n));
}
