/**
 * Fault reports waiting for event-queue buffers (§5.13.6.9): a bounded ring of plain numbers (no
 * allocation per fault). Reports wait until the driver posts a buffer; when the ring is full the
 * newest report is dropped and counted, as QEMU drops reports it has no buffer for, so a device
 * faulting in a loop cannot grow memory. A report is never split across buffers: a buffer shorter
 * than 24 bytes is left unused.
 * @module
 */
import { writeU32 } from './bytes';
import { FAULT_SIZE } from './layout';

export class EventQueue {
  private readonly reason: Uint8Array;
  private readonly flags: Uint32Array;
  private readonly endpoint: Uint32Array;
  private readonly addrLo: Uint32Array;
  private readonly addrHi: Uint32Array;
  private head = 0;
  private count = 0;
  /** Reports dropped because the ring was full. */
  dropped = 0;

  constructor(readonly capacity: number) {
    this.reason = new Uint8Array(capacity);
    this.flags = new Uint32Array(capacity);
    this.endpoint = new Uint32Array(capacity);
    this.addrLo = new Uint32Array(capacity);
    this.addrHi = new Uint32Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Queues one report. @returns false when it was dropped. */
  push(reason: number, flags: number, endpoint: number, addrLo: number, addrHi: number): boolean {
    if (this.count === this.capacity) {
      this.dropped++;
      return false;
    }
    const i = (this.head + this.count) % this.capacity;
    this.reason[i] = reason;
    this.flags[i] = flags;
    this.endpoint[i] = endpoint;
    this.addrLo[i] = addrLo;
    this.addrHi[i] = addrHi;
    this.count++;
    return true;
  }

  /** Writes the oldest report as `struct virtio_iommu_fault` into `out`. @returns 24, or 0 (none, or `out` too short). */
  pop(out: Uint8Array): number {
    if (this.count === 0 || out.length < FAULT_SIZE) return 0;
    const i = this.head;
    out.fill(0, 0, FAULT_SIZE); // reserved and reserved1 are zero
    out[0] = this.reason[i]!;
    writeU32(out, 4, this.flags[i]!);
    writeU32(out, 8, this.endpoint[i]!);
    writeU32(out, 16, this.addrLo[i]!);
    writeU32(out, 20, this.addrHi[i]!);
    this.head = (i + 1) % this.capacity;
    this.count--;
    return FAULT_SIZE;
  }

  clear(): void {
    this.head = this.count = 0;
  }
}
