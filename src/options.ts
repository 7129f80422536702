/**
 * The options of `Iommu.create` and `Iommu.addDevice`: their types, defaults and checks, in one
 * place below the facade (src/snapshot/ reads them back from a snapshot header).
 * @module
 */
import * as abi from '../assembly/abi';
import { describe, flag, int, options, u64 } from './base/args';
import { fail } from './base/errno';
import { ridOfBdf } from './base/bdf';
import { computeLayout, type Layout } from './core/layout';
import { placeWindows, resolveRam, type RamWindowOptions } from './core/ram-options';
import type { RamWindowSpec } from './core/ram-window';
import type { DeviceCaps } from './iommufd/device';
import type { IoRange } from './iommufd/io-range';

/** Options of `Iommu.create` (every one optional; README "API" lists the defaults). */
export interface IommuOptions {
  /** IOVA width of engine-managed tables: 39, 48 (default) or 57 bits (3, 4 or 5 levels). */
  addressWidth?: 39 | 48 | 57;
  /** PASID width of the IOMMU (default 20). */
  pasidBits?: number;
  /** IOTLB entries per translator (power of two, default 4096). */
  iotlbEntries?: number;
  /** Upper bound of the engine memory, page tables included (default 1 GiB, at most 4 GiB). Not with `memory`. */
  maxMemoryBytes?: number;
  /**
   * Use a shared WebAssembly.Memory so workers can translate (default: when SharedArrayBuffer is
   * usable). With `memory`, the memory's own kind (and `shared`, if given, must match it).
   */
  shared?: boolean;
  /**
   * Guest RAM: one window or a list of disjoint windows, each `bytes` at guest-physical `base`.
   * A window without `offset`/`buffer` is allocated in the engine memory; `{ offset }` is a window
   * at that offset of `memory`; `{ buffer, offset? }` one in a buffer the engine does not own
   * (walks and DMA reach it through a slower path). See README "Embedding in an emulator".
   */
  ram?: RamWindowOptions | RamWindowOptions[];
  /**
   * A WebAssembly.Memory the emulator owns: the engine keeps all its state inside `region` of it,
   * never grows it, and writes outside the region only A/D bits of guest page tables, page-request
   * rings it owns and DMA into RAM windows. Pass `ram` windows by `offset` in this memory to walk
   * and copy zero-copy.
   */
  memory?: WebAssembly.Memory;
  /** With `memory`: the part of it the engine may use, `bytes` at byte `offset` (4 KiB aligned). */
  region?: {
    /** Byte offset of the region in `memory`. */
    offset: number;
    /** Size of the region in bytes. */
    bytes: number;
  };
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

const OPTION_KEYS = ['addressWidth', 'pasidBits', 'iotlbEntries', 'maxMemoryBytes', 'shared', 'ram', 'translators', 'maxDomains', 'memory', 'region'] as const;
const DEVICE_KEYS = ['bdf', 'pasidBits', 'pri', 'dirty', 'reservedRegions'] as const;

/** Why the engine is single-threaded, or undefined when workers can share its memory. */
export function sharedMemoryUnavailableReason(): string | undefined {
  const g = globalThis as { crossOriginIsolated?: boolean; SharedArrayBuffer?: unknown };
  // Browsers hide SharedArrayBuffer on pages that are not cross-origin isolated: name the cause.
  if (g.crossOriginIsolated === false) return 'the page is not cross-origin isolated (serve it with COOP/COEP headers)';
  if (typeof g.SharedArrayBuffer !== 'function') return 'SharedArrayBuffer is not available';
  return undefined;
}

/** Options checked and turned into a memory layout. */
export interface ResolvedOptions {
  addressWidth: number;
  pasidBits: number;
  shared: boolean;
  layout: Layout;
  /** The emulator's memory, when the engine lives in a region of it. */
  memory: WebAssembly.Memory | undefined;
  /** Guest RAM windows, placed. */
  ram: RamWindowSpec[];
}

/** Checks the options of `Iommu.create` (and of a snapshot's header). @throws EINVAL, EOPNOTSUPP. */
export function resolveOptions(opts: unknown): ResolvedOptions {
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
  const ram = resolveRam(op, o.memory, o.region, o.ram);
  if (ram.memory && o.maxMemoryBytes !== undefined) fail('EINVAL', op, 'maxMemoryBytes: not with memory (the region bounds the engine)');
  const unavailable = sharedMemoryUnavailableReason();
  let shared = ram.memory ? typeof SharedArrayBuffer === 'function' && ram.memory.buffer instanceof SharedArrayBuffer : unavailable === undefined;
  if (o.shared !== undefined) {
    if (typeof o.shared !== 'boolean') fail('EINVAL', op, `shared: expected a boolean, got ${describe(o.shared)}`);
    if (ram.memory && o.shared !== shared) fail('EINVAL', op, `shared: ${o.shared}, but the memory given is ${shared ? '' : 'not '}shared`);
    if (o.shared && unavailable) fail('EOPNOTSUPP', op, `shared memory requested but ${unavailable}`);
    shared = o.shared;
  }
  const ramRegions = ram.windows.filter((w) => w.offset === undefined).map((w) => w.bytes);
  const layout = computeLayout({ translators, iotlbEntries, maxDomains, maxMemoryBytes, ramRegions, ramCount: ram.windows.length, region: ram.region });
  if (ram.memory) {
    const needs = layout.poolBase + 16 * abi.PAGE_SIZE - layout.origin;
    if (needs > ram.region.bytes) fail('EINVAL', op, `region: ${ram.region.bytes} bytes is too small for this configuration (needs ${needs})`);
  } else if (layout.initialPages >= layout.maximumPages) {
    fail('EINVAL', op, `maxMemoryBytes ${maxMemoryBytes} is too small for this configuration`);
  }
  return { addressWidth, pasidBits, shared, layout, memory: ram.memory, ram: placeWindows(ram.windows, layout.ram) };
}

/**
 * Checks the arguments of `Iommu.addDevice` against an IOMMU of `maxPasidBits`; `rid` is the
 * requester ID of `bdf`. @throws EINVAL, EOVERFLOW.
 */
export function resolveDevice(op: string, opts: unknown, maxPasidBits: number): DeviceCaps {
  const o = options(op, opts, DEVICE_KEYS);
  const rid = ridOfBdf(op, o.bdf);
  const pasidBits = o.pasidBits === undefined ? maxPasidBits : int(op, 'pasidBits', o.pasidBits, 0, maxPasidBits);
  const pri = flag(op, 'pri', o.pri, false);
  const dirty = flag(op, 'dirty', o.dirty, false);
  const reservedRegions = regions(op, o.reservedRegions);
  return { bdf: (o.bdf as string).toLowerCase(), rid, pasidBits, pri, dirty, reservedRegions };
}

function regions(op: string, value: unknown): IoRange[] {
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
