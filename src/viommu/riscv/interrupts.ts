/**
 * `ipsr` and `icvec` (specification 1.0 sections 5.16 and 5.27) with wire-signalled interrupts:
 * each pending bit drives the wire its `icvec` field selects; a wire is level-triggered and stays
 * asserted while any pending bit mapped to it is 1. `onInterrupt(vector, asserted)` hears every
 * change of a wire's level.
 * @module
 */
import { IPSR_CIP, IPSR_FIP, IPSR_PIP } from './constants';

/** Called when wire `vector` changes level. */
export type InterruptSink = (vector: number, asserted: boolean) => void;

/** Sends the message of `vector` (MSI mode: a pending bit went 0 → 1). */
export type MessageSender = (vector: number) => void;

/** The pending bits a write to `ipsr` may clear: cip, fip and (with a page-request queue) pip. */
const PENDING_BITS = [IPSR_CIP, IPSR_FIP, 0 /* pmip: no HPM */, IPSR_PIP] as const;

export class Interrupts {
  /** `ipsr` (only cip, fip, pip can be set). */
  ipsr = 0;
  /** `icvec`: 4-bit civ [3:0], fiv [7:4], pmiv [11:8] (0: no HPM), piv [15:12] (0 without ATS). */
  icvec = 0;
  private wires = 0;

  /**
   * @param sink wired mode (`fctl.WSI` = 1): told of every change of a wire's level.
   * @param message MSI mode (`fctl.WSI` = 0): called on every 0 → 1 change of a pending bit.
   */
  constructor(private readonly sink: InterruptSink | undefined, private readonly message: MessageSender | undefined, private readonly hasPageQueue: boolean) {}

  /** A queue event: sets the pending bit unless it is already set or the queue's `ie` is 0. */
  raise(bit: number, ie: boolean): void {
    if (!ie || (this.ipsr & bit) !== 0) return;
    this.ipsr |= bit;
    if (this.message) this.message(this.vectorOf(bit));
    this.updateWires();
  }

  /** The `icvec` field of a pending bit. */
  private vectorOf(bit: number): number {
    const i = PENDING_BITS.indexOf(bit as (typeof PENDING_BITS)[number]);
    return (this.icvec >>> (4 * i)) & 0xf;
  }

  /** RW1C write of `ipsr`; `stillPending` re-arms a bit whose error condition still holds. */
  writeIpsr(value: number, stillPending: (bit: number) => boolean): void {
    for (const b of PENDING_BITS) {
      if (b !== 0 && (value & b) !== 0) {
        this.ipsr &= ~b;
        if (stillPending(b)) this.ipsr |= b;
      }
    }
    this.updateWires();
  }

  /** WARL write of `icvec`: keeps civ and fiv, and piv with a page-request queue. */
  writeIcvec(value: bigint): void {
    this.icvec = Number(value & (this.hasPageQueue ? 0xf0ffn : 0xffn));
    this.updateWires();
  }

  /** Recomputes each wire as the OR of the pending bits whose `icvec` field selects it. */
  private updateWires(): void {
    if (this.message) return;
    let level = 0;
    PENDING_BITS.forEach((b, i) => {
      if (b !== 0 && (this.ipsr & b) !== 0) level |= 1 << ((this.icvec >>> (4 * i)) & 0xf);
    });
    const changed = level ^ this.wires;
    this.wires = level;
    if (changed === 0 || !this.sink) return;
    for (let v = 0; v < 16; v++) if (changed & (1 << v)) this.sink(v, (level & (1 << v)) !== 0);
  }
}
