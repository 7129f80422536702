/**
 * The 4 KiB register page (specification 1.0 chapter 5): access rules (aligned 4- and 8-byte
 * accesses inside one register; a 4-byte write to half of an 8-byte register is merged into the
 * current value and then has the full write's effect; anything else reads 0 and is dropped, as the
 * reference model does), WARL and RW1C fields, and absent registers (the page-request queue without
 * ATS) reading 0. Side effects on the rest of the model go through `RegisterHooks`.
 * @module
 */
import {
  CAP, CSR_CMD_ILL, CSR_FENCE_W_IP, CSR_MF, CSR_TO_OF, DDTP_BARE, DDTP_OFF, DDTP_3LVL, IPSR_CIP, IPSR_FIP, IPSR_PIP, MASK64, REG, bits,
} from './constants';
import { Interrupts, type InterruptSink, type MessageSender } from './interrupts';
import { QueueRegisters } from './queue-registers';

/** What a register write asks of the rest of the model. */
export interface RegisterHooks {
  /** `ddtp` changed (mode or root): cached device and process contexts are stale. */
  ddtpChanged(): void;
  /** The command queue may have work: `cqt` was written or `cqcsr` enabled or cleared it. */
  commandsReady(): void;
}

/** Error bits of each queue's CSR (RW1C). */
export const CQ_ERRORS = CSR_MF | CSR_TO_OF | CSR_CMD_ILL | CSR_FENCE_W_IP;
export const FQ_ERRORS = CSR_MF | CSR_TO_OF;

/** Registers that are 8 bytes wide; every other register is 4 bytes. */
const WIDE = new Set<number>([REG.capabilities, REG.ddtp, REG.cqb, REG.fqb, REG.pqb, REG.icvec]);
const NARROW = new Set<number>([REG.fctl, REG.cqh, REG.cqt, REG.fqh, REG.fqt, REG.pqh, REG.pqt, REG.cqcsr, REG.fqcsr, REG.pqcsr, REG.ipsr]);
const PAGE_QUEUE = new Set<number>([REG.pqb, REG.pqh, REG.pqt, REG.pqcsr]);

export class RegisterPage {
  readonly cq: QueueRegisters;
  readonly fq: QueueRegisters;
  readonly pq: QueueRegisters;
  readonly interrupts: Interrupts;
  ddtMode = DDTP_OFF;
  ddtPpn = 0n;
  private readonly ppnMask: bigint;
  private readonly ats: boolean;

  constructor(readonly capabilities: bigint, readonly fctl: number, pasBits: number, sink: InterruptSink | undefined, message: MessageSender | undefined, private readonly hooks: RegisterHooks) {
    this.ppnMask = (1n << BigInt(pasBits - 12)) - 1n;
    this.ats = (capabilities & CAP.ATS) !== 0n;
    this.cq = new QueueRegisters(16, this.ppnMask);
    this.fq = new QueueRegisters(32, this.ppnMask);
    this.pq = new QueueRegisters(16, this.ppnMask);
    this.interrupts = new Interrupts(sink, message, this.ats);
  }

  /** A guest read; 0 for anything but an aligned access inside one present register. */
  read(offset: number, size: number): bigint {
    const reg = this.locate(offset, size);
    if (reg === undefined) return 0n;
    const v = this.value(reg);
    return size === 4 && WIDE.has(reg) ? (v >> BigInt((offset - reg) * 8)) & 0xffffffffn : v;
  }

  /** A guest write; dropped unless aligned inside one present register. */
  write(offset: number, size: number, value: bigint | number): void {
    const reg = this.locate(offset, size);
    if (reg === undefined) return;
    if (size === 4 && !WIDE.has(reg)) {
      // A 4-byte register (cqt, fqh, the CSRs: the per-command path): no BigInt.
      this.store32(reg, typeof value === 'number' ? value >>> 0 : Number(value & 0xffffffffn));
      return;
    }
    let v = BigInt(value) & (size === 8 ? MASK64 : 0xffffffffn);
    if (size === 4) {
      const shift = BigInt((offset - reg) * 8);
      v = (this.value(reg) & ~(0xffffffffn << shift)) | (v << shift);
    }
    this.store(reg, v);
  }

  /** The register an access falls in, when the access is legal and the register present. */
  private locate(offset: number, size: number): number | undefined {
    if ((size !== 4 && size !== 8) || offset % size !== 0) return undefined;
    const wideReg = offset - (offset % 8);
    const reg = WIDE.has(wideReg) ? wideReg : NARROW.has(offset) && size === 4 ? offset : undefined;
    if (reg === undefined || (PAGE_QUEUE.has(reg) && !this.ats)) return undefined;
    return reg;
  }

  private value(reg: number): bigint {
    switch (reg) {
      case REG.capabilities: return this.capabilities;
      case REG.fctl: return BigInt(this.fctl);
      case REG.ddtp: return (this.ddtPpn << 10n) | BigInt(this.ddtMode);
      case REG.cqb: return this.cq.base;
      case REG.cqh: return BigInt(this.cq.head);
      case REG.cqt: return BigInt(this.cq.tail);
      case REG.fqb: return this.fq.base;
      case REG.fqh: return BigInt(this.fq.head);
      case REG.fqt: return BigInt(this.fq.tail);
      case REG.pqb: return this.pq.base;
      case REG.pqh: return BigInt(this.pq.head);
      case REG.pqt: return BigInt(this.pq.tail);
      case REG.cqcsr: return BigInt(this.cq.csr);
      case REG.fqcsr: return BigInt(this.fq.csr);
      case REG.pqcsr: return BigInt(this.pq.csr);
      case REG.ipsr: return BigInt(this.interrupts.ipsr);
      case REG.icvec: return BigInt(this.interrupts.icvec);
      default: return 0n;
    }
  }

  /** Stores an 8-byte register. */
  private store(reg: number, v: bigint): void {
    switch (reg) {
      case REG.ddtp: return this.writeDdtp(v);
      case REG.cqb: if (this.cq.writeBase(v)) this.cq.tail = 0; return;
      case REG.fqb: if (this.fq.writeBase(v)) this.fq.head = 0; return;
      case REG.pqb: if (this.pq.writeBase(v)) this.pq.head = 0; return;
      case REG.icvec: return this.interrupts.writeIcvec(v);
      default: return; // capabilities: read-only
    }
  }

  /** Stores a 4-byte register. */
  private store32(reg: number, n: number): void {
    switch (reg) {
      case REG.cqt:
        this.cq.tail = this.cq.index(n);
        this.hooks.commandsReady();
        return;
      case REG.fqh: this.fq.head = this.fq.index(n); return;
      case REG.pqh: this.pq.head = this.pq.index(n); return;
      case REG.cqcsr:
        this.cq.writeCsr(n, CQ_ERRORS, () => (this.cq.head = 0));
        this.hooks.commandsReady();
        return;
      case REG.fqcsr: return this.fq.writeCsr(n, FQ_ERRORS, () => (this.fq.tail = 0));
      case REG.pqcsr: return this.pq.writeCsr(n, FQ_ERRORS, () => (this.pq.tail = 0));
      case REG.ipsr: return this.interrupts.writeIpsr(n, (b) => this.stillPending(b));
      default: return; // fctl (no field is switchable in this model), cqh, fqt, pqt: read-only
    }
  }

  /**
   * `ddtp`: taken only for a mode 0..3LVL where the old or the new mode is Off or Bare (the
   * reference model's rule, which Linux's probe relies on); else the whole write is ignored.
   */
  private writeDdtp(v: bigint): void {
    const mode = Number(bits(v, 3, 0));
    if (mode > DDTP_3LVL) return;
    if (mode > DDTP_BARE && this.ddtMode > DDTP_BARE) return;
    this.ddtMode = mode;
    this.ddtPpn = bits(v, 53, 10) & this.ppnMask;
    this.hooks.ddtpChanged();
  }

  /** Whether a cleared `ipsr` bit must be pended again because its error condition still holds. */
  private stillPending(b: number): boolean {
    if (b === IPSR_CIP) return this.cq.ie && (this.cq.csr & CQ_ERRORS) !== 0;
    if (b === IPSR_FIP) return this.fq.ie && (this.fq.csr & FQ_ERRORS) !== 0;
    if (b === IPSR_PIP) return this.pq.ie && (this.pq.csr & FQ_ERRORS) !== 0;
    return false;
  }
}
