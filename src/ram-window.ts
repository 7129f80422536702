/**
 * The guest RAM window: `bytes` of the engine memory at byte `offset`, standing for guest-physical
 * addresses [base, base + bytes). Software DMA (device-side dmaRead/dmaWrite and access objects)
 * copies through it; an output address outside it is not RAM (MMIO, another machine) and cannot
 * be read or written by the engine. Addresses here are numbers: the window lies below 2^53.
 * @module
 */

export class RamWindow {
  readonly baseNumber: number;

  constructor(
    /** Guest-physical address of the first byte. */
    readonly base: bigint,
    /** Byte offset of the window in the engine memory. */
    readonly offset: number,
    readonly bytes: number,
  ) {
    this.baseNumber = Number(base);
  }

  /** Memory offset of guest-physical [phys, phys + length), or -1 when it is not all RAM. */
  offsetOf(phys: number, length: number): number {
    const at = phys - this.baseNumber;
    return at >= 0 && at + length <= this.bytes ? this.offset + at : -1;
  }
}
