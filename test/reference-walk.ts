/**
 * A deliberately simple reference of what a translation must return, written from the contract
 * (docs/architecture.md, the record and fault comments of assembly/abi.ts, the largest-leaf rule of
 * assembly/pagetable.ts) and not from the engine: no page tables, no IOTLB, no bit fields. An
 * address space is a sorted list of mapped areas; a device is a map from PASID to the address space
 * it is attached to. The expected leaf size, the not-present level and every fault reason are
 * computed from those lists alone. Only types are imported from src/.
 *
 * The second half is the comparison harness the translation tests share: it asks the engine and
 * the reference the same question and fails the test with both answers when they differ.
 */
import { expect } from 'vitest';
import type { DeviceFd } from '../src/iommufd/device';
import type { Iommu } from '../src/iommu';
import type { IommuFd } from '../src/iommufd/iommufd';
import type { Translation, TranslationOut } from '../src/dma/translation';

// ---- Geometry and request vocabulary (from the contract, restated here on purpose) ------------

export const PAGE = 4096n;
export const MiB2 = 1n << 21n;
export const GiB = 1n << 30n;
export const U64_MAX = (1n << 64n) - 1n;
/** log2 of the leaf sizes by level: 4 KiB, 2 MiB, 1 GiB. */
export const LEAF_SHIFTS: readonly number[] = [12, 21, 30];
/** Bits of IOVA one table level resolves. */
const LEVEL_BITS = 9;

export const READ = 1;
export const WRITE = 2;
export const EXEC = 4;
export const PRIV = 8;
const RID_LIMIT = 1 << 16;
const PASID_LIMIT = 1 << 20;
const ACCESS_LIMIT = 16;
export const NO_PASID = 0;

/** Fault reasons in the order the contract numbers them (index 0 = no fault). */
export const REASONS = [
  'none', 'bad-request', 'no-device', 'not-attached', 'pasid-invalid', 'beyond-width', 'not-present', 'permission',
] as const;
export type Reason = (typeof REASONS)[number];

/** One mapping: `[iova, iova + length)` -> `[phys, phys + length)`. */
export interface RefArea {
  readonly iova: bigint;
  readonly length: bigint;
  readonly phys: bigint;
  readonly read: boolean;
  readonly write: boolean;
}

/** A translation or a fault, with every field the contract fixes (a fault has phys/size/perm 0). */
export interface Expected {
  ok: boolean;
  phys: bigint;
  size: bigint;
  perm: number;
  reason: Reason;
  level: number;
  stage: number;
}

const fault = (reason: Reason, level: number): Expected => ({ ok: false, phys: 0n, size: 0n, perm: 0, reason, level, stage: 0 });

const roundUp = (x: bigint, to: bigint): bigint => ((x + to - 1n) / to) * to;
const roundDown = (x: bigint, to: bigint): bigint => (x / to) * to;

// ---- The largest-leaf rule ----------------------------------------------------------------------

/**
 * The leaves `map` installs for `area`, by the rule itself: from the start, repeatedly take the
 * largest leaf whose size divides both the IOVA and the output address and fits in what is left.
 * Literal and slow; `leafLevel` is checked against it (on a scaled-down geometry) by the tests.
 */
export function greedyLeaves(area: RefArea, shifts: readonly number[] = LEAF_SHIFTS): { iova: bigint; level: number }[] {
  const leaves: { iova: bigint; level: number }[] = [];
  let done = 0n;
  while (done < area.length) {
    const va = area.iova + done;
    const pa = area.phys + done;
    let level = shifts.length - 1;
    for (; level > 0; level--) {
      const size = 1n << BigInt(shifts[level]!);
      if (va % size === 0n && pa % size === 0n && area.length - done >= size) break;
    }
    leaves.push({ iova: va, level });
    done += 1n << BigInt(shifts[level]!);
  }
  return leaves;
}

/**
 * Level of the leaf covering `iova` (inside `area`) under the same rule, in closed form: a leaf of
 * level L or larger covers exactly the L-aligned middle `[roundUp(start), roundDown(end))` of the
 * area, when the IOVA and output address agree modulo the level-L size.
 */
export function leafLevel(area: RefArea, iova: bigint, shifts: readonly number[] = LEAF_SHIFTS): number {
  for (let level = shifts.length - 1; level > 0; level--) {
    const size = 1n << BigInt(shifts[level]!);
    if ((area.phys - area.iova) % size !== 0n) continue;
    if (roundUp(area.iova, size) <= iova && iova < roundDown(area.iova + area.length, size)) return level;
  }
  return 0;
}

// ---- Address spaces, devices, translation ------------------------------------------------------

/** What an IOAS holds, as the reference sees it: disjoint areas sorted by IOVA. */
export class RefSpace {
  areas: RefArea[] = [];

  constructor(readonly name = 'space') {}

  /** True when `[start, last]` meets a mapped area. */
  intersects(start: bigint, last: bigint): boolean {
    return this.areas.some((a) => a.iova <= last && start <= a.iova + a.length - 1n);
  }

  /** The area holding `iova`, if any. */
  find(iova: bigint): RefArea | undefined {
    return this.areas.find((a) => a.iova <= iova && iova < a.iova + a.length);
  }

  map(area: RefArea): void {
    if (this.intersects(area.iova, area.iova + area.length - 1n)) throw new Error(`reference: ${this.name} already maps part of ${area.iova}`);
    this.areas.push({ ...area });
    this.areas.sort((a, b) => (a.iova < b.iova ? -1 : 1));
  }

  /**
   * Unmap as iommufd does: every area wholly inside `[iova, iova + length)` goes; an area crossing
   * either end or nothing at all is ENOENT (returned as undefined, nothing changed).
   */
  unmap(iova: bigint, length: bigint): bigint | undefined {
    const last = iova + length - 1n;
    const hit = this.areas.filter((a) => a.iova <= last && iova <= a.iova + a.length - 1n);
    if (hit.length === 0 || hit.some((a) => a.iova < iova || a.iova + a.length - 1n > last)) return undefined;
    this.areas = this.areas.filter((a) => !hit.includes(a));
    return hit.reduce((sum, a) => sum + a.length, 0n);
  }

  clear(): void {
    this.areas = [];
  }
}

interface RefDevice {
  pasidBits: number;
  /** pasid (NO_PASID = the RID) -> the space it translates through. */
  contexts: Map<number, RefSpace>;
}

/** The expected behaviour of `Iommu.translate` over the attachments the test has made. */
export class ReferenceIommu {
  readonly levels: number;
  readonly devices = new Map<number, RefDevice>();

  constructor(readonly addressWidth: number = 48) {
    this.levels = (addressWidth - 12) / LEVEL_BITS;
  }

  addDevice(rid: number, pasidBits: number): void {
    this.devices.set(rid, { pasidBits, contexts: new Map() });
  }

  attach(rid: number, pasid: number, space: RefSpace): void {
    this.device(rid).contexts.set(pasid, space);
  }

  detach(rid: number, pasid: number): void {
    this.device(rid).contexts.delete(pasid);
  }

  /** Everything of `rid` detached (unbind, FD close). */
  detachAll(rid: number): void {
    this.device(rid).contexts.clear();
  }

  /** The space (rid, pasid) translates through, if attached. */
  context(rid: number, pasid: number): RefSpace | undefined {
    return this.devices.get(rid)?.contexts.get(pasid);
  }

  private device(rid: number): RefDevice {
    const d = this.devices.get(rid);
    if (!d) throw new Error(`reference: no device ${rid}`);
    return d;
  }

  /** What `translate(rid, pasid, iova, access)` must return. */
  translate(rid: unknown, pasid: unknown, iova: unknown, access: unknown): Expected {
    const address = requestAddress(iova);
    if (!isIntBelow(rid, RID_LIMIT) || !isIntBelow(pasid, PASID_LIMIT) || !isIntBelow(access, ACCESS_LIMIT) || address === undefined) {
      return fault('bad-request', 0);
    }
    const dev = this.devices.get(rid);
    if (!dev) return fault('no-device', 0);
    if (pasid !== NO_PASID && pasid >= 2 ** dev.pasidBits) return fault('pasid-invalid', 0);
    const space = dev.contexts.get(pasid);
    if (!space) return fault('not-attached', 0);
    return this.walk(space, address, access);
  }

  /** The walk over `space`: beyond-width, not-present (with its level), permission, or the leaf. */
  walk(space: RefSpace, iova: bigint, access: number): Expected {
    if (iova >> BigInt(this.addressWidth) !== 0n) return fault('beyond-width', this.levels - 1);
    const area = space.find(iova);
    if (!area) {
      // The walk stops at the first level, from the top, whose entry covers no mapping at all.
      for (let level = this.levels - 1; ; level--) {
        const span = 1n << BigInt(12 + LEVEL_BITS * level);
        const start = roundDown(iova, span);
        if (!space.intersects(start, start + span - 1n)) return fault('not-present', level);
      }
    }
    const level = leafLevel(area, iova);
    const perm = (area.read ? READ : 0) | (area.write ? WRITE : 0);
    const needed = (access & (READ | EXEC) ? READ : 0) | (access & WRITE ? WRITE : 0);
    if ((perm & needed) !== needed) return fault('permission', level);
    return { ok: true, phys: area.phys + (iova - area.iova), size: 1n << BigInt(LEAF_SHIFTS[level]!), perm, reason: 'none', level: 0, stage: 0 };
  }
}

function isIntBelow(v: unknown, limit: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < limit;
}

/** A request IOVA as the contract accepts it: a bigint or an exact non-negative integer number below 2^64. */
function requestAddress(iova: unknown): bigint | undefined {
  if (typeof iova === 'bigint') return iova >= 0n && iova <= U64_MAX ? iova : undefined;
  if (typeof iova === 'number' && Number.isInteger(iova) && iova >= 0 && iova < 2 ** 64) return BigInt(iova);
  return undefined;
}

// ---- Comparing the engine with the reference -----------------------------------------------------

/** A `Translation` in the reference's shape. */
export function fromTranslation(t: Translation): Expected {
  if (t.ok) return { ok: true, phys: t.phys, size: t.size, perm: t.perm, reason: 'none', level: 0, stage: 0 };
  return { ok: false, phys: t.phys, size: t.size, perm: t.perm, reason: t.fault!.reason as Reason, level: t.fault!.level, stage: t.fault!.stage };
}

/** A `TranslationOut` (allocation-free result) in the reference's shape. */
export function fromOut(o: TranslationOut): Expected {
  const phys = (BigInt(o.physHi) << 32n) | BigInt(o.physLo);
  if (o.ok) return { ok: true, phys, size: 1n << BigInt(o.sizeLg2), perm: o.perm, reason: 'none', level: 0, stage: 0 };
  return { ok: false, phys, size: 0n, perm: o.perm, reason: REASONS[o.reason] ?? 'none', level: o.level, stage: o.stage };
}

export function sameResult(a: Expected, b: Expected): boolean {
  return a.ok === b.ok && a.phys === b.phys && a.size === b.size && a.perm === b.perm && a.reason === b.reason && a.level === b.level && a.stage === b.stage;
}

export const hex = (v: unknown): string => (typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v)) ? `0x${v.toString(16)}` : String(v));

/** The part of an `Iommu` or `Translator` the harness drives. */
export interface TranslatePort {
  translate(rid: number, pasid: number, iova: number | bigint, access: number): Translation;
  translateInto(out: TranslationOut, rid: number, pasid: number, iova: number | bigint, access: number): TranslationOut;
}

/**
 * Asks the engine and the reference the same question; on a difference, fails with both. Only a
 * mismatch goes through `expect`, so sweeps of many thousand requests stay fast.
 */
export class Harness {
  /** Requests compared so far. */
  checks = 0;

  constructor(readonly engine: TranslatePort, readonly ref: ReferenceIommu) {}

  check(rid: number, pasid: number, iova: number | bigint, access: number, label = ''): Expected {
    const t = this.engine.translate(rid, pasid, iova, access);
    const got = fromTranslation(t);
    this.compare(got, rid, pasid, iova, access, label);
    if (t.ok && t.iova !== BigInt(iova)) expect(t.iova, `${label}: echoed iova`).toBe(BigInt(iova));
    return got;
  }

  /** The same through the allocation-free `translateInto`. */
  checkInto(out: TranslationOut, rid: number, pasid: number, iova: number | bigint, access: number, label = ''): Expected {
    const got = fromOut(this.engine.translateInto(out, rid, pasid, iova, access));
    this.compare(got, rid, pasid, iova, access, label);
    return got;
  }

  /** Compares an answer obtained some other way (a batch record) with the reference. */
  compare(got: Expected, rid: unknown, pasid: unknown, iova: unknown, access: unknown, label = ''): void {
    this.checks++;
    const want = this.ref.translate(rid, pasid, iova, access);
    if (!sameResult(got, want)) {
      expect(got, `${label} rid ${hex(rid)} pasid ${hex(pasid)} iova ${hex(iova)} access ${String(access)}`).toEqual(want);
    }
  }
}

/** Fails unless `fn` throws an IommuError with `errno` (checked by shape: no runtime import from src/). */
export function expectErrno(errno: string, fn: () => unknown): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected ${errno}`).toBeDefined();
  expect((thrown as Error).name).toBe('IommuError');
  expect((thrown as { errno?: string }).errno).toBe(errno);
}

/**
 * An engine and its reference kept in step: every control helper does the call on the engine and
 * the same change on the reference, so a test only states what it does once.
 */
export class Rig extends Harness {
  constructor(readonly iommu: Iommu, ref: ReferenceIommu = new ReferenceIommu(iommu.addressWidth)) {
    super(iommu, ref);
  }

  device(bdf: string, pasidBits?: number): DeviceFd {
    const dev = this.iommu.addDevice(pasidBits === undefined ? { bdf } : { bdf, pasidBits });
    this.ref.addDevice(dev.rid, dev.pasidBits);
    return dev;
  }

  map(fd: IommuFd, ioasId: number, space: RefSpace, area: RefArea): void {
    const { iova, length, phys, read, write } = area;
    expect(fd.ioasMap(ioasId, { iova, length, phys, read, write })).toBe(iova);
    space.map(area);
  }

  unmap(fd: IommuFd, ioasId: number, space: RefSpace, iova: bigint, length: bigint): void {
    const bytes = space.unmap(iova, length);
    if (bytes === undefined) throw new Error(`test bug: unmap of ${hex(iova)}+${hex(length)} does not match whole areas`);
    expect(fd.ioasUnmap(ioasId, iova, length)).toBe(bytes);
  }

  /** Attaches (rid, pasid) of `dev` to `ptId`, an IOAS or HWPT whose areas `space` mirrors. */
  attach(dev: DeviceFd, ptId: number, space: RefSpace, pasid = NO_PASID): number {
    const hwpt = dev.attach(ptId, pasid === NO_PASID ? undefined : { pasid });
    this.ref.attach(dev.rid, pasid, space);
    return hwpt;
  }

  detach(dev: DeviceFd, pasid = NO_PASID): void {
    dev.detach(pasid === NO_PASID ? undefined : { pasid });
    this.ref.detach(dev.rid, pasid);
  }
}

/** An area literal with read and write defaulting to true. */
export function area(iova: bigint, length: bigint, phys: bigint, perm: { read?: boolean; write?: boolean } = {}): RefArea {
  return { iova, length, phys, read: perm.read ?? true, write: perm.write ?? true };
}

// ---- Seeded randomness ---------------------------------------------------------------------------

/** A small seeded PRNG (mulberry32), so a failing run can be replayed from its seed. */
export class Rng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 2^32). */
  u32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 2 ** 32) * n);
  }

  /** Uniform bigint in [0, n) for n up to 2^64. */
  big(n: bigint): bigint {
    const r = (BigInt(this.u32()) << 32n) | BigInt(this.u32());
    return r % n;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
}
