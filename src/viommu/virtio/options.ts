/**
 * Options of `new VirtioIommu(iommu, opts)`, validated into the constant facts the device
 * publishes in its configuration space (§5.13.4). A bad option is an `IommuError` (EINVAL, or
 * EOPNOTSUPP for an unknown key), as for every control call of the engine.
 * @module
 */
import { IommuError } from '../../api';

/** Options of `new VirtioIommu(iommu, opts)`: every one optional, each default as in QEMU. */
export interface VirtioIommuOptions {
  /** Page sizes the device supports; the lowest set bit is the granule (≥ 4 KiB). Default: every size ≥ 4 KiB. */
  pageSizeMask?: bigint | number;
  /** IOVAs the guest may map, inclusive, granule-aligned. Default `[0, 2^addressWidth − 1]` of the engine. */
  inputRange?: {
    /** First IOVA. */
    start: bigint | number;
    /** Last IOVA (inclusive). */
    end: bigint | number;
  };
  /** Domain IDs the guest may use, inclusive; offering it sets `VIRTIO_IOMMU_F_DOMAIN_RANGE`. Default: every u32. */
  domainRange?: {
    /** First domain ID. */
    start: number;
    /** Last domain ID (inclusive). */
    end: number;
  };
  /** Bytes of properties in every PROBE reply; 0 = no `VIRTIO_IOMMU_F_PROBE`. Default 512 (as QEMU). */
  probeSize?: number;
  /** Initial `config.bypass`: unattached endpoints reach memory 1:1 when 1. Default true (as QEMU's boot-bypass). */
  bypass?: boolean;
  /**
   * The MSI doorbell window reported to every endpoint as a RESV_MEM `MSI` property, which the
   * guest may not map. Default x86's `[0xfee00000, 0xfeefffff]`; `null` = none.
   */
  msiRegion?: {
    /** First address of the MSI doorbell region. */
    start: bigint | number;
    /** Last address (inclusive). */
    end: bigint | number;
  } | null;
}

/** The resolved options. Addresses in bytes as bigint; `granulePages` in 4 KiB pages. */
export interface Resolved {
  pageSizeMask: bigint;
  granulePages: number;
  inputStart: bigint;
  inputEnd: bigint;
  domainRange: { start: number; end: number } | undefined;
  probeSize: number;
  bypass: boolean;
  msiRegion: { start: bigint; end: bigint } | undefined;
}

const KEYS = ['pageSizeMask', 'inputRange', 'domainRange', 'probeSize', 'bypass', 'msiRegion'];
const OP = 'VirtioIommu';
const U64_MAX = (1n << 64n) - 1n;
const PAGE = 4096n;

function bad(detail: string): never {
  throw new IommuError('EINVAL', OP, detail);
}

function u64(name: string, v: unknown): bigint {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'bigint' && v >= 0n && v <= U64_MAX) return v;
  return bad(`${name}: expected an integer in [0, 2^64), got ${typeof v === 'bigint' ? `${v}n` : String(v)}`);
}

function u32(name: string, v: unknown): number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return v;
  return bad(`${name}: expected an integer in [0, 2^32), got ${String(v)}`);
}

function object(name: string, v: unknown, keys: string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(`${name}: expected an object`);
  for (const k of Object.keys(v)) if (!keys.includes(k)) throw new IommuError('EOPNOTSUPP', OP, `${name}: unknown option '${k}'`);
  return v as Record<string, unknown>;
}

export function resolveOptions(opts: unknown, addressWidth: number): Resolved {
  const o = opts === undefined ? {} : object('options', opts, KEYS);
  const pageSizeMask = o.pageSizeMask === undefined ? U64_MAX & ~(PAGE - 1n) : u64('pageSizeMask', o.pageSizeMask);
  const granule = pageSizeMask & -pageSizeMask;
  // The engine maps whole 4 KiB pages, so a finer granule cannot be honoured.
  if (granule < PAGE) bad(`pageSizeMask: expected a granule (lowest set bit) of at least 4 KiB, got 0x${pageSizeMask.toString(16)}`);
  const widthEnd = (1n << BigInt(addressWidth)) - 1n;
  let inputStart = 0n;
  let inputEnd = widthEnd;
  if (o.inputRange !== undefined) {
    const r = object('inputRange', o.inputRange, ['start', 'end']);
    inputStart = u64('inputRange.start', r.start);
    inputEnd = u64('inputRange.end', r.end);
    if (inputEnd < inputStart || inputEnd > widthEnd) bad(`inputRange: expected start ≤ end ≤ 2^${addressWidth} − 1 (the engine's address width)`);
    if (inputStart % granule !== 0n || (inputEnd + 1n) % granule !== 0n) bad('inputRange: expected start and end + 1 aligned to the granule');
  }
  let domainRange: Resolved['domainRange'];
  if (o.domainRange !== undefined) {
    const r = object('domainRange', o.domainRange, ['start', 'end']);
    domainRange = { start: u32('domainRange.start', r.start), end: u32('domainRange.end', r.end) };
    if (domainRange.end < domainRange.start) bad('domainRange: expected start ≤ end');
  }
  const probeSize = o.probeSize === undefined ? 512 : u32('probeSize', o.probeSize);
  if (o.bypass !== undefined && typeof o.bypass !== 'boolean') bad('bypass: expected a boolean');
  let msiRegion: Resolved['msiRegion'] = { start: 0xfee00000n, end: 0xfeefffffn };
  if (o.msiRegion === null) msiRegion = undefined;
  else if (o.msiRegion !== undefined) {
    const r = object('msiRegion', o.msiRegion, ['start', 'end']);
    msiRegion = { start: u64('msiRegion.start', r.start), end: u64('msiRegion.end', r.end) };
    if (msiRegion.end < msiRegion.start) bad('msiRegion: expected start ≤ end');
  }
  return {
    pageSizeMask, granulePages: Number(granule / PAGE), inputStart, inputEnd, domainRange, probeSize,
    bypass: o.bypass === undefined ? true : o.bypass, msiRegion,
  };
}
