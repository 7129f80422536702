/**
 * Iommu: one emulated IOMMU. The platform side adds devices (handing out their device FDs), users
 * open ioasid FDs, and the hardware side translates DMA. The thread that creates it is the owner:
 * only it changes state; any number of workers translate concurrently through `Translator`.
 * @module
 */
import * as abi from '../assembly/abi';
import { flag, int, options } from './base/args';
import { Batch, batchPages } from './dma/batch';
import { Core, coreModule, coreModuleAsync } from './core/core';
import { DeviceFd } from './iommufd/device';
import type { DmaResult } from './dma/dma';
import { Engine as EngineOf } from './engine/engine';
import { registerEngine, type Engine } from './iommufd/fd-state';
import { fail } from './base/errno';
import type { FaultLog } from './dma/fault-log';
import { IommuFd } from './iommufd/iommufd';
import { drainPageRequests } from './iommufd/fault-queue';
import { parseLimits, type FdLimits } from './iommufd/fd-limits';
import { resolveDevice, resolveOptions, sharedMemoryUnavailableReason, type DeviceOptions, type IommuOptions, type ResolvedOptions } from './options';
import { writeControlBlock } from './core/layout';
import { GuestRam } from './core/ram-window';
import { readSnapshot, restoring, takeSnapshot, type RestoreOptions, type RestoredObjects, type SnapshotReader } from './snapshot/index';
import { Translator, readSlotStats, type TranslatorHandle, type TranslatorStats } from './dma/translator';
import type { Access, Translation, TranslationOut } from './dma/translation';

/** What `Iommu.restore` returns: the engine and its objects, by the names an emulator re-wires them with. */
export interface Restored extends RestoredObjects {
  /** The new engine, independent of the one that was saved. */
  iommu: Iommu;
}

/**
 * One emulated IOMMU, owned by one thread (the owner): its engine memory (page tables, IOTLBs, guest
 * RAM), the devices behind it and the ioasid FDs that program it. Only the owner changes state;
 * worker threads translate through their own `Translator` (`translatorHandle()`).
 * @example
 * ```ts no-run
 * import { Iommu, Access, NO_PASID } from 'ioasid';
 * const iommu = await Iommu.create({ ram: { base: 0x8000_0000n, bytes: 64 << 20 } });
 * const nic = iommu.addDevice({ bdf: '0000:03:00.0' });
 * const fd = iommu.open();
 * // ... program fd, bind and attach nic ...
 * const t = iommu.translate(nic.rid, NO_PASID, 0x1000n, Access.Read);
 * ```
 */
export class Iommu {
  private readonly engine: Engine;
  private readonly local: Translator;
  private readonly module: WebAssembly.Module;

  /** @param image fills the new memory from a snapshot instead of a fresh control block. */
  private constructor(module: WebAssembly.Module, r: ResolvedOptions, image?: (memory: WebAssembly.Memory, ram: GuestRam) => void) {
    const l = r.layout;
    const memory = r.memory ?? new WebAssembly.Memory({ initial: l.initialPages, maximum: l.maximumPages, shared: r.shared });
    // The engine's state starts zeroed; an emulator's region may hold anything.
    if (r.memory) new Uint8Array(memory.buffer, l.origin, l.poolLimit - l.origin).fill(0);
    const ram = new GuestRam(r.ram, memory);
    if (image) image(memory, ram);
    else writeControlBlock(memory, l, ram);
    const core = new Core(module, memory, 0, l.ctrl, ram.imports);
    this.module = module;
    this.engine = new EngineOf(core, l, r.addressWidth, r.pasidBits, r.shared, ram, r.memory !== undefined);
    this.local = new Translator(core, undefined, ram);
    registerEngine(this, this.engine);
  }

  /** Guest-physical base of `ram` (0 when there is no guest RAM). */
  get ramBase(): bigint {
    return this.engine.ram.windows[0]?.base ?? 0n;
  }

  /** Creates an engine (compiles the core asynchronously on first use). @throws EINVAL, EOPNOTSUPP bad options. */
  static async create(opts?: IommuOptions): Promise<Iommu> {
    const r = resolveOptions(opts);
    return new Iommu(await coreModuleAsync(r.shared), r);
  }

  /** Creates an engine synchronously. @throws EINVAL, EOPNOTSUPP bad options. */
  static createSync(opts?: IommuOptions): Iommu {
    const r = resolveOptions(opts);
    return new Iommu(coreModule(r.shared), r);
  }

  /**
   * Restores an engine saved by `snapshot()`: same options, objects, IDs and ID allocators, tables,
   * attachments, PASIDs, fault queues, accesses, devices and memory (guest RAM included), in new
   * objects independent of the original; cold IOTLBs, no workers. See `RestoreOptions` for `shared`
   * and the `onUnmap` callbacks of pinning accesses, and `Restored` for re-wiring an emulator.
   * An engine that lived in an emulator's memory is restored into the same region of the memory
   * given back as `memory` (whose region it overwrites, even when the restore then fails), and RAM
   * windows that were buffers read from the buffers given back as `ram`.
   * @throws EINVAL anything wrong with `bytes` (not a snapshot, corrupt, truncated, another format or
   * core ABI version) or `opts`; EOPNOTSUPP `shared: true` without SharedArrayBuffer; ENOMEM no
   * memory for the engine. Never anything but an `IommuError`, never a half-built engine.
   */
  static restore(bytes: Uint8Array, opts?: RestoreOptions): Restored {
    return restoring(() => {
      const s = readSnapshot(bytes, opts);
      const r = resolveOptions(s.options);
      return Iommu.fromSnapshot(coreModule(r.shared), r, s);
    });
  }

  /** `restore`, compiling the core asynchronously on first use. @throws (rejects with) as `restore`. */
  static async restoreAsync(bytes: Uint8Array, opts?: RestoreOptions): Promise<Restored> {
    const [s, r] = restoring(() => {
      const s = readSnapshot(bytes, opts);
      return [s, resolveOptions(s.options)] as const;
    });
    const module = await coreModuleAsync(r.shared);
    return restoring(() => Iommu.fromSnapshot(module, r, s));
  }

  private static fromSnapshot(module: WebAssembly.Module, r: ResolvedOptions, s: SnapshotReader): Restored {
    const iommu = new Iommu(module, r, (memory, ram) => s.loadImage(memory, r.layout, ram));
    return { iommu, ...s.rebuild(iommu.engine) };
  }

  /**
   * Saves the whole engine (see `Iommu.restore`) as bytes: a versioned, checksummed container of
   * the options, the object graph and the memory up to the page pool's top (all-zero pages, IOTLBs
   * and worker slots left out). Call it on the owner thread between control calls; workers may keep
   * translating: they change only A/D bits, guest RAM and page requests, which the snapshot may or
   * may not include. Page requests already raised are moved into their fault queues first.
   * `{ ram: false }` leaves guest RAM out (emulators that save their RAM themselves): the restored
   * engine's own RAM windows start zeroed, and windows in the emulator's memory or buffers are not
   * written by restore.
   * @throws EINVAL bad options; EOPNOTSUPP the engine holds an object this version cannot save.
   */
  snapshot(opts?: { ram?: boolean }): Uint8Array {
    const o = options('snapshot', opts, ['ram'] as const);
    return takeSnapshot(this.engine, flag('snapshot', 'ram', o.ram, true));
  }

  /** True when workers can translate over this engine's memory. */
  get shared(): boolean {
    return this.engine.shared;
  }

  /** The IOVA width of engine-managed tables: 39, 48 or 57 bits (3, 4 or 5 levels). */
  get addressWidth(): number {
    return this.engine.addressWidth;
  }

  /** The engine memory, for emulators that place their own structures in it. */
  get memory(): WebAssembly.Memory {
    return this.engine.core.memory;
  }

  /**
   * The guest RAM window with the lowest base (empty when there is none), zero-copy; all of them
   * are `ramWindows()`. Validity: every read of this getter returns a live view, but a view you
   * keep is detached (length 0, writes through it vanish) when an unshared engine memory grows —
   * table allocation (map, HWPT and device creation, batches) may grow it. Re-read `iommu.ram`
   * after such calls, or use RAM that never moves: `shared: true` (a shared memory's old views stay
   * valid), a window in a buffer you own (`ram: [{ base, buffer, bytes }]`) or in your own memory
   * (`memory`, `region`).
   */
  get ram(): Uint8Array {
    return this.local.ram;
  }

  /** Every guest RAM window, by base, each as a fresh zero-copy view (see `ram` for validity). */
  ramWindows(): {
    /** Guest-physical address of the window's first byte. */
    base: bigint;
    /** The window's bytes (a live view, as `ram`). */
    bytes: Uint8Array;
  }[] {
    const ram = this.engine.ram;
    return ram.windows.map((w, i) => ({ base: w.base, bytes: ram.view(i) }));
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
    const { bdf, rid, pasidBits, pri, dirty, reservedRegions } = resolveDevice(op, opts, this.engine.pasidBits);
    if (this.engine.devices.has(rid)) fail('EEXIST', op, `requester ID ${rid.toString(16)} (${bdf}) is already present`);
    this.engine.deviceAdd(op, rid, pasidBits, pri);
    const dev = new DeviceFd(this.engine, { bdf, rid, pasidBits, pri, dirty, reservedRegions });
    this.engine.devices.set(rid, dev);
    return dev;
  }

  /**
   * The device with requester ID `rid` (bus << 8 | device << 3 | function), or undefined: how a
   * vIOMMU model finds the endpoint a guest request names (virtio-iommu's endpoint ID is the RID).
   */
  device(rid: number): DeviceFd | undefined {
    return this.engine.devices.get(rid);
  }

  /** Every device added to this IOMMU, in requester-ID order. */
  devices(): DeviceFd[] {
    return [...this.engine.devices.values()].sort((a, b) => a.rid - b.rid);
  }

  /**
   * Opens an ioasid FD. `limits` caps what this FD alone may hold at once (src/iommufd/fd-limits.ts):
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
  translate(rid: number, pasid: number, iova: number | bigint, access: Access): Translation {
    return this.local.translate(rid, pasid, iova, access);
  }

  /** Allocation-free `translate`. */
  translateInto(out: TranslationOut, rid: number, pasid: number, iova: number | bigint, access: Access): TranslationOut {
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
      engine.bufferFree(ptr, pages);
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
    // A worker would get a copy of an unshared buffer: its walks and DMA would miss the guest's.
    if (this.engine.ram.windows.some((w) => w.buffer && !(typeof SharedArrayBuffer === 'function' && w.buffer instanceof SharedArrayBuffer))) {
      fail('EOPNOTSUPP', op, 'a guest RAM window is an ArrayBuffer, which workers cannot share (use a SharedArrayBuffer)');
    }
    const capacity = o.batchCapacity === undefined ? 4096 : int(op, 'batchCapacity', o.batchCapacity, 1, 1 << 20);
    let slot = 1;
    while (this.engine.slotsInUse.has(slot)) slot++;
    if (slot >= this.engine.layout.slotCount) fail('ENOSPC', op, `all ${this.engine.layout.slotCount - 1} worker translator slots are in use (option translators)`);
    const ptr = this.allocBuffer(op, batchPages(capacity));
    this.engine.slotsInUse.add(slot);
    this.engine.translatorRings.set(slot, { ptr, pages: batchPages(capacity) });
    return {
      module: this.module, memory: this.engine.core.memory, slot, ctrl: this.engine.layout.ctrl,
      batch: { capacity, requestPtr: ptr, resultPtr: ptr + capacity * abi.REQ_SIZE },
      ram: this.engine.ram.windows,
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
    // A reused slot starts with empty caches and zero counters (the stats of released slots are dropped).
    core.u8.fill(0, l.slots + handle.slot * l.slotSize, l.slots + handle.slot * l.slotSize + l.slotBytes);
    this.engine.bufferFree(handle.batch.requestPtr, batchPages(handle.batch.capacity));
    this.engine.slotsInUse.delete(handle.slot);
    this.engine.translatorRings.delete(handle.slot);
  }

  /** Counters summed over the owner and every worker translator. */
  stats(): TranslatorStats & {
    /** Page-table pages in use, over every FD (spare tables not included). */
    tablePages: number;
    /**
     * Spare table pages: tables that partial unmaps emptied, kept linked so that later maps nearby
     * reuse them (as Linux keeps them). Released when an unmap covers them wholly, when the pool
     * or an FD's page limit needs them, or when they outnumber max(1024, the other pages in use).
     */
    spareTablePages: number;
    /** The engine memory's size in bytes. */
    memoryBytes: number;
  } {
    const core = this.engine.core;
    core.sync();
    const spare = this.engine.sparePagesAll();
    return {
      ...readSlotStats(core, this.engine.slotsInUse),
      tablePages: core.ctrl(abi.CTRL_PAGES_USED) - spare,
      spareTablePages: spare,
      memoryBytes: core.memory.buffer.byteLength,
    };
  }

  private allocBuffer(op: string, pages: number): number {
    return this.engine.bufferAlloc(op, pages, 'the buffer');
  }
}
