/**
 * The registers of one in-memory queue (specification 1.0 sections 5.4-5.13): its base (`cqb`,
 * `fqb`, `pqb`), head, tail and CSR. Which index software owns (the CQ tail, the FQ/PQ head) and
 * which error bits exist is the caller's business; this holds the shared WARL and enable rules.
 * @module
 */
import { CSR_EN, CSR_IE, CSR_ON, bits } from './constants';

export class QueueRegisters {
  /** log2(entries) - 1 (`LOG2SZ-1`, 0..31). */
  log2szm1 = 0;
  /** PPN field of the base register (already masked to PAS). */
  ppn = 0n;
  head = 0;
  tail = 0;
  csr = 0;

  /** @param entryBytes 16 (commands, page requests) or 32 (fault records). */
  constructor(readonly entryBytes: number, private readonly ppnMask: bigint) {}

  get base(): bigint {
    return (this.ppn << 10n) | BigInt(this.log2szm1);
  }

  /** Entries in the queue (2^(LOG2SZ-1 + 1)). */
  entries = 2;

  get on(): boolean {
    return (this.csr & CSR_ON) !== 0;
  }

  get ie(): boolean {
    return (this.csr & CSR_IE) !== 0;
  }

  /**
   * Guest-physical address of entry `i`: base OR offset, as the reference model computes it. The
   * same as a sum for a queue aligned to its size (specification 1.0 section 5.4); a misaligned
   * base is UNSPECIFIED and the vectors expect the OR.
   */
  entryAddress(i: number): bigint {
    return (this.ppn << 12n) | (BigInt(i) * BigInt(this.entryBytes));
  }

  /**
   * `entryAddress(i)` as a number, or NaN when that could differ: the per-command path's
   * BigInt-free address. A number only for a queue aligned to its size (the specification's rule,
   * where OR and sum agree) that ends below 2^53 (exact), and `i` inside it.
   */
  entryAddressNumber(i: number): number {
    return i < this.entries ? this.baseNumber + i * this.entryBytes : NaN;
  }

  /** The base address as a number when `entryAddressNumber` may use it (set by `writeBase`), else NaN. */
  private baseNumber = 0;

  /** Masks an index written by software to the queue's size. */
  index(value: number): number {
    return this.log2szm1 >= 31 ? value >>> 0 : (value >>> 0) % this.entries;
  }

  /**
   * A base-register write: ignored while the queue is on (busy is always 0 here); else stores the
   * size and the PAS-masked PPN. @returns whether it was taken (the caller clears its own index).
   */
  writeBase(value: bigint): boolean {
    if (this.on || (this.csr & CSR_EN) !== 0) return false;
    this.log2szm1 = Number(bits(value, 4, 0));
    this.entries = 2 ** (this.log2szm1 + 1);
    this.ppn = bits(value, 53, 10) & this.ppnMask;
    const base = Number(this.ppn) * 4096; // exact: a power-of-two multiple of an integer below 2^44
    const size = this.entries * this.entryBytes;
    this.baseNumber = base % size === 0 && base + size <= 2 ** 53 ? base : NaN;
    return true;
  }

  /**
   * A CSR write: enable (0→1: clears `errorBits`, the producer index and turns the queue on),
   * disable, `ie`, then RW1C of `errorBits`. `resetIndex` zeroes the index the IOMMU owns.
   */
  writeCsr(value: number, errorBits: number, resetIndex: () => void): void {
    const wasEn = (this.csr & CSR_EN) !== 0;
    const en = (value & CSR_EN) !== 0;
    if (en && !wasEn) {
      resetIndex();
      this.csr = (this.csr & ~errorBits) | CSR_EN | CSR_ON;
    } else if (!en && wasEn) {
      this.csr &= ~(CSR_EN | CSR_ON);
    }
    this.csr = (this.csr & ~CSR_IE) | (value & CSR_IE);
    this.csr &= ~(value & errorBits);
  }
}
