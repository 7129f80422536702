/**
 * The page-request queue's producer side (specification 1.0 section 3.3, "Page-Request-Queue", and
 * the reference model's `handle_page_request`): 16-byte records at `pqt`; what the IOMMU answers
 * itself when it cannot queue (queue off or `pqmf`: Response Failure; `pqof` or full: Success),
 * and the `pip` interrupt event. Records are fed from ioasid's page requests (see riscv-iommu.ts).
 * @module
 */
import { CSR_EN, CSR_MF, CSR_TO_OF, IPSR_PIP } from './constants';
import type { GuestMemory } from './guest-memory';
import type { RegisterPage } from './register-page';

/** One PCIe page request (a group of one page: L = 1). */
export interface PageRequestRecord {
  did: number;
  pid?: number;
  priv: boolean;
  exec: boolean;
  read: boolean;
  write: boolean;
  /** Page request group index (9 bits). */
  prgIndex: number;
  addr: bigint;
}

/** What the IOMMU answered itself; `undefined`: queued, software answers with ATS.PRGR. */
export type ImmediateResponse = 'success' | 'failure' | undefined;

export class PageRequestQueue {
  constructor(private readonly regs: RegisterPage, private readonly mem: GuestMemory) {}

  push(r: PageRequestRecord): ImmediateResponse {
    const pq = this.regs.pq;
    if (!pq.on || (pq.csr & CSR_EN) === 0 || (pq.csr & CSR_MF) !== 0) return 'failure';
    if ((pq.csr & CSR_TO_OF) !== 0) return 'success';
    const next = (pq.tail + 1) % pq.entries;
    if (next === pq.head) {
      pq.csr |= CSR_TO_OF;
      this.regs.interrupts.raise(IPSR_PIP, pq.ie);
      return 'success';
    }
    const pv = r.pid !== undefined;
    const header = (BigInt(pv ? r.pid! & 0xfffff : 0) << 12n) | (pv ? 1n << 32n : 0n) | (pv && r.priv ? 1n << 33n : 0n)
      | (pv && r.exec ? 1n << 34n : 0n) | (BigInt(r.did & 0xffffff) << 40n);
    const payload = (r.read ? 1n : 0n) | (r.write ? 2n : 0n) | 4n /* L: last of its group */ | (BigInt(r.prgIndex & 0x1ff) << 3n) | (r.addr & ~0xfffn);
    if (!this.mem.writeWords(pq.entryAddress(pq.tail), [header, payload])) {
      pq.csr |= CSR_MF;
      this.regs.interrupts.raise(IPSR_PIP, pq.ie);
      return 'failure';
    }
    pq.tail = next;
    this.regs.interrupts.raise(IPSR_PIP, pq.ie);
    return undefined;
  }
}
