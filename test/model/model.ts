/**
 * A deliberately simple reference model of the engine's control semantics and DMA translation,
 * written from the iommufd uAPI (Linux Documentation/userspace-api/iommufd.rst,
 * include/uapi/linux/iommufd.h) and docs/architecture.md (not from src/): plain arrays scanned
 * linearly, no caches, no Wasm. The differential fuzzer (test/fuzz.test.ts, scripts/fuzz.mjs)
 * runs the same operations on the engine and here and requires identical results and errnos.
 *
 * What is modelled: FD-local object IDs (lowest free, from 1), IOAS areas / reserved / allowed
 * ranges / alignment / automatic IOVA, HWPT_PAGING (auto and explicit), bind/attach/replace/detach
 * with PASID rules (incl. the seed's EPERM), the system-wide PASID space, FD close, and
 * translation (fault reasons, levels, leaf sizes). Checks run in iommufd's order; where iommufd
 * leaves the order of two argument checks open, the model follows the engine's documented order.
 *
 * No imports from src/ or assembly/.
 * @module
 */

export const U64_MAX = (1n << 64n) - 1n;
export const PAGE = 4096n;
/** Engine page-table entries hold output address bits 51:12: a mapping in a domain must end below 2^52. */
export const OUTPUT_LIMIT = 1n << 52n;
export const NO_PASID = 0;
/** PASID argument range of attach/detach (the engine's PASID_BITS). */
export const PASID_ARG_BITS = 20;

/** A control error the model predicts: the errno name. */
export class ModelError extends Error {
  constructor(readonly errno: string, why: string) {
    super(`${errno}: ${why}`);
  }
}

function fail(errno: string, why: string): never {
  throw new ModelError(errno, why);
}

export interface Range {
  start: bigint;
  last: bigint;
}

export interface Area {
  iova: bigint;
  last: bigint;
  phys: bigint;
  read: boolean;
  write: boolean;
}

export class MIoas {
  readonly type = 'ioas';
  id = 0;
  areas: Area[] = []; // sorted by iova, disjoint
  allowed: Range[] = []; // sorted, disjoint
  readonly hwpts = new Set<MHwpt>();
  /** Access objects on this IOAS, in creation order (the order onUnmap callbacks run in). */
  readonly accesses = new Set<MAccess>();
}

/** A software-DMA access (iommufd's access): pins pages; a pinning one raises the alignment to a page. */
export class MAccess {
  readonly type = 'access';
  id = 0;
  /** Pinned ranges, in pin order. */
  readonly pins: Range[] = [];
  constructor(
    readonly fd: number,
    readonly ioas: MIoas,
    /** What its onUnmap does (ops.ts React); undefined: no callback, it cannot pin. */
    readonly react: string | undefined,
  ) {}
}

export class MHwpt {
  readonly type = 'hwpt-paging';
  id = 0;
  /** Attachments (device, pasid) using it. */
  users = 0;
  /** Dirty tracking on (hwptSetDirtyTracking). */
  dirtyEnabled = false;
  /** Start IOVAs of the leaves written while tracking was on and not cleared since (D bits). */
  readonly dirty = new Set<bigint>();
  /** Where recoverable faults of PRI devices through this HWPT go (hwptAlloc faultId). */
  fault: MFault | undefined;
  constructor(
    readonly ioas: MIoas,
    readonly auto: boolean,
    readonly pasid: boolean,
    readonly nestParent: boolean,
    /** Allocated with dirtyTracking (explicit HWPTs only; undefined for auto ones). */
    readonly dirtyTracking?: boolean,
  ) {}
}

export class MDevObj {
  readonly type = 'device';
  id = 0;
  constructor(readonly dev: MDevice) {}
}

/** A page request held by a fault queue (delivered; `cookie` 0 until read). */
export interface MReq {
  dev: MDevice;
  hwpt: MHwpt;
  pasid: number;
  grpid: number;
  perm: number;
  addr: bigint;
  cookie: number;
}

/** A page response as the device receives it. */
export interface MResp {
  pasidValid: boolean;
  pasid: number;
  grpid: number;
  addr: bigint;
  code: 'success' | 'invalid';
}

/** A FAULT object and its fault FD: page requests of the HWPTs allocated with its ID. */
export class MFault {
  readonly type = 'fault';
  id = 0;
  fdOpen = true;
  queued: MReq[] = [];
  /** Read, awaiting an answer: cookie -> request, in read order. */
  readonly pending = new Map<number, MReq>();
  nextCookie = 1;
  readonly hwpts = new Set<MHwpt>();
  get users(): number {
    return this.hwpts.size + (this.fdOpen ? 1 : 0);
  }
}

export type MObj = MIoas | MHwpt | MDevObj | MAccess | MFault;

export class MDevice {
  fd: MFd | undefined;
  obj: MDevObj | undefined;
  /** pasid (0 = RID) -> HWPT. */
  readonly att = new Map<number, MHwpt>();
  /** Next page request group index (9 bits). */
  grp = 0;
  /** Page responses not taken yet (DeviceFd.pageResponses). */
  responses: MResp[] = [];
  constructor(readonly rid: number, readonly bdf: string, readonly pasidBits: number, readonly reserved: Range[], readonly dirty = false, readonly pri = false) {}
}

export class MFd {
  closed = false;
  readonly objs = new Map<number, MObj>();
  readonly devices = new Set<MDevice>();
}

/** A translation as the model predicts it. */
export type MTranslation =
  | { ok: true; phys: bigint; sizeLg2: number; perm: number }
  | { ok: false; reason: string; level: number };

export interface ModelConfig {
  addressWidth: number;
  pasidBits: number;
  /** Domain slots of the engine (option maxDomains): at most maxDomains - 1 HWPTs live at once. */
  maxDomains: number;
  /** Memory shared with workers (translator handles need it). */
  shared?: boolean;
  /** Worker translator slots (option translators - 1; the harness uses 2). */
  workerSlots?: number;
  /** Guest RAM windows (disjoint, page aligned, ending below 2^53), for software DMA. */
  ram?: readonly RamWindow[];
}

/** One guest RAM window: guest-physical [base, base + bytes). */
export interface RamWindow {
  base: bigint;
  bytes: number;
}

/**
 * The byte every guest RAM window holds at guest-physical `phys` when the engine is created (the
 * harness fills its buffers the same way), so that reads see something other than zeros at once.
 */
export function ramPattern(phys: number): number {
  return (Math.imul(phys ^ (phys >>> 12), 0x9e3779b1) >>> 24) & 0xff;
}

const images = new Map<string, Uint8Array>();

/** Window `w` as it starts (`ramPattern`), computed once per window: copy it, do not change it. */
export function ramImage(w: RamWindow): Uint8Array {
  const key = `${w.base}:${w.bytes}`;
  let image = images.get(key);
  if (!image) {
    image = new Uint8Array(w.bytes);
    const base = Number(w.base);
    for (let i = 0; i < image.length; i++) image[i] = ramPattern(base + i);
    images.set(key, image);
  }
  return image;
}

/** A DMA fault as the model predicts it (`phys` only for not-ram). */
export interface MDmaFault {
  reason: string;
  level: number;
  stage: number;
  phys?: bigint;
}

/** A fault-log record as the model predicts it: request fields only for translation faults. */
export interface MLogRecord {
  reason: string;
  level: number;
  stage: number;
  rid?: number;
  pasid?: number;
  iova?: bigint;
  access?: number;
}

/** What a dmaRead/dmaWrite does: bytes done, the fault that stopped it, the fault-log records it adds. */
export interface MDma {
  bytes: number;
  fault?: MDmaFault;
  log: MLogRecord[];
}

const BDF = /^(?:([0-9a-f]{4}):)?([0-9a-f]{2}):([01][0-9a-f])\.([0-7])$/i;

// ---- small range helpers -----------------------------------------------------------------------

const overlaps = (aStart: bigint, aLast: bigint, bStart: bigint, bLast: bigint): boolean => aStart <= bLast && bStart <= aLast;
const minB = (a: bigint, b: bigint): bigint => (a < b ? a : b);
const maxB = (a: bigint, b: bigint): bigint => (a > b ? a : b);

/** Union of ranges: sorted, disjoint, touching ranges merged. */
export function union(ranges: Range[]): Range[] {
  const sorted = ranges.map((r) => ({ ...r })).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: Range[] = [];
  for (const r of sorted) {
    const top = out[out.length - 1];
    if (top && r.start <= top.last + 1n) top.last = maxB(top.last, r.last);
    else out.push(r);
  }
  return out;
}

function roundupPow2(x: bigint): bigint {
  let p = 1n;
  while (p < x) p *= 2n;
  return p;
}

function lowBit(x: bigint): bigint {
  return x & -x;
}

export class Model {
  readonly fds: MFd[] = [];
  readonly devices: MDevice[] = [];
  readonly pasidOwner = new Map<number, MFd>();
  readonly pasidUses = new Map<number, number>();
  /** Worker translator slots handed out (1..workerSlots). */
  readonly slots = new Set<number>();
  /** Guest RAM: the bytes of each window of `cfg.ram`, sorted by base. */
  readonly ram: { base: bigint; bytes: Uint8Array }[];
  /** Guest-physical ranges the last `dma` copied, one per leaf, in order (the harness compares them with the engine's RAM). */
  lastDma: { phys: bigint; n: number; sizeLg2: number }[] = [];

  constructor(readonly cfg: ModelConfig) {
    this.ram = [...(cfg.ram ?? [])].sort((a, b) => (a.base < b.base ? -1 : 1)).map((w) => ({ base: w.base, bytes: ramImage(w).slice() }));
  }

  /** translatorHandle: the lowest free worker slot. */
  handle(): number {
    if (!this.cfg.shared) fail('EOPNOTSUPP', 'memory not shared');
    let slot = 1;
    while (this.slots.has(slot)) slot++;
    if (slot > (this.cfg.workerSlots ?? 2)) fail('ENOSPC', 'no free translator slot');
    this.slots.add(slot);
    return slot;
  }

  /** translatorRelease of the live handle of `slot`; anything else is EINVAL. */
  release(slot: number): void {
    if (!this.slots.delete(slot)) fail('EINVAL', 'not a live handle');
  }

  get levels(): number {
    return (this.cfg.addressWidth - 12) / 9;
  }

  // ---- derived IOAS state ------------------------------------------------------------------

  /** Every reserved range of an IOAS (not merged): HWPT apertures and RID-attached devices' regions. */
  reservedOf(ioas: MIoas): Range[] {
    const out: Range[] = [];
    if (ioas.hwpts.size > 0) out.push({ start: 1n << BigInt(this.cfg.addressWidth), last: U64_MAX });
    for (const d of this.devices) {
      if (d.att.get(NO_PASID)?.ioas === ioas) out.push(...d.reserved);
    }
    return out;
  }

  alignOf(ioas: MIoas): bigint {
    return ioas.hwpts.size > 0 || [...ioas.accesses].some((a) => a.react !== undefined) ? PAGE : 1n;
  }

  iovaRanges(ioas: MIoas): { ranges: Range[]; alignment: bigint } {
    const ranges: Range[] = [];
    let cursor = 0n;
    for (const r of union(this.reservedOf(ioas))) {
      if (r.start > cursor) ranges.push({ start: cursor, last: r.start - 1n });
      cursor = r.last + 1n;
    }
    if (cursor <= U64_MAX) ranges.push({ start: cursor, last: U64_MAX });
    return { ranges, alignment: this.alignOf(ioas) };
  }

  // ---- lookups -----------------------------------------------------------------------------

  private open(fdIndex: number): MFd {
    const fd = this.fds[fdIndex]!;
    if (fd.closed) fail('EBADF', 'closed FD');
    return fd;
  }

  private lowestFreeId(fd: MFd): number {
    let id = 1;
    while (fd.objs.has(id)) id++;
    return id;
  }

  private publish<T extends MObj>(fd: MFd, obj: T): T {
    obj.id = this.lowestFreeId(fd);
    fd.objs.set(obj.id, obj);
    return obj;
  }

  private getIoas(fd: MFd, id: number): MIoas {
    const o = fd.objs.get(id);
    if (!(o instanceof MIoas)) fail('ENOENT', `no IOAS ${id}`);
    return o;
  }

  // ---- FD and objects ----------------------------------------------------------------------

  openFd(): number {
    this.fds.push(new MFd());
    return this.fds.length - 1;
  }

  ioasAlloc(fdIndex: number): number {
    const fd = this.open(fdIndex);
    return this.publish(fd, new MIoas()).id;
  }

  /** `IommuFd.objects()`: ID, type, users and the type's facts. */
  objects(fdIndex: number): Record<string, unknown>[] {
    const fd = this.fds[fdIndex]!;
    return [...fd.objs.values()].sort((a, b) => a.id - b.id).map((o) => {
      if (o instanceof MIoas) return { id: o.id, type: o.type, users: o.hwpts.size + o.accesses.size, areas: o.areas.length, hwptIds: [...o.hwpts].map((h) => h.id) };
      if (o instanceof MAccess) return { id: o.id, type: o.type, users: 0, ioasId: o.ioas.id, pins: o.pins.length };
      if (o instanceof MFault) return { id: o.id, type: o.type, users: o.users, queued: o.queued.length, pending: o.pending.size };
      if (o instanceof MHwpt) {
        const flags = { auto: o.auto, nestParent: o.nestParent, pasid: o.pasid, ...(o.dirtyTracking === undefined ? {} : { dirtyTracking: o.dirtyTracking }) };
        return { id: o.id, type: o.type, users: o.users, ioasId: o.ioas.id, ...flags, dirtyEnabled: o.dirtyEnabled };
      }
      return { id: o.id, type: o.type, users: 1, bdf: o.dev.bdf, rid: o.dev.rid };
    });
  }

  pasids(fdIndex: number): number[] {
    const fd = this.fds[fdIndex]!;
    return [...this.pasidOwner].filter(([, o]) => o === fd).map(([p]) => p).sort((a, b) => a - b);
  }

  destroy(fdIndex: number, id: number): void {
    const fd = this.open(fdIndex);
    const o = fd.objs.get(id) ?? fail('ENOENT', `no object ${id}`);
    const users = o instanceof MIoas ? o.hwpts.size + o.accesses.size : o instanceof MHwpt ? o.users : o instanceof MAccess ? 0 : o instanceof MFault ? o.users : 1;
    if (users > 0) fail('EBUSY', `object ${id} in use`);
    this.remove(fd, o);
  }

  private remove(fd: MFd, o: MObj): void {
    fd.objs.delete(o.id);
    if (o instanceof MHwpt) {
      o.ioas.hwpts.delete(o);
      o.fault?.hwpts.delete(o);
    }
    if (o instanceof MAccess) o.ioas.accesses.delete(o);
  }

  close(fdIndex: number): void {
    const fd = this.fds[fdIndex]!;
    if (fd.closed) return;
    for (const d of [...fd.devices]) this.unbindDevice(d);
    for (const o of fd.objs.values()) if (o instanceof MFault) o.fdOpen = false;
    // Leaf first: HWPTs (nobody uses them any more), then the rest.
    for (const o of [...fd.objs.values()]) if (o instanceof MHwpt || o instanceof MAccess) this.remove(fd, o);
    fd.objs.clear();
    for (const [p, owner] of [...this.pasidOwner]) if (owner === fd) this.pasidOwner.delete(p);
    fd.closed = true;
  }

  // ---- IOAS programming --------------------------------------------------------------------

  map(fdIndex: number, ioasId: number, a: { iova?: bigint; length: bigint; phys: bigint; read?: boolean; write?: boolean }): bigint {
    const fd = this.open(fdIndex);
    const read = a.read ?? true;
    const write = a.write ?? true;
    for (const v of [a.iova ?? 0n, a.length, a.phys]) {
      if (v < 0n) fail('EINVAL', 'negative');
      if (v > U64_MAX) fail('EOVERFLOW', '>= 2^64');
    }
    if ((a.iova ?? 0n) >= U64_MAX || a.length >= U64_MAX) fail('EOVERFLOW', 'iova or length >= U64_MAX');
    if (!read && !write) fail('EINVAL', 'no permission');
    const ioas = this.getIoas(fd, ioasId);
    if (a.length === 0n) fail('EINVAL', 'zero length');
    if (a.phys + a.length - 1n > U64_MAX) fail('EOVERFLOW', 'phys + length wraps');
    const align = this.alignOf(ioas);
    if (a.length % align !== 0n) fail('EINVAL', 'length misaligned');
    const iova = a.iova === undefined ? this.allocIova(ioas, a.phys, a.length) : this.checkFixed(ioas, a.iova, a.length);
    const area: Area = { iova, last: iova + a.length - 1n, phys: a.phys, read, write };
    this.checkBacking(ioas, area);
    this.checkOutput(ioas, [area]);
    this.insert(ioas, [area]);
    return iova;
  }

  private checkFixed(ioas: MIoas, iova: bigint, length: bigint): bigint {
    if (iova % this.alignOf(ioas) !== 0n) fail('EINVAL', 'iova misaligned');
    const last = iova + length - 1n;
    if (last > U64_MAX) fail('EOVERFLOW', 'iova + length wraps');
    if (this.reservedOf(ioas).some((r) => overlaps(r.start, r.last, iova, last))) fail('EINVAL', 'hits reserved');
    if (ioas.areas.some((x) => overlaps(x.iova, x.last, iova, last))) fail('EEXIST', 'hits a mapping');
    return iova;
  }

  /** Automatic IOVA: first fit, lowest first, in [PAGE, U64_MAX - PAGE] ∩ allowed, keeping phys's page offset. */
  private allocIova(ioas: MIoas, phys: bigint, length: bigint): bigint {
    if (length >= U64_MAX / 2n) fail('EOVERFLOW', 'auto length too big');
    let align = roundupPow2(length);
    if (phys !== 0n) align = minB(align, lowBit(phys));
    align = minB(align, 1n << 30n);
    if (align < this.alignOf(ioas)) fail('EINVAL', 'auto alignment below the IOAS alignment');
    const step = maxB(align, PAGE);
    const offset = phys % PAGE;
    const windowStart = PAGE;
    const windowLast = U64_MAX - PAGE;
    const spans = ioas.allowed.length > 0 ? union(ioas.allowed) : [{ start: windowStart, last: windowLast }];
    const blocked = union([...ioas.areas.map((x) => ({ start: x.iova, last: x.last })), ...this.reservedOf(ioas)]);
    for (const s of spans) {
      const start = maxB(s.start, windowStart);
      const last = minB(s.last, windowLast);
      if (start > last) continue;
      // Holes of `blocked` inside [start, last], ascending.
      let cursor = start;
      const holes: Range[] = [];
      for (const b of blocked) {
        if (b.last < cursor) continue;
        if (b.start > last) break;
        if (b.start > cursor) holes.push({ start: cursor, last: b.start - 1n });
        cursor = b.last + 1n;
        if (cursor > last) break;
      }
      if (cursor <= last) holes.push({ start: cursor, last });
      for (const h of holes) {
        const cand = h.start + ((((offset - h.start) % step) + step) % step);
        if (cand + length - 1n <= h.last) return cand;
      }
    }
    fail('ENOSPC', 'no hole');
  }

  private checkBacking(ioas: MIoas, area: Area): void {
    const a = this.alignOf(ioas);
    if (area.phys % a !== 0n || (area.last - area.iova + 1n) % a !== 0n || area.iova % a !== 0n) fail('EINVAL', 'backing misaligned');
  }

  /** A domain cannot hold an output address of 2^52 or more (ERANGE). */
  private checkOutput(ioas: MIoas, areas: Area[]): void {
    if (ioas.hwpts.size > 0 && areas.some((x) => x.phys + (x.last - x.iova) >= OUTPUT_LIMIT)) fail('ERANGE', 'output beyond 52 bits');
  }

  private insert(ioas: MIoas, areas: Area[]): void {
    ioas.areas.push(...areas);
    ioas.areas.sort((x, y) => (x.iova < y.iova ? -1 : 1));
  }

  unmap(fdIndex: number, ioasId: number, iova: bigint, length: bigint): bigint {
    const fd = this.open(fdIndex);
    const all = iova === 0n && length === U64_MAX;
    if (!all && (iova >= U64_MAX || length >= U64_MAX)) fail('EOVERFLOW', 'iova or length >= U64_MAX');
    const ioas = this.getIoas(fd, ioasId);
    if (length === 0n) fail('EINVAL', 'zero length');
    const last = all ? U64_MAX : iova + length - 1n;
    if (last > U64_MAX) fail('EOVERFLOW', 'wraps');
    // Pinned areas: ask the pinning accesses (each area, each access in creation order), then look
    // the range up again — the callbacks may have changed the IOAS (iopt_unmap_iova_range's retry).
    for (let round = 0; ; round++) {
      const hit = ioas.areas.filter((x) => overlaps(x.iova, x.last, iova, last));
      if (hit.some((x) => x.iova < iova || x.last > last)) fail('ENOENT', 'a mapping is only partly inside');
      if (hit.length === 0) {
        if (all) return 0n;
        fail('ENOENT', 'nothing mapped');
      }
      const accesses = [...ioas.accesses];
      const pinnedBy = (acc: MAccess, x: Area): boolean => ioas.accesses.has(acc) && acc.pins.some((p) => overlaps(p.start, p.last, x.iova, x.last));
      if (hit.some((x) => accesses.some((acc) => pinnedBy(acc, x)))) {
        if (round >= 100) fail('EDEADLOCK', 'pins not released by onUnmap');
        for (const x of hit) for (const acc of accesses) if (pinnedBy(acc, x)) this.react(acc, x.iova, x.last - x.iova + 1n);
        continue;
      }
      ioas.areas = ioas.areas.filter((x) => !hit.includes(x));
      // The leaves go, and their D bits with them.
      for (const h of ioas.hwpts) for (const s of [...h.dirty]) if (hit.some((x) => x.iova <= s && s <= x.last)) h.dirty.delete(s);
      return hit.reduce((s, x) => s + (x.last - x.iova + 1n), 0n);
    }
  }

  // ---- dirty tracking ----------------------------------------------------------------------

  private dirtyHwpt(fdIndex: number, id: number): MHwpt {
    const fd = this.open(fdIndex);
    const h = fd.objs.get(id);
    if (!(h instanceof MHwpt)) fail('ENOENT', `no HWPT ${id}`);
    if (!h.dirtyTracking) fail('EOPNOTSUPP', 'not allocated with dirty tracking');
    return h;
  }

  setDirty(fdIndex: number, id: number, enable: boolean): void {
    const h = this.dirtyHwpt(fdIndex, id);
    if (enable) h.dirty.clear(); // turning tracking on starts from clean leaves
    h.dirtyEnabled = enable;
  }

  /** GET_DIRTY_BITMAP: bit n = page iova + n * pageSize lies in a dirty leaf; clears those leaves unless noClear. */
  dirtyBitmap(fdIndex: number, id: number, iova: bigint, length: bigint, pageSize: bigint, noClear: boolean): bigint[] {
    const h = this.dirtyHwpt(fdIndex, id);
    if (length === 0n) fail('EINVAL', 'zero length');
    const last = iova + length - 1n;
    if (last > U64_MAX) fail('EOVERFLOW', 'wraps');
    if (pageSize === 0n || (pageSize & (pageSize - 1n)) !== 0n) fail('EINVAL', 'page size not a power of two');
    const align = this.alignOf(h.ioas);
    if (iova % align !== 0n || (last + 1n) % align !== 0n) fail('EINVAL', 'not aligned to the IOAS');
    if (iova % pageSize !== 0n || (last + 1n) % pageSize !== 0n) fail('EINVAL', 'not aligned to the page size');
    const bits = length / pageSize;
    if (bits > 1n << 32n) fail('ENOMEM', 'bitmap too large');
    const words: bigint[] = new Array(Math.ceil(Number(bits) / 64)).fill(0n);
    for (const s of [...h.dirty]) {
      const area = h.ioas.areas.find((x) => x.iova <= s && s <= x.last)!;
      const hi = s + (1n << BigInt(12 + 9 * this.leafLevel(area, s))) - 1n;
      if (!overlaps(s, hi, iova, last)) continue;
      const from = (maxB(s, iova) - iova) / pageSize;
      const to = (minB(hi, last) - iova) / pageSize;
      for (let b = from; b <= to; b++) words[Number(b / 64n)] = words[Number(b / 64n)]! | (1n << (b % 64n));
      if (!noClear) h.dirty.delete(s);
    }
    return words;
  }

  /** A pinning access's onUnmap(iova, length) (ops.ts React), its calls' errors ignored. */
  private react(acc: MAccess, iova: bigint, length: bigint): void {
    if (acc.react === 'none') return;
    const last = iova + length - 1n;
    const quiet = (f: () => unknown): void => {
      try {
        f();
      } catch (e) {
        if (!(e instanceof ModelError)) throw e;
      }
    };
    for (const p of acc.pins.filter((p) => overlaps(p.start, p.last, iova, last))) quiet(() => this.unpin(acc.fd, acc.id, p.start, p.last - p.start + 1n));
    if (acc.react === 'unpin-map') quiet(() => this.map(acc.fd, acc.ioas.id, { length: PAGE, phys: 0x4000_0000n }));
    else if (acc.react === 'unpin-unmap') quiet(() => this.unmap(acc.fd, acc.ioas.id, 0n, U64_MAX));
    else if (acc.react === 'unpin-copy') quiet(() => this.copy(acc.fd, { dstIoas: acc.ioas.id, srcIoas: acc.ioas.id, srcIova: iova, length }));
  }

  // ---- access objects (software DMA) --------------------------------------------------------

  accessCreate(fdIndex: number, ioasId: number, react: string | undefined): number {
    const fd = this.open(fdIndex);
    const ioas = this.getIoas(fd, ioasId);
    // A pinning access needs whole pages: every mapping must already be page aligned.
    if (react !== undefined && this.alignOf(ioas) < PAGE && ioas.areas.some((a) => a.iova % PAGE !== 0n || (a.last + 1n) % PAGE !== 0n || a.phys % PAGE !== 0n)) {
      fail('EADDRINUSE', 'mappings not page aligned');
    }
    const acc = this.publish(fd, new MAccess(fdIndex, ioas, react));
    ioas.accesses.add(acc);
    return acc.id;
  }

  private accessRange(fdIndex: number, id: number, iova: bigint, length: bigint): { acc: MAccess; r: Range } {
    const fd = this.open(fdIndex);
    const acc = fd.objs.get(id);
    if (!(acc instanceof MAccess)) fail('ENOENT', `no access ${id}`);
    if (length === 0n) fail('EINVAL', 'zero length');
    const last = iova + length - 1n;
    if (last > U64_MAX) fail('EOVERFLOW', 'wraps');
    return { acc, r: { start: iova, last } };
  }

  pin(fdIndex: number, id: number, iova: bigint, length: bigint): void {
    const { acc, r } = this.accessRange(fdIndex, id, iova, length);
    if (acc.react === undefined) fail('EINVAL', 'no onUnmap');
    if (r.start % PAGE !== 0n || (r.last + 1n) % PAGE !== 0n) fail('EINVAL', 'not page aligned');
    // Covered by contiguous areas.
    let at = r.start;
    for (const a of acc.ioas.areas) {
      if (a.last < at) continue;
      if (a.iova > at) break;
      at = a.last + 1n;
      if (at > r.last) break;
    }
    if (at <= r.last) fail('ENOENT', 'not fully mapped');
    acc.pins.push(r);
  }

  unpin(fdIndex: number, id: number, iova: bigint, length: bigint): void {
    const { acc, r } = this.accessRange(fdIndex, id, iova, length);
    const i = acc.pins.findIndex((p) => p.start === r.start && p.last === r.last);
    if (i < 0) fail('ENOENT', 'no such pin');
    acc.pins.splice(i, 1);
  }

  copy(fdIndex: number, a: { dstIoas: number; srcIoas: number; srcIova: bigint; length: bigint; dstIova?: bigint; read?: boolean; write?: boolean }): bigint {
    const fd = this.open(fdIndex);
    const read = a.read ?? true;
    const write = a.write ?? true;
    if (a.length >= U64_MAX || a.srcIova >= U64_MAX || (a.dstIova ?? 0n) >= U64_MAX) fail('EOVERFLOW', '>= U64_MAX');
    if (!read && !write) fail('EINVAL', 'no permission');
    const src = this.getIoas(fd, a.srcIoas);
    if (a.length === 0n) fail('EINVAL', 'zero length');
    const srcLast = a.srcIova + a.length - 1n;
    if (srcLast > U64_MAX) fail('EOVERFLOW', 'src wraps');
    // The source must be covered by contiguous areas, no hole.
    const slices: { area: Area; start: bigint; last: bigint }[] = [];
    let at = a.srcIova;
    for (;;) {
      const area = src.areas.find((x) => x.iova <= at && at <= x.last);
      if (!area || (slices.length > 0 && area.iova !== at)) fail('ENOENT', 'source not fully mapped');
      const end = minB(area.last, srcLast);
      slices.push({ area, start: at, last: end });
      if (end === srcLast) break;
      at = end + 1n;
    }
    const dst = this.getIoas(fd, a.dstIoas);
    if (a.length % this.alignOf(dst) !== 0n) fail('EINVAL', 'length misaligned');
    const first = slices[0]!;
    const firstPhys = first.area.phys + (first.start - first.area.iova);
    const iova = a.dstIova === undefined ? this.allocIova(dst, firstPhys, a.length) : this.checkFixed(dst, a.dstIova, a.length);
    const created: Area[] = [];
    let cur = iova;
    for (const s of slices) {
      if (write && !s.area.write) fail('EPERM', 'read-only source');
      const len = s.last - s.start + 1n;
      const area: Area = { iova: cur, last: cur + len - 1n, phys: s.area.phys + (s.start - s.area.iova), read, write };
      this.checkBacking(dst, area);
      created.push(area);
      cur += len;
    }
    this.checkOutput(dst, created);
    this.insert(dst, created);
    return iova;
  }

  ranges(fdIndex: number, ioasId: number): { ranges: Range[]; alignment: bigint } {
    const fd = this.open(fdIndex);
    return this.iovaRanges(this.getIoas(fd, ioasId));
  }

  allow(fdIndex: number, ioasId: number, ranges: Range[]): void {
    const fd = this.open(fdIndex);
    const ioas = this.getIoas(fd, ioasId);
    for (const r of ranges) if (r.start >= r.last) fail('EINVAL', 'start >= last');
    const sorted = [...ranges].sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
    for (let i = 1; i < sorted.length; i++) if (sorted[i]!.start <= sorted[i - 1]!.last) fail('EINVAL', 'overlap');
    const resv = this.reservedOf(ioas);
    if (sorted.some((r) => resv.some((x) => overlaps(x.start, x.last, r.start, r.last)))) fail('EADDRINUSE', 'hits reserved');
    ioas.allowed = sorted.map((r) => ({ ...r }));
  }

  // ---- PASIDs --------------------------------------------------------------------------------

  pasidAlloc(fdIndex: number, want?: number): number {
    const fd = this.open(fdIndex);
    const limit = 2 ** this.cfg.pasidBits;
    if (want !== undefined) {
      if (want < 1 || want >= limit) fail('EINVAL', 'pasid out of range');
      if (this.pasidOwner.has(want)) fail('EEXIST', 'pasid taken');
      this.pasidOwner.set(want, fd);
      return want;
    }
    for (let p = 1; p < limit; p++) {
      if (!this.pasidOwner.has(p)) {
        this.pasidOwner.set(p, fd);
        return p;
      }
    }
    fail('ENOSPC', 'no pasid left');
  }

  pasidFree(fdIndex: number, pasid: number): void {
    const fd = this.open(fdIndex);
    if (this.pasidOwner.get(pasid) !== fd) fail('ENOENT', 'not this FD\'s PASID');
    if ((this.pasidUses.get(pasid) ?? 0) > 0) fail('EBUSY', 'pasid attached');
    this.pasidOwner.delete(pasid);
  }

  // ---- HWPT ----------------------------------------------------------------------------------

  hwptAlloc(fdIndex: number, a: { devId: number; ptId: number; pasid?: boolean; nestParent?: boolean; dirtyTracking?: boolean; faultId?: number }): number {
    const fd = this.open(fdIndex);
    if (a.faultId !== undefined && a.nestParent) fail('EOPNOTSUPP', 'faultId with nestParent');
    const dev = fd.objs.get(a.devId);
    if (!(dev instanceof MDevObj)) fail('ENOENT', 'no device');
    if (a.dirtyTracking && !dev.dev.dirty) fail('EOPNOTSUPP', 'device without dirty tracking');
    const ioas = fd.objs.get(a.ptId);
    if (!(ioas instanceof MIoas)) fail('EINVAL', 'pt not an IOAS');
    const q = a.faultId === undefined ? undefined : fd.objs.get(a.faultId);
    if (a.faultId !== undefined && !(q instanceof MFault)) fail('ENOENT', 'no fault queue');
    const h = this.makeHwpt(ioas, false, a.pasid ?? false, a.nestParent ?? false, a.dirtyTracking ?? false);
    if (q instanceof MFault) {
      h.fault = q;
      q.hwpts.add(h);
    }
    return this.publish(fd, h).id;
  }

  /** A new HWPT on `ioas` (not yet published): the domain must be able to hold every area. */
  private makeHwpt(ioas: MIoas, auto: boolean, pasid: boolean, nestParent: boolean, dirtyTracking?: boolean): MHwpt {
    let live = 0;
    for (const fd of this.fds) for (const o of fd.objs.values()) if (o instanceof MHwpt) live++;
    if (live >= this.cfg.maxDomains - 1) fail('ENOMEM', 'no domain slot left');
    if (this.alignOf(ioas) < PAGE) {
      if (ioas.areas.some((x) => x.iova % PAGE !== 0n || (x.last + 1n - x.iova) % PAGE !== 0n || x.phys % PAGE !== 0n)) {
        fail('EADDRINUSE', 'a mapping is not page aligned');
      }
    }
    const outside = { start: 1n << BigInt(this.cfg.addressWidth), last: U64_MAX };
    if (ioas.areas.some((x) => overlaps(x.iova, x.last, outside.start, outside.last))) fail('EADDRINUSE', 'a mapping is outside the aperture');
    if (ioas.allowed.some((x) => overlaps(x.start, x.last, outside.start, outside.last))) fail('EADDRINUSE', 'an allowed range is outside the aperture');
    if (ioas.areas.some((x) => x.phys + (x.last - x.iova) >= OUTPUT_LIMIT)) fail('ERANGE', 'output beyond 52 bits');
    const h = new MHwpt(ioas, auto, pasid, nestParent, dirtyTracking);
    ioas.hwpts.add(h);
    return h;
  }

  // ---- devices -------------------------------------------------------------------------------

  addDevice(bdf: string, pasidBits: number | undefined, reserved: Range[], dirty = false, pri = false): number {
    const m = BDF.exec(bdf) ?? fail('EINVAL', 'bad bdf');
    if (m[1] !== undefined && parseInt(m[1], 16) !== 0) fail('EINVAL', 'one IOMMU serves PCI segment 0');
    const rid = (parseInt(m[2]!, 16) << 8) | (parseInt(m[3]!, 16) << 3) | parseInt(m[4]!, 10);
    const bits = pasidBits ?? this.cfg.pasidBits;
    if (!Number.isInteger(bits) || bits < 0 || bits > this.cfg.pasidBits) fail('EINVAL', 'pasidBits');
    for (const r of reserved) if (r.start < 0n || r.last < r.start || r.last > U64_MAX) fail('EINVAL', 'bad region');
    if (this.devices.some((d) => d.rid === rid)) fail('EEXIST', 'rid present');
    this.devices.push(new MDevice(rid, bdf.toLowerCase(), bits, reserved.map((r) => ({ ...r })), dirty, pri));
    return this.devices.length - 1;
  }

  bind(devIndex: number, fdIndex: number): number {
    const d = this.devices[devIndex]!;
    const fd = this.open(fdIndex);
    if (d.fd) fail('EINVAL', 'already bound');
    const obj = this.publish(fd, new MDevObj(d));
    d.fd = fd;
    d.obj = obj;
    fd.devices.add(d);
    return obj.id;
  }

  unbind(devIndex: number): void {
    const d = this.devices[devIndex]!;
    if (!d.fd) fail('EINVAL', 'not bound');
    this.unbindDevice(d);
  }

  private unbindDevice(d: MDevice): void {
    const fd = d.fd!;
    for (const p of [...d.att.keys()].sort((x, y) => y - x)) this.detachOne(d, p);
    fd.objs.delete(d.obj!.id);
    fd.devices.delete(d);
    d.fd = undefined;
    d.obj = undefined;
  }

  attach(devIndex: number, ptId: number, pasidArg?: number): number {
    const d = this.devices[devIndex]!;
    const fd = d.fd ?? fail('EINVAL', 'not bound');
    let pasid = NO_PASID;
    if (pasidArg !== undefined) {
      if (!Number.isInteger(pasidArg) || pasidArg < 0 || pasidArg >= 2 ** PASID_ARG_BITS) fail('EINVAL', 'pasid value');
      pasid = pasidArg;
      if (pasid !== NO_PASID) {
        if (d.pasidBits === 0) fail('EINVAL', 'device without PASIDs');
        if (pasid >= 2 ** d.pasidBits) fail('EINVAL', 'pasid beyond the device width');
        if (this.pasidOwner.get(pasid) !== fd) fail('EPERM', 'PASID not allocated by the bound FD');
      }
    }
    const target = fd.objs.get(ptId) ?? fail('ENOENT', 'no such object');
    if (target instanceof MDevObj || target instanceof MAccess || target instanceof MFault) fail('EINVAL', 'not an IOAS or HWPT');
    if (target instanceof MIoas && pasid !== NO_PASID) fail('EINVAL', 'PASID needs a PASID HWPT');
    if (target instanceof MHwpt) this.checkCompat(d, pasid, target.pasid, target.dirtyTracking ?? false);
    const old = d.att.get(pasid);
    if (old === target) return old.id;

    let h: MHwpt;
    let made = false;
    if (target instanceof MIoas) {
      const auto = [...target.hwpts].find((x) => x.auto);
      // An auto HWPT is never PASID-capable; refused before one is made.
      this.checkCompat(d, pasid, auto?.pasid ?? false, false);
      if (auto) h = auto;
      else {
        h = this.makeHwpt(target, true, false, false);
        made = true;
      }
    } else {
      h = target;
    }
    try {
      const oldRidIoas = d.att.get(NO_PASID)?.ioas;
      if (pasid === NO_PASID && oldRidIoas !== h.ioas) {
        for (const r of d.reserved) {
          if (h.ioas.areas.some((x) => overlaps(x.iova, x.last, r.start, r.last))) fail('EADDRINUSE', 'reserved region hits a mapping');
          if (h.ioas.allowed.some((x) => overlaps(x.start, x.last, r.start, r.last))) fail('EADDRINUSE', 'reserved region hits an allowed range');
        }
      }
    } catch (e) {
      if (made) h.ioas.hwpts.delete(h);
      throw e;
    }
    if (made) this.publish(fd, h);
    h.users++;
    d.att.set(pasid, h);
    if (pasid !== NO_PASID && !old) this.pasidUses.set(pasid, (this.pasidUses.get(pasid) ?? 0) + 1);
    if (old) {
      this.leave(d, pasid, old);
      this.drop(fd, old);
    }
    return h.id;
  }

  private checkCompat(d: MDevice, pasid: number, hwptPasid: boolean, hwptDirty: boolean): void {
    if (hwptDirty && !d.dirty) fail('EINVAL', 'device without dirty tracking on a dirty-tracking HWPT');
    if (pasid !== NO_PASID) {
      if (!hwptPasid) fail('EINVAL', 'HWPT not PASID-capable');
      const rid = d.att.get(NO_PASID);
      if (rid && !rid.pasid) fail('EINVAL', 'RID HWPT not PASID-capable');
    } else if (!hwptPasid && [...d.att.keys()].some((p) => p !== NO_PASID)) {
      fail('EINVAL', 'PASIDs attached: RID needs a PASID-capable HWPT');
    }
  }

  detach(devIndex: number, pasidArg?: number): void {
    const d = this.devices[devIndex]!;
    if (!d.fd) fail('EINVAL', 'not bound');
    const pasid = pasidArg ?? NO_PASID;
    if (!Number.isInteger(pasid) || pasid < 0 || pasid >= 2 ** PASID_ARG_BITS) fail('EINVAL', 'pasid value');
    this.detachOne(d, pasid);
  }

  private detachOne(d: MDevice, pasid: number): void {
    const h = d.att.get(pasid);
    if (!h) return;
    d.att.delete(pasid);
    if (pasid !== NO_PASID) {
      const n = this.pasidUses.get(pasid)! - 1;
      if (n === 0) this.pasidUses.delete(pasid);
      else this.pasidUses.set(pasid, n);
    }
    this.leave(d, pasid, h);
    this.drop(d.fd!, h);
  }

  // ---- fault queues (page requests) ----------------------------------------------------------

  /** (d, pasid) left HWPT `h` (detach or replace): its page requests are answered INVALID. */
  private leave(d: MDevice, pasid: number, h: MHwpt): void {
    const q = h.fault;
    if (!q) return;
    const match = (r: MReq): boolean => r.dev === d && r.pasid === pasid && r.hwpt === h;
    for (const r of q.queued.filter(match)) this.respond(r, 'invalid');
    q.queued = q.queued.filter((r) => !match(r));
    for (const [cookie, r] of [...q.pending]) {
      if (!match(r)) continue;
      q.pending.delete(cookie);
      this.respond(r, 'invalid');
    }
  }

  private respond(r: MReq, code: 'success' | 'invalid'): void {
    r.dev.responses.push({ pasidValid: r.pasid !== NO_PASID, pasid: r.pasid, grpid: r.grpid, addr: r.addr, code });
  }

  faultAlloc(fdIndex: number): number {
    return this.publish(this.open(fdIndex), new MFault()).id;
  }

  private faultFd(fdIndex: number, id: number): MFault {
    const q = this.open(fdIndex).objs.get(id);
    if (!(q instanceof MFault)) fail('ENOENT', 'no fault queue');
    if (!q.fdOpen) fail('EBADF', 'fault FD closed');
    return q;
  }

  faultRead(fdIndex: number, id: number, max: number | undefined): unknown[] {
    const q = this.faultFd(fdIndex, id);
    const out: unknown[] = [];
    while (out.length < (max ?? Infinity) && q.queued.length > 0) {
      const r = q.queued.shift()!;
      r.cookie = q.nextCookie++;
      q.pending.set(r.cookie, r);
      out.push({ devId: r.dev.obj?.id ?? 0, pasidValid: r.pasid !== NO_PASID, pasid: r.pasid, grpid: r.grpid, perm: r.perm, addr: r.addr, length: 0, lastPage: true, cookie: r.cookie });
    }
    return out;
  }

  faultWrite(fdIndex: number, id: number, responses: { cookie: unknown; code: unknown }[]): number {
    const q = this.faultFd(fdIndex, id);
    let done = 0;
    for (const o of responses) {
      const code = o.code === 'success' || o.code === 0 ? 'success' : o.code === 'invalid' || o.code === 1 ? 'invalid' : undefined;
      const r = typeof o.cookie === 'number' ? q.pending.get(o.cookie) : undefined;
      if (code === undefined || r === undefined) {
        if (done > 0) return done;
        fail('EINVAL', 'bad response');
      }
      q.pending.delete(r.cookie);
      this.respond(r, code);
      done++;
    }
    return done;
  }

  faultClose(fdIndex: number, id: number): void {
    const q = this.fds[fdIndex]!.objs.get(id);
    if (!(q instanceof MFault)) fail('ENOENT', 'no fault queue');
    q.fdOpen = false;
  }

  /** DeviceFd.pageResponses(): taken, in a canonical order. */
  takeResponses(devIndex: number): MResp[] {
    const d = this.devices[devIndex]!;
    const out = d.responses;
    d.responses = [];
    return sortResponses(out);
  }

  /** A recoverable fault of a PRI device through a HWPT with a fault queue: one page request, unless one is outstanding. */
  private pageRequest(d: MDevice, pasid: number, h: MHwpt, addr: bigint, access: number): void {
    const q = h.fault;
    if (!q || !d.pri) return;
    const page = addr & ~(PAGE - 1n);
    const same = (r: MReq): boolean => r.dev === d && r.pasid === pasid && r.addr === page && r.perm === access;
    if (q.queued.some(same) || [...q.pending.values()].some(same)) return;
    q.queued.push({ dev: d, hwpt: h, pasid, grpid: d.grp, perm: access, addr: page, cookie: 0 });
    d.grp = (d.grp + 1) & 511;
  }

  private drop(fd: MFd, h: MHwpt): void {
    h.users--;
    if (h.auto && h.users === 0) this.remove(fd, h);
  }

  attachments(devIndex: number): [number, number][] {
    return [...this.devices[devIndex]!.att].map(([p, h]): [number, number] => [p, h.id]).sort((a, b) => a[0] - b[0]);
  }

  // ---- translation -------------------------------------------------------------------------

  /**
   * The DMA path. Order: malformed request; no device; PASID beyond the device's width; not
   * attached; beyond the table's input width; not present (level = highest table level whose
   * entry is empty); permission (level of the leaf); else the output address and leaf size.
   */
  translate(rid: unknown, pasid: unknown, iova: unknown, access: unknown): MTranslation {
    const u32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 32;
    let addr: bigint;
    if (typeof iova === 'bigint') addr = iova;
    else if (typeof iova === 'number' && Number.isInteger(iova)) addr = BigInt(iova);
    else return { ok: false, reason: 'bad-request', level: 0 };
    if (!u32(rid) || !u32(pasid) || !u32(access) || addr < 0n || addr > U64_MAX) return { ok: false, reason: 'bad-request', level: 0 };
    if (rid >= 2 ** 16 || pasid >= 2 ** PASID_ARG_BITS || (access & ~15) !== 0) return { ok: false, reason: 'bad-request', level: 0 };
    const d = this.devices.find((x) => x.rid === rid);
    if (!d) return { ok: false, reason: 'no-device', level: 0 };
    if (pasid !== NO_PASID && pasid >= 2 ** d.pasidBits) return { ok: false, reason: 'pasid-invalid', level: 0 };
    const h = d.att.get(pasid);
    if (!h) return { ok: false, reason: 'not-attached', level: 0 };
    const levels = this.levels;
    if (addr >> BigInt(this.cfg.addressWidth) !== 0n) return { ok: false, reason: 'beyond-width', level: levels - 1 };
    const areas = h.ioas.areas;
    const area = areas.find((x) => x.iova <= addr && addr <= x.last);
    if (!area) {
      for (let l = levels - 1; l >= 0; l--) {
        const size = 1n << BigInt(12 + 9 * l);
        const start = addr - (addr % size);
        if (!areas.some((x) => overlaps(x.iova, x.last, start, start + size - 1n))) {
          this.pageRequest(d, pasid, h, addr, access);
          return { ok: false, reason: 'not-present', level: l };
        }
      }
      throw new Error('model: unreachable (a 4 KiB block around an unmapped address holds a mapping)');
    }
    const level = this.leafLevel(area, addr);
    const perm = (area.read ? 1 : 0) | (area.write ? 2 : 0);
    const need = ((access & 1) || (access & 4) ? 1 : 0) | (access & 2);
    if ((perm & need) !== need) {
      this.pageRequest(d, pasid, h, addr, access);
      return { ok: false, reason: 'permission', level };
    }
    // A write through a tracking HWPT dirties its leaf.
    if (access & 2 && h.dirtyEnabled) h.dirty.add(addr - (addr % (1n << BigInt(12 + 9 * level))));
    return { ok: true, phys: area.phys + (addr - area.iova), sizeLg2: 12 + 9 * level, perm };
  }

  /**
   * Level of the leaf mapping `addr` inside `area`: the largest leaf (1 GiB, 2 MiB, 4 KiB, not
   * above the table's top level) whose aligned block around `addr` lies wholly inside the area
   * and whose IOVA and output address are equally aligned. That is what a greedy "largest leaf
   * that fits" map produces.
   */
  leafLevel(area: Area, addr: bigint): number {
    const maxLeaf = Math.min(this.levels - 1, 2);
    for (let l = maxLeaf; l >= 1; l--) {
      const size = 1n << BigInt(12 + 9 * l);
      if ((area.iova - area.phys) % size !== 0n) continue;
      const start = addr - (addr % size);
      if (start >= area.iova && start + size - 1n <= area.last) return l;
    }
    return 0;
  }

  // ---- software DMA --------------------------------------------------------------------------

  /** True when guest-physical [phys, phys + n) is all RAM (adjoining windows count as one range). */
  ramCovers(phys: bigint, n: number): boolean {
    let at = phys;
    const end = phys + BigInt(n);
    for (const w of this.ram) {
      const wEnd = w.base + BigInt(w.bytes.length);
      if (w.base <= at && at < wEnd) at = wEnd;
      if (at >= end) return true;
    }
    return at >= end;
  }

  /** Copies between `data[from, from + n)` and guest-physical [phys, phys + n) (which is RAM). */
  private ramCopy(phys: bigint, data: Uint8Array, from: number, n: number, toRam: boolean): void {
    while (n > 0) {
      const w = this.ram.find((x) => x.base <= phys && phys < x.base + BigInt(x.bytes.length))!;
      const at = Number(phys - w.base);
      const k = Math.min(n, w.bytes.length - at);
      if (toRam) w.bytes.set(data.subarray(from, from + k), at);
      else data.set(w.bytes.subarray(at, at + k), from);
      phys += BigInt(k);
      from += k;
      n -= k;
    }
  }

  /**
   * dmaRead (`write` false: RAM into `data`) or dmaWrite (`data` into RAM) of `data.length` bytes
   * at `iova`. The span is walked leaf by leaf with `translate` (access Read or Write: faults raise
   * page requests and written leaves get dirty exactly as translations do); it stops before the
   * first leaf that faults, or whose part of the span does not lie wholly in guest RAM (`not-ram`
   * with that leaf's output address). Bytes before it are copied. Faults of the translations are
   * logged (`log`), as per-call translation faults are, and so are malformed requests (a RID or
   * PASID that is not a u32, a negative or fractional IOVA, an address that reaches 2^64 after the
   * bytes done before it). Not logged, as the engine does it: `not-ram` (the translation succeeded).
   * A zero-length transfer does nothing, whatever its arguments.
   */
  dma(rid: number, pasid: number, iova: bigint | number, data: Uint8Array, write: boolean): MDma {
    this.lastDma = [];
    const n = data.length;
    if (n === 0) return { bytes: 0, log: [] };
    const u32 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v < 2 ** 32;
    const bad: MDma = { bytes: 0, fault: { reason: 'bad-request', level: 0, stage: 0 }, log: [{ reason: 'bad-request', level: 0, stage: 0 }] };
    if (typeof iova === 'number' && !(Number.isInteger(iova) && iova >= 0)) return bad;
    const addr = BigInt(iova);
    if (!u32(rid) || !u32(pasid) || addr < 0n) return bad;
    const access = write ? 2 : 1;
    let done = 0;
    let fault: MDmaFault | undefined;
    const log: MLogRecord[] = [];
    while (done < n) {
      const at = addr + BigInt(done);
      if (at > U64_MAX) { // no address: refused before the core, and logged as any bad request
        fault = { reason: 'bad-request', level: 0, stage: 0 };
        log.push({ ...fault });
        break;
      }
      const t = this.translate(rid, pasid, at, access);
      if (!t.ok) {
        fault = { reason: t.reason, level: t.level, stage: 0 };
        log.push(t.reason === 'bad-request' ? { ...fault } : { ...fault, rid, pasid, iova: at, access });
        break;
      }
      const size = 1n << BigInt(t.sizeLg2);
      const room = size - (at % size);
      const chunk = BigInt(n - done) < room ? n - done : Number(room);
      if (!this.ramCovers(t.phys, chunk)) {
        fault = { reason: 'not-ram', level: 0, stage: 0, phys: t.phys };
        break;
      }
      this.lastDma.push({ phys: t.phys, n: chunk, sizeLg2: t.sizeLg2 });
      done += chunk;
    }
    let from = 0;
    for (const c of this.lastDma) {
      this.ramCopy(c.phys, data, from, c.n, write);
      from += c.n;
    }
    return { bytes: done, ...(fault ? { fault } : {}), log };
  }
}

/** Responses ordered by (pasid, grpid, addr, code): a device's list compared as a set. */
export function sortResponses(list: MResp[]): MResp[] {
  const key = (r: MResp): string => `${r.pasid.toString().padStart(8, '0')}:${r.grpid.toString().padStart(3, '0')}:${r.addr.toString(16).padStart(16, '0')}:${r.code}`;
  return [...list].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}
