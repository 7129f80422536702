/**
 * The guest RAM window: `bytes` of the engine memory at byte `offset`, standing for guest-physical
 * addresses [base, base + bytes). Software DMA (device-side dmaRead/dmaWrite and access objects)
 * copies through it; an output address outside it is not RAM (MMIO, another machine) and cannot
 * be read or written by the engine. Addresses here are numbers: a window that ends above 2^53 (page
 * tables of 56-bit RISC-V machines) holds tables the walkers read, but is not reachable from here.
 * @module
 */

export class RamWindow {
  readonly baseNumber: number;
  /** False when the window ends above 2^53: number addresses cannot name its bytes exactly. */
  readonly exact: boolean;

  constructor(
    /** Guest-physical address of the first byte. */
    readonly base: bigint,
    /** Byte offset of the window in the engine memory. */
    readonly offset: number,
    readonly bytes: number,
  ) {
    this.baseNumber = Number(base);
    this.exact = base + BigInt(bytes) <= BigInt(Number.MAX_SAFE_INTEGER);
  }

  /** Memory offset of guest-physical [phys, phys + length), or -1 when it is not all RAM. */
  offsetOf(phys: number, length: number): number {
    if (!this.exact) return -1;
    const at = phys - this.baseNumber;
    return at >= 0 && at + length <= this.bytes ? this.offset + at : -1;
  }
}
