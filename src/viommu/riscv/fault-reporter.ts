/**
 * The fault queue's producer side (specification 1.0 section 3.2, "Fault/Event-Queue", and the
 * reference model's `report_fault`): 32-byte records written at `fqt`, dropped while the queue is
 * off or an error bit is set, `fqof` when full, `fqmf` when the record store faults, and the
 * `fip` interrupt event.
 * @module
 */
import { CSR_EN, CSR_MF, CSR_TO_OF, DTF_EXEMPT, IPSR_FIP } from './constants';
import type { GuestMemory } from './guest-memory';
import type { RegisterPage } from './register-page';

/** One fault or event record. */
export interface FaultRecord {
  cause: number;
  /** Transaction type (0: not caused by an inbound transaction). */
  ttyp: number;
  /** device_id (24 bits). */
  did: number;
  /** process_id when the request carried one. */
  pid?: number;
  priv: boolean;
  iotval: bigint;
  iotval2: bigint;
}

export class FaultReporter {
  constructor(private readonly regs: RegisterPage, private readonly mem: GuestMemory) {}

  /** Reports a fault; `dtf` is the device context's DTF (false before a valid context was found). */
  report(r: FaultRecord, dtf: boolean): void {
    const fq = this.regs.fq;
    if (!fq.on || (fq.csr & CSR_EN) === 0) return;
    if ((fq.csr & (CSR_MF | CSR_TO_OF)) !== 0) return;
    if (dtf && !DTF_EXEMPT.has(r.cause)) return;
    const next = (fq.tail + 1) % fq.entries;
    if (next === fq.head) {
      fq.csr |= CSR_TO_OF;
      this.regs.interrupts.raise(IPSR_FIP, fq.ie);
      return;
    }
    const pv = r.pid !== undefined;
    const header = BigInt(r.cause & 0xfff) | (BigInt(pv ? r.pid! & 0xfffff : 0) << 12n) | (pv ? 1n << 32n : 0n)
      | (pv && r.priv ? 1n << 33n : 0n) | (BigInt(r.ttyp & 0x3f) << 34n) | (BigInt(r.did & 0xffffff) << 40n);
    if (!this.mem.writeWords(fq.entryAddress(fq.tail), [header, 0n, r.iotval, r.iotval2])) {
      fq.csr |= CSR_MF;
    } else {
      fq.tail = next;
    }
    this.regs.interrupts.raise(IPSR_FIP, fq.ie);
  }
}
