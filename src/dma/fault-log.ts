/**
 * The fault log an emulator drains: faults seen by the per-call translate paths of one thread,
 * in order, bounded (the oldest are dropped and counted, so a guest that faults in a loop cannot
 * grow memory). Batch translations report faults in their result records instead.
 * @module
 */
import type { FaultReason } from './translation';

export interface FaultRecord {
  rid: number;
  pasid: number;
  iova: bigint;
  access: number;
  reason: FaultReason;
  level: number;
  stage: number;
}

export class FaultLog {
  private records: FaultRecord[] = [];
  /** Faults dropped because the log was full. */
  lost = 0;

  constructor(readonly capacity = 1024) {}

  get size(): number {
    return this.records.length;
  }

  /** @internal */
  push(record: FaultRecord): void {
    if (this.records.length >= this.capacity) {
      this.records.shift();
      this.lost++;
    }
    this.records.push(record);
  }

  /** Returns the logged faults, oldest first, and empties the log. */
  drain(): FaultRecord[] {
    const out = this.records;
    this.records = [];
    return out;
  }
}
