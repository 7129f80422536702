/**
 * The command queue's consumer side (specification 1.0 section 4.1, "Command-Queue"): fetch at
 * `cqh` while `cqh` != `cqt`, decode, execute, advance; stop on an illegal command (`cmd_ill`) or a
 * memory fault (`cqmf`) with `cqh` on the offending entry. Run synchronously when `cqt` is written
 * (or the CSR re-enables the queue), so a guest polling `cqh` for its IOFENCE.C sees it done on the
 * first read. Work per trigger is bounded by `MAX_COMMANDS_PER_RUN`: a larger backlog is finished
 * by the next trigger, as an asynchronous IOMMU would.
 * @module
 */
import { CAP, CSR_CMD_ILL, CSR_FENCE_W_IP, CSR_MF, FCTL_WSI, IPSR_CIP, bit, bits } from './constants';
import type { GuestMemory } from './guest-memory';
import { CQ_ERRORS, type RegisterPage } from './register-page';

/** Commands executed per trigger at most (a queue holds up to 2^32 - 1). */
export const MAX_COMMANDS_PER_RUN = 1 << 16;

/** What commands act on. */
export interface CommandTarget {
  /** A command other than IOTINVAL is about to run: earlier invalidations must take effect first. */
  ordered(): void;
  /** IOTINVAL.VMA: operands as decoded; `addr` undefined when AV=0. */
  invalidateVma(gv: boolean, gscid: number, pscv: boolean, pscid: number, addr: bigint | number | undefined): void;
  /** IOTINVAL.GVMA: every G-stage-derived entry of `gscid`, or of every VM when undefined. */
  invalidateGvma(gscid: number | undefined): void;
  /** IODIR.INVAL_DDT: the cached context of `did`, or of every device when undefined. */
  invalidateDdt(did: number | undefined): void;
  /** IODIR.INVAL_PDT: the cached process context (`did`, `pid`). */
  invalidatePdt(did: number, pid: number): void;
  /** ATS.PRGR: a page-request group response to device `devid` (dword1 is the payload). */
  pageResponse(devid: number, pid: number | undefined, payload: bigint): void;
}

const enum Outcome { Done, Illegal, MemoryFault }

export class CommandQueue {
  private readonly ats: boolean;
  private readonly nl: boolean;
  private readonly s: boolean;
  private readonly pidBits: number;

  constructor(private readonly regs: RegisterPage, private readonly mem: GuestMemory, private readonly target: CommandTarget) {
    const caps = regs.capabilities;
    this.ats = (caps & CAP.ATS) !== 0n;
    this.nl = bit(caps, 42);
    this.s = bit(caps, 43);
    this.pidBits = (caps & CAP.PD20) !== 0n ? 20 : (caps & CAP.PD17) !== 0n ? 17 : 8;
  }

  /** Runs commands from `cqh` towards `cqt`. */
  run(): void {
    const cq = this.regs.cq;
    for (let n = 0; n < MAX_COMMANDS_PER_RUN; n++) {
      if (!cq.on || (cq.csr & CQ_ERRORS & ~CSR_FENCE_W_IP) !== 0 || cq.head === cq.tail) return;
      const addr = cq.entryAddressNumber(cq.head); // NaN: only the bigint address is exact
      const at = Number.isNaN(addr) ? this.mem.offsetOf(cq.entryAddress(cq.head), 16) : this.mem.offsetOfNumber(addr, 16);
      const outcome = at < 0 ? Outcome.MemoryFault : this.fetchAndExecute(at);
      if (outcome !== Outcome.Done) {
        cq.csr |= outcome === Outcome.Illegal ? CSR_CMD_ILL : CSR_MF;
        this.regs.interrupts.raise(IPSR_CIP, cq.ie);
        return;
      }
      cq.head = (cq.head + 1) % cq.entries;
    }
  }

  /** Reads the command at RAM offset `at` as 32-bit words (IOTINVAL needs no BigInt) and runs it. */
  private fetchAndExecute(at: number): Outcome {
    const m = this.mem;
    const lo = m.u32At(at), hi = m.u32At(at + 4), d1lo = m.u32At(at + 8), d1hi = m.u32At(at + 12);
    const opcode = lo & 0x7f;
    const func3 = (lo >>> 7) & 7;
    if (opcode === 1) return func3 <= 1 ? this.iotinval(func3 === 1, lo, hi, d1lo, d1hi) : Outcome.Illegal;
    this.target.ordered();
    return this.execute((BigInt(hi) << 32n) | BigInt(lo), (BigInt(d1hi) << 32n) | BigInt(d1lo));
  }

  private execute(d0: bigint, d1: bigint): Outcome {
    const low = Number(d0 & 0x3ffn);
    const opcode = low & 0x7f;
    const func3 = low >>> 7;
    switch (opcode) {
      case 2: return func3 === 0 ? this.iofence(d0, d1) : Outcome.Illegal;
      case 3: return func3 <= 1 ? this.iodir(func3 === 1, d0, d1) : Outcome.Illegal;
      case 4: return func3 <= 1 && this.ats ? this.atsCommand(func3 === 1, d0, d1) : Outcome.Illegal;
      default: return Outcome.Illegal;
    }
  }

  /** IOTINVAL, decoded on 32-bit halves (Linux sends one per 4 KiB page it unmaps: the hot command). */
  private iotinval(gvma: boolean, lo: number, hi: number, d1lo: number, d1hi: number): Outcome {
    // Reserved: bit 11, bits 43:35 (34 without NL), 63:60; dword1 bits 8:0 (9 without S), 63:62.
    if ((lo & 0x800) !== 0 || (hi & 0xff8) !== 0 || (!this.nl && (hi & 0x4) !== 0) || (hi >>> 28) !== 0) return Outcome.Illegal;
    if ((d1lo & 0x1ff) !== 0 || (!this.s && (d1lo & 0x200) !== 0) || (d1hi >>> 30) !== 0) return Outcome.Illegal;
    const av = (lo & 0x400) !== 0, pscv = (hi & 1) !== 0, gv = (hi & 2) !== 0;
    const gscid = (hi >>> 12) & 0xffff;
    if (gvma) {
      if (pscv) return Outcome.Illegal;
      this.target.invalidateGvma(gv ? gscid : undefined);
    } else {
      // ADDR[63:12] is dword1[61:10]: a page number below 2^52, exact as a number.
      const page = (d1hi & 0x3fffffff) * 4194304 + (d1lo >>> 10);
      this.target.invalidateVma(gv, gscid, pscv, lo >>> 12, av ? (page < 2 ** 41 ? page * 4096 : BigInt(page) << 12n) : undefined);
    }
    return Outcome.Done;
  }

  private iofence(d0: bigint, d1: bigint): Outcome {
    if (bits(d0, 31, 14) !== 0n || bits(d1, 63, 62) !== 0n) return Outcome.Illegal;
    const av = bit(d0, 10), wsi = bit(d0, 11);
    if (wsi && (this.regs.fctl & FCTL_WSI) === 0) return Outcome.Illegal;
    // Requests are translated synchronously: every earlier one is complete, nothing to wait for.
    if (av && !this.mem.write32(bits(d1, 61, 0) << 2n, Number(d0 >> 32n))) return Outcome.MemoryFault;
    if (wsi) {
      const cq = this.regs.cq;
      if ((cq.csr & CSR_FENCE_W_IP) === 0) {
        cq.csr |= CSR_FENCE_W_IP;
        this.regs.interrupts.raise(IPSR_CIP, cq.ie);
      }
    }
    return Outcome.Done;
  }

  private iodir(pdt: boolean, d0: bigint, d1: bigint): Outcome {
    if (bits(d0, 11, 10) !== 0n || bit(d0, 32) || bits(d0, 39, 34) !== 0n || d1 !== 0n) return Outcome.Illegal;
    const pid = Number(bits(d0, 31, 12));
    const dv = bit(d0, 33);
    const did = Number(bits(d0, 63, 40));
    if (pid >= 2 ** this.pidBits) return Outcome.Illegal;
    if (pdt) {
      if (!dv) return Outcome.Illegal;
      this.target.invalidatePdt(did, pid);
    } else {
      if (pid !== 0) return Outcome.Illegal;
      this.target.invalidateDdt(dv ? did : undefined);
    }
    return Outcome.Done;
  }

  private atsCommand(prgr: boolean, d0: bigint, d1: bigint): Outcome {
    if (bits(d0, 11, 10) !== 0n || bits(d0, 39, 34) !== 0n) return Outcome.Illegal;
    // ATS.INVAL: no device of this model keeps an ATC, so the invalidation completes at once.
    // The destination is RID [55:40], with the segment DSEG [63:56] when DSV: the device_id.
    const devid = Number(bits(d0, 55, 40)) | (bit(d0, 33) ? Number(bits(d0, 63, 56)) << 16 : 0);
    if (prgr) this.target.pageResponse(devid, bit(d0, 32) ? Number(bits(d0, 31, 12)) : undefined, d1);
    return Outcome.Done;
  }
}
