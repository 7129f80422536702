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
  /** IOTINVAL.VMA: operands as decoded; `addr` undefined when AV=0. */
  invalidateVma(gv: boolean, gscid: number, pscv: boolean, pscid: number, addr: bigint | undefined): void;
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
      const at = cq.entryAddress(cq.head);
      const d0 = this.mem.read64(at);
      const d1 = this.mem.read64(at + 8n);
      const outcome = d0 === undefined || d1 === undefined ? Outcome.MemoryFault : this.execute(d0, d1);
      if (outcome !== Outcome.Done) {
        cq.csr |= outcome === Outcome.Illegal ? CSR_CMD_ILL : CSR_MF;
        this.regs.interrupts.raise(IPSR_CIP, cq.ie);
        return;
      }
      cq.head = (cq.head + 1) % cq.entries;
    }
  }

  private execute(d0: bigint, d1: bigint): Outcome {
    const opcode = Number(d0 & 0x7fn);
    const func3 = Number(bits(d0, 9, 7));
    switch (opcode) {
      case 1: return func3 <= 1 ? this.iotinval(func3 === 1, d0, d1) : Outcome.Illegal;
      case 2: return func3 === 0 ? this.iofence(d0, d1) : Outcome.Illegal;
      case 3: return func3 <= 1 ? this.iodir(func3 === 1, d0, d1) : Outcome.Illegal;
      case 4: return func3 <= 1 && this.ats ? this.atsCommand(func3 === 1, d0, d1) : Outcome.Illegal;
      default: return Outcome.Illegal;
    }
  }

  private iotinval(gvma: boolean, d0: bigint, d1: bigint): Outcome {
    if (bit(d0, 11) || bits(d0, 43, 35) !== 0n || (!this.nl && bit(d0, 34)) || bits(d0, 63, 60) !== 0n) return Outcome.Illegal;
    if (bits(d1, 8, 0) !== 0n || (!this.s && bit(d1, 9)) || bits(d1, 63, 62) !== 0n) return Outcome.Illegal;
    const av = bit(d0, 10), pscv = bit(d0, 32), gv = bit(d0, 33);
    const gscid = Number(bits(d0, 59, 44));
    if (gvma) {
      if (pscv) return Outcome.Illegal;
      this.target.invalidateGvma(gv ? gscid : undefined);
    } else {
      this.target.invalidateVma(gv, gscid, pscv, Number(bits(d0, 31, 12)), av ? bits(d1, 61, 10) << 12n : undefined);
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
