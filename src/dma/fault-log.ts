/**
 * The fault log an emulator drains: faults seen by the per-call translate paths of one thread,
 * in order, bounded (the oldest are dropped and counted, so a guest that faults in a loop cannot
 * grow memory). Batch translations report faults in their result records instead.
 * @module
 */
import { fail } from '../base/errno';
import type { Access, FaultReason } from './translation';

/** One logged fault: the request and why it faulted. */
export interface FaultRecord {
  /** The requester ID of the device. */
  rid: number;
  /** The request's PASID (`NO_PASID` for none). */
  pasid: number;
  /** The request's input address. */
  iova: bigint;
  /** The request's `Access` bits. */
  access: Access;
  /** Why it faulted. */
  reason: FaultReason;
  /** The table level where the walk stopped (see `Fault.level`). */
  level: number;
  /** The stage that faulted (see `Fault.stage`). */
  stage: number;
}

/** Called with each fault as it is logged (see `FaultLog.subscribe`). */
export type FaultListener = (record: FaultRecord) => void;

/**
 * A bounded log of the faults one thread's per-call translations saw (`translator.faults`,
 * `iommu.faults`): drain it, or subscribe to each fault as it is logged.
 */
export class FaultLog {
  private records: FaultRecord[] = [];
  private listeners: FaultListener[] = [];
  /** Faults dropped because the log was full. */
  lost = 0;

  constructor(
    /** Records kept at most; older ones are dropped and counted in `lost`. */
    readonly capacity = 1024,
  ) {}

  /** Records in the log now. */
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
    // The DMA path never throws: a listener's exception is dropped here, not raised in translate.
    for (const listener of this.listeners) {
      try {
        listener(record);
      } catch {
        /* the listener's own problem */
      }
    }
  }

  /**
   * Calls `listener` with every fault logged from now on, as it happens (before any `drain`), so
   * that several consumers (an emulator's log, a vIOMMU model's event queue) see every fault
   * without taking them from each other. @returns a function that unsubscribes.
   */
  subscribe(listener: FaultListener): () => void {
    if (typeof listener !== 'function') fail('EINVAL', 'FaultLog.subscribe', 'expected a function');
    this.listeners = [...this.listeners, listener];
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  /** Returns the logged faults, oldest first, and empties the log. */
  drain(): FaultRecord[] {
    const out = this.records;
    this.records = [];
    return out;
  }
}
