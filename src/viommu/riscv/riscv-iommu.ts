/**
 * RiscvIommu: the guest-visible RISC-V IOMMU (specification 1.0) over ioasid's public FD API. The
 * guest programs it through its register page and in-memory structures; the model turns device
 * and process contexts into HWPTs on its own FD (see `device-directory.ts`, `loaded-device.ts`) so
 * that, once a context is loaded, a translation is an engine translation.
 *
 * Request flow (`translate`) follows the reference model's order, section 2.3 of the
 * specification: `ddtp` Off (256), Bare, device_id width (260), device context (257/258/259),
 * process_id checks (260), process context (265/266/267, G-stage faults on PDT reads), ENS (260),
 * then the engine's walk, whose fault becomes cause 12/13/15, 20/21/23 or 1/5/7 and a fault record.
 * @module
 */
import { Access, Iommu, IommuError } from '../../api';
import { vmaMatches } from './address-space';
import { CommandQueue } from './command-queue';
import {
  CAP, CAUSE, DDTP_BARE, DDTP_OFF, FCTL_WSI, IGS_SHIFT, IGS_WSI, PAS_SHIFT, TTYP_UNTRANSLATED_EXEC, TTYP_UNTRANSLATED_READ, TTYP_UNTRANSLATED_WRITE, bits,
} from './constants';
import { deviceIdFits, type DdtShape } from './ddt';
import { DeviceDirectory } from './device-directory';
import { FaultReporter, type FaultRecord } from './fault-reporter';
import { GuestMemory } from './guest-memory';
import type { InterruptSink } from './interrupts';
import type { LoadedDevice, Target } from './loaded-device';
import { faultCause, guestPageCause } from './fault-cause';
import { walkPdt, processIdBits, type PdtFault } from './process-context';
import { PageRequestQueue } from './page-request-queue';
import { PageRequests } from './page-requests';
import { PendingInvalidations } from './pending-invalidations';
import { RegisterPage } from './register-page';
import { checkMmio, checkRequest } from './request-args';

/** Options of `new RiscvIommu`. */
export interface RiscvIommuOptions {
  /** The read-only `capabilities` register (default `DEFAULT_CAPABILITIES`). */
  capabilities?: bigint;
  /** `fctl` at reset: 0 or 2 (`WSI`); no field is writable in this model (default 2). */
  fctl?: number;
  /** Wired interrupt `vector` (the `icvec` field of the pending `ipsr` bit) changed level. */
  onInterrupt?: InterruptSink;
}

/** The outcome of one inbound untranslated request. */
export interface RiscvTranslation {
  /** The PCIe completion: success, Unsupported Request (the IOMMU refused) or Completer Abort. */
  status: 'success' | 'unsupported-request' | 'completer-abort';
  /** Output address of the byte at the IOVA. */
  pa?: bigint;
  /** Size of the translation (absent when no stage translated). */
  size?: bigint;
  /** Memory type: 0 PMA, 1 NC, 2 IO (absent when no stage translated). */
  pbmt?: number;
}

/** Outcome of a device-side DMA: bytes done before the first fault, and that fault's response. */
export interface RiscvDmaResult {
  /** Bytes copied before the transfer ended. */
  bytes: number;
  /** The completion of the transfer (of its first refused page, if any). */
  status: RiscvTranslation['status'];
}

/**
 * Sv39/48/57, Svpbmt, Sv39x4/48x4/57x4, AMO_HWAD, IGS = WSI, PAS = 46, PD8/17/20: what the engine
 * walks, with wired interrupts (the vectors' configuration).
 */
export const DEFAULT_CAPABILITIES = 0x1ee110e8e10n;

/** Capability bits this model can honour (the engine walks no Sv32 and no MSI page tables). */
const SUPPORTED = CAP.Sv39 | CAP.Sv48 | CAP.Sv57 | CAP.Svpbmt | CAP.Sv39x4 | CAP.Sv48x4 | CAP.Sv57x4 | CAP.MSI_FLAT | CAP.AMO_HWAD
  | CAP.ATS | CAP.PD8 | CAP.PD17 | CAP.PD20 | (3n << IGS_SHIFT) | (0x3fn << PAS_SHIFT) | 0xffn;

/** A Bare stage counts as a 1 GiB leaf (the reference model's size for an untranslated stage). */
const BARE_SIZE = 1n << 30n;
/** Both stages Bare in a device context: the identity, reported as a 1 GiB PMA translation. */
const identity = (pa: bigint): RiscvTranslation => ({ status: 'success', pa, size: BARE_SIZE, pbmt: 0 });
const UR: RiscvTranslation = Object.freeze({ status: 'unsupported-request' });

/**
 * The guest-visible RISC-V IOMMU (specification 1.0) over an `Iommu`: the guest's driver programs
 * it through its 4 KiB register page (`mmioRead`/`mmioWrite`) and in-memory structures in guest
 * RAM; devices' DMA goes through `translate` / `dmaRead` / `dmaWrite` by device ID.
 * @example
 * ```ts no-run
 * const iommu = await Iommu.create({ ram: { base: 0x8000_0000n, bytes: 64 << 20 } });
 * const riscv = new RiscvIommu(iommu, { onInterrupt: (vector, asserted) => wire(vector, asserted) });
 * riscv.mmioWrite(offset, 8, value);                                // the guest driver's stores
 * const t = riscv.translate(devid, undefined, iova, Access.Read);  // a device's DMA
 * ```
 */
export class RiscvIommu {
  private readonly regs: RegisterPage;
  private readonly mem: GuestMemory;
  private readonly faults: FaultReporter;
  private readonly commands: CommandQueue;
  private readonly directory: DeviceDirectory;
  private readonly caps: bigint;
  private readonly pageRequests: PageRequests;
  private readonly invalidations: PendingInvalidations;

  /** @throws IommuError EINVAL: a capability this model cannot honour, a bad `fctl`, a device of another Iommu. */
  constructor(
    /** The engine whose guest RAM holds the guest's tables and queues. */
    readonly iommu: Iommu,
    opts: RiscvIommuOptions = {},
  ) {
    const op = 'RiscvIommu';
    if (!(iommu instanceof Iommu)) throw new IommuError('EINVAL', op, 'iommu: expected an Iommu');
    if (typeof opts !== 'object' || opts === null) throw new IommuError('EINVAL', op, 'options: expected an object');
    const unknown = Object.keys(opts).find((k) => !['capabilities', 'fctl', 'onInterrupt'].includes(k));
    if (unknown !== undefined) throw new IommuError('EOPNOTSUPP', op, `unknown option '${unknown}'`);
    const caps = opts.capabilities ?? DEFAULT_CAPABILITIES;
    if (typeof caps !== 'bigint' || caps < 0n || (caps & ~SUPPORTED) !== 0n) throw new IommuError('EINVAL', op, `capabilities: unsupported bits 0x${typeof caps === 'bigint' ? (caps & ~SUPPORTED).toString(16) : String(caps)}`);
    if (bits(caps, 29, 28) !== IGS_WSI) throw new IommuError('EINVAL', op, 'capabilities.IGS: only wired interrupts (IGS = 1) are modelled');
    const pas = Number(bits(caps, 37, 32));
    if (pas < 32 || pas > 56) throw new IommuError('EINVAL', op, `capabilities.PAS: expected 32..56, got ${pas}`);
    if ((caps & CAP.Sv39) === 0n) throw new IommuError('EINVAL', op, 'capabilities: Sv39 is mandatory');
    const fctl = opts.fctl ?? FCTL_WSI;
    if (fctl !== 0 && fctl !== FCTL_WSI) throw new IommuError('EINVAL', op, `fctl: expected 0 or 2, got ${String(fctl)}`);
    if (opts.onInterrupt !== undefined && typeof opts.onInterrupt !== 'function') throw new IommuError('EINVAL', op, 'onInterrupt: expected a function');
    this.caps = caps;
    this.mem = new GuestMemory(iommu, pas);
    // MSI mode (fctl.WSI = 0, which the reference model accepts even with IGS = WSI): msi_cfg_tbl
    // is absent and reads 0, so a message is a 32-bit store of 0 at address 0, as the reference model
    // makes it; a store that faults is cause 273 (TTYP 0, iotval = the address).
    const message = (fctl & FCTL_WSI) === 0 ? () => this.sendMessage(0n, 0) : undefined;
    this.regs = new RegisterPage(caps, fctl, pas, (fctl & FCTL_WSI) !== 0 ? opts.onInterrupt : undefined, message, {
      ddtpChanged: () => {
        this.invalidations.flush();
        this.directory.invalidate(undefined, this.shape());
      },
      commandsReady: () => this.commands.run(),
    });
    this.faults = new FaultReporter(this.regs, this.mem);
    const ats = (caps & CAP.ATS) !== 0n;
    this.directory = new DeviceDirectory(iommu, iommu.open(), this.mem, { svpbmt: (caps & CAP.Svpbmt) !== 0n }, { capabilities: caps, fctl }, ats);
    this.pageRequests = new PageRequests(this.directory, new PageRequestQueue(this.regs, this.mem));
    this.invalidations = new PendingInvalidations(this.directory.fd);
    this.commands = new CommandQueue(this.regs, this.mem, {
      ordered: () => this.invalidations.flush(),
      invalidateVma: (gv, gscid, pscv, pscid, addr) => {
        for (const s of this.directory.spaces) if (vmaMatches(s, gv, gscid, pscv, pscid)) this.invalidateSpace(s.hwptId, addr);
      },
      invalidateGvma: (gscid) => {
        for (const s of this.directory.spaces) if (s.gv && (gscid === undefined || s.gscid === gscid)) this.invalidateSpace(s.parentId!, undefined);
      },
      invalidateDdt: (did) => this.directory.invalidate(did, this.shape()),
      invalidatePdt: (did, pid) => this.directory.invalidateProcess(did, pid),
      pageResponse: (devid, _pid, payload) => this.pageRequests.answer(devid, payload),
    });
  }

  /** A register read of `size` (4 or 8) bytes at `offset` in the 4 KiB page. */
  mmioRead(offset: number, size: number): bigint {
    checkMmio('mmioRead', offset, size, 0n);
    return this.regs.read(offset, size);
  }

  /** A register write; commands run before it returns when it writes `cqt`. */
  mmioWrite(offset: number, size: number, value: bigint | number): void {
    checkMmio('mmioWrite', offset, size, value);
    this.regs.write(offset, size, value);
  }

  /**
   * An inbound untranslated request of `devid` (24-bit device_id), with process_id `pid` when it
   * carries a PASID, for `access` (ioasid's `Access` bits; Priv counts only with a `pid`).
   * A fault is a value (and a fault record), never an exception.
   * @throws IommuError EINVAL only for arguments of the wrong type or range.
   */
  translate(devid: number, pid: number | undefined, iova: bigint | number, access: Access): RiscvTranslation {
    checkRequest('translate', devid, pid, iova, access);
    this.invalidations.flush(); // a request is ordered after every command the guest has sent
    const va = BigInt(iova);
    const exec = (access & Access.Exec) !== 0;
    const write = !exec && (access & Access.Write) !== 0;
    const priv = pid !== undefined && (access & Access.Priv) !== 0;
    const rec: FaultRecord = {
      cause: 0, ttyp: exec ? TTYP_UNTRANSLATED_EXEC : write ? TTYP_UNTRANSLATED_WRITE : TTYP_UNTRANSLATED_READ,
      did: devid, pid, priv, iotval: va, iotval2: 0n,
    };
    const fault = (cause: number, dtf: boolean, iotval2 = 0n): RiscvTranslation => {
      rec.cause = cause;
      rec.iotval2 = iotval2;
      this.faults.report(rec, dtf);
      return UR;
    };
    const mode = this.regs.ddtMode;
    if (mode === DDTP_OFF) return fault(CAUSE.allDisallowed, false);
    // ddtp Bare: no translation at all (the reference model reports a 4 KiB PMA page).
    if (mode === DDTP_BARE) return { status: 'success', pa: va, size: 4096n, pbmt: 0 };
    const shape = this.shape()!;
    if (!deviceIdFits(shape, devid)) return fault(CAUSE.ttypDisallowed, false);
    const found = this.resolve(devid, rec, exec, write, shape);
    if (typeof found === 'number') return fault(found, false);
    if ('cause' in found) return fault(found.cause, found.dtf, found.iotval2);
    const { target, rid, dtf } = found;
    if (target.kind === 'identity') return identity(va);
    const t = this.iommu.translate(rid, target.pasid, va, (exec ? Access.Exec : write ? Access.Write : Access.Read) | (priv ? Access.Priv : 0));
    if (t.ok) {
      // One stage Bare: it counts as a 1 GiB leaf in the minimum of the two stages' sizes.
      const oneStage = !target.space.gv || !target.space.pscv;
      return { status: 'success', pa: t.phys, size: oneStage && t.size > BARE_SIZE ? BARE_SIZE : t.size, pbmt: t.pbmt ?? 0 };
    }
    // A PRI device's recoverable fault became a page request (no fault record): queue it.
    if (t.fault!.pageRequest) {
      this.pageRequests.forward();
      return UR;
    }
    const c = faultCause(t.fault!, exec, write);
    return fault(c.cause, dtf, c.iotval2);
  }

  /**
   * Device-side DMA read by `devid` (and `pid`) into `dst` from `[iova, +dst.length)`: translated
   * leaf by leaf as untranslated requests (faults are reported like `translate`'s), copied from
   * guest RAM, stopped at the first fault. An output outside guest RAM (or across the end of a RAM
   * window) is a completer abort.
   */
  dmaRead(devid: number, pid: number | undefined, iova: bigint | number, dst: Uint8Array): RiscvDmaResult {
    return this.dma('dmaRead', devid, pid, iova, dst, false);
  }

  /** Device-side DMA write of `src` to `[iova, +src.length)`; see `dmaRead`. */
  dmaWrite(devid: number, pid: number | undefined, iova: bigint | number, src: Uint8Array): RiscvDmaResult {
    return this.dma('dmaWrite', devid, pid, iova, src, true);
  }

  private dma(op: string, devid: number, pid: number | undefined, iova: bigint | number, data: Uint8Array, toRam: boolean): RiscvDmaResult {
    checkRequest(op, devid, pid, iova, toRam ? Access.Write : Access.Read);
    if (!(data instanceof Uint8Array)) throw new IommuError('EINVAL', op, 'data: expected a Uint8Array');
    let done = 0;
    const start = BigInt(iova);
    while (done < data.length) {
      const at = start + BigInt(done);
      if (at >= 1n << 64n) return { bytes: done, status: 'unsupported-request' };
      const t = this.translate(devid, pid, at, toRam ? Access.Write : Access.Read);
      if (t.status !== 'success') return { bytes: done, status: t.status };
      const size = t.size ?? 4096n;
      const room = Number(size - (t.pa! % size));
      const chunk = Math.min(data.length - done, room);
      const offset = this.mem.offsetOf(t.pa!, chunk);
      if (offset < 0) return { bytes: done, status: 'completer-abort' };
      const ram = this.mem.bytes();
      if (toRam) ram.set(data.subarray(done, done + chunk), offset);
      else data.set(ram.subarray(offset, offset + chunk), done);
      done += chunk;
    }
    return { bytes: done, status: 'success' };
  }

  /** The context a request of (`devid`, `pid`) is translated by, or why there is none. */
  private resolve(devid: number, rec: FaultRecord, exec: boolean, write: boolean, shape: DdtShape): { target: Target; rid: number; dtf: boolean } | (PdtFault & { dtf: boolean }) | number {
    let dev: LoadedDevice | number;
    try {
      dev = this.directory.load(devid, shape);
    } catch (e) {
      return this.pressure(e);
    }
    if (typeof dev === 'number') return dev;
    const dc = dev.dc;
    const rid = dev.binding.rid;
    const inDc = (cause: number) => ({ cause, iotval2: 0n, dtf: dc.dtf });
    const pid = rec.pid;
    const priv = rec.priv;
    if (pid !== undefined && !dc.pdtv) return inDc(CAUSE.ttypDisallowed);
    if (dc.pdtv && pid !== undefined && (dc.fscMode === 1 || dc.fscMode === 2) && pid >= 2 ** processIdBits(dc.fscMode)) return inDc(CAUSE.ttypDisallowed);
    const effPid = pid ?? (dc.pdtv && dc.dpe ? 0 : undefined);
    try {
      if (!dc.pdtv || effPid === undefined || dc.fscMode === 0) return { target: dev.ridTargetFor(), rid, dtf: dc.dtf };
      let proc = dev.processes.get(effPid);
      if (!proc?.cached) {
        const pc = walkPdt(this.mem, dc.fscMode, dc.fscRoot, effPid, this.caps, (gpa) => {
          const t = (dev as LoadedDevice).translateGpa(gpa);
          if (t === undefined) return gpa;
          if (t.ok) return t.phys;
          if (t.fault!.reason === 'outside-ram') return { cause: CAUSE.pdtLoadAccess, iotval2: 0n };
          return { cause: guestPageCause(exec, write), iotval2: (gpa & ~3n) | 1n };
        });
        if ('cause' in pc) return { ...pc, dtf: dc.dtf };
        proc = dev.loadProcess(effPid, pc);
      }
      if (priv && !proc.pc.ens) return inDc(CAUSE.ttypDisallowed);
      return { target: proc.target, rid, dtf: dc.dtf };
    } catch (e) {
      return this.pressure(e);
    }
  }

  /**
   * An ioasid call failed while realising a context (ENOMEM, ENOSPC: out of HWPTs or PASIDs):
   * drop every loaded context (always legal: they are caches) and report an internal error.
   */
  private pressure(e: unknown): number {
    if (!(e instanceof IommuError)) throw e;
    this.directory.unloadAll();
    return CAUSE.internalError;
  }

  private sendMessage(addr: bigint, data: number): void {
    if (!this.mem.write32(addr, data)) this.faults.report({ cause: CAUSE.msiWriteAccess, ttyp: 0, did: 0, priv: false, iotval: addr, iotval2: 0n }, false);
  }

  private invalidateSpace(hwptId: number, addr: bigint | number | undefined): void {
    if (addr === undefined) this.invalidations.all(hwptId);
    else this.invalidations.page(hwptId, addr);
  }

  /** The DDT's shape, when `ddtp` is in a DDT mode. */
  private shape(): DdtShape | undefined {
    const mode = this.regs.ddtMode;
    if (mode <= DDTP_BARE) return undefined;
    return { mode, root: this.regs.ddtPpn << 12n, extended: (this.caps & CAP.MSI_FLAT) !== 0n };
  }
}
