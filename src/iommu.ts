/**
 * Iommu: one emulated IOMMU. The platform side adds devices (handing out their device FDs), users
 * open ioasid FDs, and the hardware side translates DMA. The thread that creates it is the owner:
 * only it changes state; any number of workers translate concurrently through `Translator`.
 * @module
 */
import * as abi from '../assembly/abi';
import { int, options, describe, u64 } from './args';
import { Batch, batchPages } from './batch';
import { Core, coreModule, coreModuleAsync } from './core';
import { DeviceFd } from './device';
import type { DmaResult } from './dma';
import { Engine } from './engine';
import { fail } from './errno';
import type { FaultLog } from './fault-log';
import type { IoRange } from './io-pagetable';
import { drainPageRequests } from './fault-queue';
import { IommuFd } from './iommufd';
import { ridOfBdf } from './bdf';
import { parseLimits, type FdLimits } from './fd-limits';
import { computeLayout, writeControlBlock, type Layout } from './layout';
import { RamWindow } from './ram-window';
import { registerEngine } from './testing';
import { readSnapshot, restoring, takeSnapshot, type RestoreOptions, type RestoredObjects, type SnapshotReader } from './snapshot/index';
import { Translator, readSlotStats, type TranslatorHandle, type TranslatorStats } from './translator';
import type { Translation, TranslationOut } from './translation';

export interface IommuOptions {
  /** IOVA width of engine-managed tables: 39, 48 (default) or 57 bits (3, 4 or 5 levels). */
  addressWidth?: 39 | 48 | 57;
  /** PASID width of the IOMMU (default 20). */
  pasidBits?: number;
  /** IOTLB entries per translator (power of two, default 4096). */
  iotlbEntries?: number;
  /** Upper bound of the engine memory, page tables included (default 1 GiB, at most 4 GiB). */
  maxMemoryBytes?: number;
  /** Use a shared WebAssembly.Memory so workers can translate (default: when SharedArrayBuffer is usable). */
  shared?: boolean;
  /** Guest RAM inside the engine memory: `bytes` at guest-physical `base` (see `Iommu.ram`). */
  ram?: { base: bigint | number; bytes: number };
  /** Translator slots, the owner's included (default 8). */
  translators?: number;
  /** Engine-managed domains (HWPTs) that can exist at once (default 4096). */
  maxDomains?: number;
}

/** Arguments of `Iommu.addDevice`. */
export interface DeviceOptions {
  /** PCI address `dddd:bb:dd.f` or `bb:dd.f`. */
  bdf: string;
  /** PASID width; 0 = no PASID support (default: the IOMMU's). */
  pasidBits?: number;
  /** Page Request Interface support. */
  pri?: boolean;
  /** Dirty-tracking support. */
  dirty?: boolean;
  /** IOVA ranges the device cannot use (e.g. an MSI window); reserved in an IOAS while its RID is attached. */
  reservedRegions?: IoRange[];
}

const OPTION_KEYS = ['addressWidth', 'pasidBits', 'iotlbEntries', 'maxMemoryBytes', 'shared', 'ram', 'translators', 'maxDomains'] as const;
const DEVICE_KEYS = ['bdf', 'pasidBits', 'pri', 'dirty', 'reservedRegions'] as const;

/** Why the engine is single-threaded, or undefined when workers can share its memory. */
export function sharedMemoryUnavailableReason(): string | undefined {
  const g = globalThis as { crossOriginIsolated?: boolean; SharedArrayBuffer?: unknown };
  // Browsers hide SharedArrayBuffer on pages that are not cross-origin isolated: name the cause.
  if (g.crossOriginIsolated === false) return 'the page is not cross-origin isolated (serve it with COOP/COEP headers)';
  if (typeof g.SharedArrayBuffer !== 'function') return 'SharedArrayBuffer is not available';
  return undefined;
}

interface Resolved {
  addressWidth: number;
  pasidBits: number;
  shared: boolean;
  layout: Layout;
  ramBase: bigint;
}

function resolve(opts: unknown): Resolved {
  const op = 'Iommu.create';
  const o = options(op, opts, OPTION_KEYS);
  const addressWidth = o.addressWidth === undefined ? 48 : int(op, 'addressWidth', o.addressWidth, 39, 57);
  if (![39, 48, 57].includes(addressWidth)) fail('EINVAL', op, `addressWidth: expected 39, 48 or 57, got ${addressWidth}`);
  const pasidBits = o.pasidBits === undefined ? abi.PASID_BITS : int(op, 'pasidBits', o.pasidBits, 0, abi.PASID_BITS);
  const iotlbEntries = o.iotlbEntries === undefined ? 4096 : int(op, 'iotlbEntries', o.iotlbEntries, 2, 1 << 20);
  if (iotlbEntries & (iotlbEntries - 1)) fail('EINVAL', op, `iotlbEntries: expected a power of two, got ${iotlbEntries}`);
  const maxMemoryBytes = o.maxMemoryBytes === undefined ? 2 ** 30 : int(op, 'maxMemoryBytes', o.maxMemoryBytes, 2 ** 20, 2 ** 32);
  const translators = o.translators === undefined ? 8 : int(op, 'translators', o.translators, 1, 256);
  const maxDomains = o.maxDomains === undefined ? 4096 : int(op, 'maxDomains', o.maxDomains, 2, 1 << 20);
  let ramBytes = 0;
  let ramBase = 0n;
  if (o.ram !== undefined) {
    const r = options(op, o.ram, ['base', 'bytes'] as const);
    ramBytes = int(op, 'ram.bytes', r.bytes, abi.PAGE_SIZE, 2 ** 31);
    if (ramBytes % abi.PAGE_SIZE) fail('EINVAL', op, `ram.bytes: expected a multiple of ${abi.PAGE_SIZE}, got ${ramBytes}`);
    if (typeof r.base !== 'bigint' && !Number.isSafeInteger(r.base)) fail('EINVAL', op, `ram.base: expected an integer, got ${describe(r.base)}`);
    ramBase = BigInt(r.base as number | bigint);
    if (ramBase < 0n || ramBase % BigInt(abi.PAGE_SIZE) !== 0n) fail('EINVAL', op, 'ram.base: expected a page-aligned address');
    // Page tables may sit anywhere below 2^64 (RISC-V: 56-bit physical addresses); software DMA
    // (number addresses) reaches the window only when it ends below 2^53 (RamWindow).
    if (ramBase + BigInt(ramBytes) > 1n << 64n) fail('EINVAL', op, 'ram: expected the window to end below 2^64');
  }
  const unavailable = sharedMemoryUnavailableReason();
  let shared = unavailable === undefined;
  if (o.shared !== undefined) {
    if (typeof o.shared !== 'boolean') fail('EINVAL', op, `shared: expected a boolean, got ${describe(o.shared)}`);
    if (o.shared && unavailable) fail('EOPNOTSUPP', op, `shared memory requested but ${unavailable}`);
    shared = o.shared;
  }
  const layout = computeLayout({ translators, iotlbEntries, maxDomains, maxMemoryBytes, ramBytes });
  if (layout.initialPages >= layout.maximumPages) fail('EINVAL', op, `maxMemoryBytes ${maxMemoryBytes} is too small for this configuration`);
  return { addressWidth, pasidBits, shared, layout, ramBase };
}

/** What `Iommu.restore` returns: the engine and its objects, by the names an emulator re-wires them with. */
export interface Restored extends RestoredObjects {
  iommu: Iommu;
}

export class Iommu {
  private readonly engine: Engine;
  private readonly local: Translator;
  private readonly module: WebAssembly.Module;
  /** Guest-physical base of `ram`. */
  readonly ramBase: bigint;

  /** @param image fills the new memory from a snapshot instead of a fresh control block. */
  private constructor(module: WebAssembly.Module, r: Resolved, image?: (memory: WebAssembly.Memory) => void) {
    const memory = new WebAssembly.Memory({ initial: r.layout.initialPages, maximum: r.layout.maximumPages, shared: r.shared });
    if (image) image(memory);
    else writeControlBlock(memory, r.layout, r.ramBase);
    const core = new Core(module, memory, 0);
    this.module = module;
    const ram = new RamWindow(r.ramBase, r.layout.ram, r.layout.ramBytes);
    this.engine = new Engine(core, r.layout, r.addressWidth, r.pasidBits, r.shared, ram);
    this.local = new Translator(core, undefined, ram);
    this.ramBase = r.ramBase;
    registerEngine(this, this.engine);
  }

  /** Creates an engine (compiles the core asynchronously on first use). @throws EINVAL, EOPNOTSUPP bad options. */
  static async create(opts?: IommuOptions): Promise<Iommu> {
    const r = resolve(opts);
    return new Iommu(await coreModuleAsync(r.shared), r);
  }

  /** Creates an engine synchronously. @throws EINVAL, EOPNOTSUPP bad options. */
  static createSync(opts?: IommuOptions): Iommu {
    const r = resolve(opts);
    return new Iommu(coreModule(r.shared), r);
  }

  /**
   * Restores an engine saved by `snapshot()`: same options, objects, IDs and ID allocators, tables,
   * attachments, PASIDs, fault queues, accesses, devices and memory (guest RAM included), in new
   * objects independent of the original; cold IOTLBs, no workers. See `RestoreOptions` for `shared`
   * and the `onUnmap` callbacks of pinning accesses, and `Restored` for re-wiring an emulator.
   * @throws EINVAL anything wrong with `bytes` (not a snapshot, corrupt, truncated, another format or
   * core ABI version) or `opts`; EOPNOTSUPP `shared: true` without SharedArrayBuffer; ENOMEM no
   * memory for the engine. Never anything but an `IommuError`, never a half-built engine.
   */
  static restore(bytes: Uint8Array, opts?: RestoreOptions): Restored {
    return restoring(() => {
      const s = readSnapshot(bytes, opts);
      const r = resolve(s.options);
      return Iommu.fromSnapshot(coreModule(r.shared), r, s);
    });
  }

  /** `restore`, compiling the core asynchronously on first use. @throws (rejects with) as `restore`. */
  static async restoreAsync(bytes: Uint8Array, opts?: RestoreOptions): Promise<Restored> {
    const [s, r] = restoring(() => {
      const s = readSnapshot(bytes, opts);
      return [s, resolve(s.options)] as const;
    });
    const module = await coreModuleAsync(r.shared);
    return restoring(() => Iommu.fromSnapshot(module, r, s));
  }

  private static fromSnapshot(module: WebAssembly.Module, r: Resolved, s: SnapshotReader): Restored {
    const iommu = new Iommu(module, r, (memory) => s.loadImage(memory, r.layout, r.ramBase));
    return { iommu, ...s.rebuild(iommu.engine) };
  }

  /**
   * Saves the whole engine (see `Iommu.restore`) as bytes: a versioned, checksummed container of
   * the options, the object graph and the memory up to the page pool's top (all-zero pages, IOTLBs
   * and worker slots left out). Call it on the owner thread between control calls; workers may keep
   * translating: they change only A/D bits, guest RAM and page requests, which the snapshot may or
   * may not include. Page requests already raised are moved into their fault queues first.
   * @throws EOPNOTSUPP the engine holds an object this version cannot save.
   */
  snapshot(): Uint8Array {
    return takeSnapshot(this.engine, this.ramBase);
  }

  /** True when workers can translate over this engine's memory. */
  get shared(): boolean {
    return this.engine.shared;
  }

  get addressWidth(): number {
    return this.engine.addressWidth;
  }

  /** The engine memory, for emulators that place their own structures in it. */
  get memory(): WebAssembly.Memory {
    return this.engine.core.memory;
  }

  /** Guest RAM inside the engine memory (empty when not configured); zero-copy. */
  get ram(): Uint8Array {
    const l = this.engine.layout;
    return new Uint8Array(this.engine.core.memory.buffer, l.ram, l.ramBytes);
  }

  /** Faults of the owner thread's per-call translations. */
  get faults(): FaultLog {
    return this.local.faults;
  }

  /**
   * Adds a PCI function behind this IOMMU and returns its device FD (DMA blocked until attached).
   * @throws EINVAL bad BDF or options; EOVERFLOW a reserved region address ≥ 2^64; EEXIST RID
   * already present; ENOMEM.
   */
  addDevice(opts: DeviceOptions): DeviceFd {
    const op = 'addDevice';
    const o = options(op, opts, DEVICE_KEYS);
    const rid = ridOfBdf(op, o.bdf);
    const bdf = o.bdf as string;
    const pasidBits = o.pasidBits === undefined ? this.engine.pasidBits : int(op, 'pasidBits', o.pasidBits, 0, this.engine.pasidBits);
    const flagOf = (name: string, v: unknown): boolean => {
      if (v === undefined) return false;
      if (typeof v !== 'boolean') fail('EINVAL', op, `${name}: expected a boolean, got ${describe(v)}`);
      return v;
    };
    const pri = flagOf('pri', o.pri);
    const dirty = flagOf('dirty', o.dirty);
    const reservedRegions = this.regions(op, o.reservedRegions);
    if (this.engine.devices.has(rid)) fail('EEXIST', op, `requester ID ${rid.toString(16)} (${bdf}) is already present`);
    if (this.engine.failPoint()) fail('ENOMEM', op, 'device table allocation failed (injected)');
    this.engine.check(op, this.engine.core.exports.deviceAdd(rid, pasidBits), 'device context');
    if (pri) this.engine.core.exports.deviceSetPri(rid, 1);
    this.engine.core.sync();
    const dev = new DeviceFd(this.engine, { bdf: bdf.toLowerCase(), rid, pasidBits, pri, dirty, reservedRegions });
    this.engine.devices.set(rid, dev);
    return dev;
  }

  private regions(op: string, value: unknown): IoRange[] {
    if (value === undefined) return [];
    if (!Array.isArray(value)) return fail('EINVAL', op, 'reservedRegions: expected an array of { start, last }');
    return value.map((r: unknown, i) => {
      const o = options(op, r, ['start', 'last'] as const);
      // Addresses follow args.ts: a wrong type or a negative is EINVAL, a value ≥ 2^64 EOVERFLOW.
      const start = u64(op, `reservedRegions[${i}].start`, o.start);
      const last = u64(op, `reservedRegions[${i}].last`, o.last);
      if (last < start) fail('EINVAL', op, `reservedRegions[${i}]: expected start ≤ last, got [0x${start.toString(16)}, 0x${last.toString(16)}]`);
      return { start, last };
    });
  }

  /**
   * Opens an ioasid FD. `limits` caps what this FD alone may hold at once (src/fd-limits.ts):
   * `pasids` (then ENOSPC), `domains` — HWPTs of any kind, auto ones included (then ENOSPC) — and
   * `pages` of page tables of its engine-managed HWPTs (then ENOMEM).
   * @throws EINVAL a limit that is not an integer in [0, 2^31-1]; EOPNOTSUPP an unknown option.
   */
  open(opts?: { limits?: FdLimits }): IommuFd {
    const op = 'open';
    const o = options(op, opts, ['limits'] as const);
    return new IommuFd(this.engine, parseLimits(op, o.limits));
  }

  /** Translates one DMA request on the owner thread. Never throws; a fault is a value. */
  translate(rid: number, pasid: number, iova: number | bigint, access: number): Translation {
    return this.local.translate(rid, pasid, iova, access);
  }

  /** Allocation-free `translate`. */
  translateInto(out: TranslationOut, rid: number, pasid: number, iova: number | bigint, access: number): TranslationOut {
    return this.local.translateInto(out, rid, pasid, iova, access);
  }

  /**
   * Device-side DMA read into `dst` from `[iova, +dst.length)` as `rid`/`pasid`: translated leaf by
   * leaf, copied from `ram`, stopped at the first fault. Never throws.
   */
  dmaRead(rid: number, pasid: number, iova: number | bigint, dst: Uint8Array): DmaResult {
    return this.local.dmaRead(rid, pasid, iova, dst);
  }

  /** Device-side DMA write of `src` to `[iova, +src.length)`; stopped at the first fault. Never throws. */
  dmaWrite(rid: number, pasid: number, iova: number | bigint, src: Uint8Array): DmaResult {
    return this.local.dmaWrite(rid, pasid, iova, src);
  }

  /**
   * A batch of `capacity` requests translated on the owner thread, in engine memory until
   * `batch.release()` gives it back. @throws EINVAL, ENOMEM.
   */
  batch(capacity: number): Batch {
    const op = 'batch';
    const n = int(op, 'capacity', capacity, 1, 1 << 20);
    const pages = batchPages(n);
    const ptr = this.allocBuffer(op, pages);
    const engine = this.engine;
    engine.batchBuffers.set(ptr, pages);
    return new Batch(engine.core, n, ptr, ptr + n * abi.REQ_SIZE, () => {
      engine.batchBuffers.delete(ptr);
      engine.core.exports.bufferFree(ptr, pages);
    });
  }

  /**
   * Reserves a translator slot (own IOTLB and counters) and a batch ring for a worker.
   * Post the handle to the worker and call `Translator.attach(handle)` there.
   * @throws EOPNOTSUPP memory not shared; ENOSPC no free slot; ENOMEM.
   */
  translatorHandle(opts?: { batchCapacity?: number }): TranslatorHandle {
    const op = 'translatorHandle';
    const o = options(op, opts, ['batchCapacity'] as const);
    if (!this.engine.shared) fail('EOPNOTSUPP', op, `the engine memory is not shared (${sharedMemoryUnavailableReason() ?? 'created with shared: false'})`);
    const capacity = o.batchCapacity === undefined ? 4096 : int(op, 'batchCapacity', o.batchCapacity, 1, 1 << 20);
    let slot = 1;
    while (this.engine.slotsInUse.has(slot)) slot++;
    if (slot >= this.engine.layout.slotCount) fail('ENOSPC', op, `all ${this.engine.layout.slotCount - 1} worker translator slots are in use (option translators)`);
    const ptr = this.allocBuffer(op, batchPages(capacity));
    this.engine.slotsInUse.add(slot);
    this.engine.translatorRings.set(slot, { ptr, pages: batchPages(capacity) });
    const l = this.engine.layout;
    return {
      module: this.module, memory: this.engine.core.memory, slot,
      batch: { capacity, requestPtr: ptr, resultPtr: ptr + capacity * abi.REQ_SIZE },
      ram: { offset: l.ram, bytes: l.ramBytes, base: this.ramBase },
    };
  }

  /**
   * Returns a worker's translator slot and batch ring for reuse. Call it once the worker has
   * stopped translating with `handle` (e.g. after it exited); the slot's IOTLB is dropped.
   * @throws EINVAL not a live handle of this engine.
   */
  translatorRelease(handle: TranslatorHandle): void {
    const op = 'translatorRelease';
    if (typeof handle !== 'object' || handle === null || handle.memory !== this.engine.core.memory || this.engine.translatorRings.get(handle.slot)?.ptr !== handle.batch?.requestPtr) {
      fail('EINVAL', op, 'expected a live translator handle of this engine');
    }
    // Page requests the worker raised and the owner has not drained yet live in the slot's ring,
    // which is cleared below: move them into their fault queues first, so each is answered.
    drainPageRequests(this.engine);
    const core = this.engine.core;
    const l = this.engine.layout;
    // A reused slot starts with an empty IOTLB and zero counters (the stats of released slots are dropped).
    core.u8.fill(0, l.slots + handle.slot * l.slotSize, l.slots + handle.slot * l.slotSize + abi.SLOT_IOTLB + l.iotlbSets * abi.TLB_SET_SIZE);
    core.exports.bufferFree(handle.batch.requestPtr, batchPages(handle.batch.capacity));
    this.engine.slotsInUse.delete(handle.slot);
    this.engine.translatorRings.delete(handle.slot);
  }

  /** Counters summed over the owner and every worker translator. */
  stats(): TranslatorStats & { tablePages: number; memoryBytes: number } {
    const core = this.engine.core;
    core.sync();
    return {
      ...readSlotStats(core, this.engine.slotsInUse),
      tablePages: core.ctrl(abi.CTRL_PAGES_USED),
      memoryBytes: core.memory.buffer.byteLength,
    };
  }

  private allocBuffer(op: string, pages: number): number {
    const ptr = this.engine.core.exports.bufferAlloc(pages);
    this.engine.core.sync();
    if (ptr === 0) fail('ENOMEM', op, 'no room for the buffer in the engine memory (option maxMemoryBytes)');
    return ptr;
  }
}
