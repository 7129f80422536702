/**
 * The differential harness: runs ops on the engine and on the model, compares outcomes (values,
 * errnos, translations, fault logs), scans the guard regions after every op and, every few ops,
 * compares the engine's internal state (objects, areas, reserved/allowed ranges, users, IDs,
 * PASIDs, page-table pages) with what the model implies. Also the campaign loop and a delta-
 * debugging minimiser for divergent op lists.
 *
 * The engine is passed in (`EngineApi`) rather than imported, so vitest can hand it src/ and the
 * CLI scripts a bundle of the same sources; only types are imported here.
 * @module
 */
import type { DeviceFd, Iommu, IommuFd, Translation, TranslationOut, Batch, IoasAccess, RestoreOptions, Restored, Translator, TranslatorHandle, FaultQueueFd } from '../../src/index';
import type * as Testing from '../testing';
import { Gen, type GenOptions } from './gen';
import { MAccess, MFault, MHwpt, MIoas, Model, ramImage, sortResponses, U64_MAX, type Area, type ModelConfig, type RamWindow } from './model';
import { applicable, dmaData, dmaOutcome, DMA_SENTINEL, REACT_PHYS, runModel, show, type Op, type Outcome, type React, type Req } from './ops';
import { Rng } from './rng';

/** What the harness needs from the engine package (src/index plus test/testing). */
export interface EngineApi {
  Iommu: { createSync(opts?: object): Iommu; restore(bytes: Uint8Array, opts?: RestoreOptions): Restored };
  IommuError: new (...args: never[]) => Error & { errno: string };
  TranslationOut: new () => TranslationOut;
  /** Optional: without it, `handle` ops are not run (the generator makes none). */
  Translator?: { attach(handle: TranslatorHandle): Translator };
  FAULT_REASONS: readonly string[];
  testing: typeof Testing;
}

export interface EngineConfig extends ModelConfig {
  iotlbEntries: number;
  shared: boolean;
  maxMemoryBytes: number;
}

const TWO_53 = 2n ** 53n;

/**
 * The fuzzed engines' guest RAM (epochConfig): windows in buffers the harness owns, so the engine's
 * memory and page accounting are the same as without RAM. The first two adjoin at 0x3f_0000,
 * inside the 2 MiB leaf that ends at 4 MiB (one leaf's bytes lie in both) and 64 KiB before the
 * 2 MiB boundary that the second spans (a transfer there crosses leaves inside one window); the
 * third, after a gap, starts at 1 GiB (the start of a 1 GiB leaf). Engine tables live in the
 * engine's memory, never here: only software DMA writes these bytes.
 */
export const FUZZ_RAM: readonly RamWindow[] = [
  { base: 0x3c_0000n, bytes: 192 << 10 },
  { base: 0x3f_0000n, bytes: 320 << 10 },
  { base: 0x4000_0000n, bytes: 192 << 10 },
];

/** Buffers for RAM windows `ram` (shared ones for a shared engine: workers must reach them), holding `ramImage` or, with `garbage`, that byte. */
function ramBuffers(ram: readonly RamWindow[], shared: boolean, garbage?: number): { base: bigint; buffer: ArrayBuffer | SharedArrayBuffer; bytes: Uint8Array }[] {
  return ram.map((w) => {
    const buffer = shared ? new SharedArrayBuffer(w.bytes) : new ArrayBuffer(w.bytes);
    const bytes = new Uint8Array(buffer);
    if (garbage === undefined) bytes.set(ramImage(w));
    else bytes.fill(garbage);
    return { base: w.base, buffer, bytes };
  });
}

/** The engine side of a run: the Iommu, its FDs and devices by creation index. */
export class EngineSide {
  /** Replaced, with the FDs, devices and accesses, by a `snapshot` op's restore. */
  iommu: Iommu;
  fds: IommuFd[] = [];
  devs: DeviceFd[] = [];
  /** Access objects by `${fd}:${id}`, with the IOAS and reaction their onUnmap was made with. */
  private accesses = new Map<string, { access: IoasAccess; ioas: number; react?: React }>();
  /** In-thread worker translators by slot, with their handles; released handles are kept (stale). */
  private workers = new Map<number, { handle: TranslatorHandle; t: Translator }>();
  /** Fault FDs by `${fd}:${id}` of their FAULT object. */
  private faultFds = new Map<string, FaultQueueFd>();
  private stale = new Map<number, TranslatorHandle>();
  private batch: Batch;
  private readonly out: TranslationOut;
  /** Pages taken by buffers (the batch ring), outside the page tables. */
  readonly bufferPages: number;
  /** Guest RAM (cfg.ram): this engine's windows, in buffers the harness owns (a restore gets new ones). */
  ram: { base: bigint; buffer: ArrayBuffer | SharedArrayBuffer; bytes: Uint8Array }[];

  constructor(readonly api: EngineApi, cfg: EngineConfig, translators = 3) {
    this.ram = ramBuffers(cfg.ram ?? [], cfg.shared);
    this.iommu = api.Iommu.createSync({
      addressWidth: cfg.addressWidth, pasidBits: cfg.pasidBits, iotlbEntries: cfg.iotlbEntries,
      shared: cfg.shared, maxMemoryBytes: cfg.maxMemoryBytes, maxDomains: cfg.maxDomains, translators,
      ...(this.ram.length > 0 ? { ram: this.ram.map((w) => ({ base: w.base, bytes: w.bytes.length, buffer: w.buffer })) } : {}),
    });
    const before = api.testing.poolState(this.iommu).pagesUsed;
    this.batch = this.iommu.batch(16);
    this.bufferPages = api.testing.poolState(this.iommu).pagesUsed - before;
    this.out = new api.TranslationOut();
  }

  /** Pages of the live worker translators' batch rings. */
  ringPages(): number {
    let n = 0;
    for (const w of this.workers.values()) n += Math.ceil((w.handle.batch.capacity * 32) / 4096);
    return n;
  }

  /** A pinning access's onUnmap (ops.ts React), found by key so a restored access gets it too. */
  private onUnmap(fd: number, key: string, iova: bigint, length: bigint): void {
    const a = this.accesses.get(key);
    if (!a || a.react === 'none') return;
    const last = iova + length - 1n;
    const quiet = (f: () => unknown): void => {
      try {
        f();
      } catch (e) {
        if (!(e instanceof this.api.IommuError)) throw e;
      }
    };
    for (const p of a.access.pinned().filter((p) => p.start <= last && p.last >= iova)) quiet(() => a.access.unpin(p.start, p.last - p.start + 1n));
    const f = this.fds[fd]!;
    if (a.react === 'unpin-map') quiet(() => f.ioasMap(a.ioas, { length: 4096n, phys: REACT_PHYS }));
    else if (a.react === 'unpin-unmap') quiet(() => f.ioasUnmap(a.ioas, 0n, U64_MAX));
    else if (a.react === 'unpin-copy') quiet(() => f.ioasCopy({ dstIoas: a.ioas, srcIoas: a.ioas, srcIova: iova, length }));
  }

  /** The access `id` of FD `fd`: EBADF once the FD is closed, ENOENT when there is none. */
  private access(fd: number, id: number): IoasAccess {
    const a = this.accesses.get(`${fd}:${id}`);
    if (a) return a.access;
    const Err = this.api.IommuError as unknown as new (errno: string, op: string, detail: string) => Error;
    throw new Err(this.fds[fd]!.closed ? 'EBADF' : 'ENOENT', 'access', `no access ${id} in FD ${fd}`);
  }

  /** The fault FD of FAULT object `id` of FD `fd`: EBADF once the FD is closed, ENOENT when there is none. */
  private faultFd(fd: number, id: number, live = true): FaultQueueFd {
    const q = this.faultFds.get(`${fd}:${id}`);
    if (q) return q;
    const Err = this.api.IommuError as unknown as new (errno: string, op: string, detail: string) => Error;
    throw new Err(live && this.fds[fd]!.closed ? 'EBADF' : 'ENOENT', 'fault', `no fault queue ${id} in FD ${fd}`);
  }

  /**
   * A second engine restored from a snapshot of this one, with its own FDs, devices, accesses and
   * fault FDs (this one is left as it is): the pair then runs the same ops side by side. Workers
   * are released first (a restored engine has none, and the model forgets them at a snapshot).
   */
  twin(): EngineSide {
    for (const w of this.workers.values()) this.iommu.translatorRelease(w.handle);
    this.workers.clear();
    this.stale.clear();
    const t = Object.create(EngineSide.prototype) as EngineSide;
    Object.assign(t, {
      api: this.api, iommu: this.iommu, fds: this.fds, devs: this.devs, bufferPages: this.bufferPages, ram: this.ram,
      accesses: new Map([...this.accesses].map(([k, a]) => [k, { ...a }])), workers: new Map(), faultFds: new Map(this.faultFds),
      stale: new Map(), out: new this.api.TranslationOut(),
    });
    t.restore();
    return t;
  }

  /** `snapshot` op: the engine, its FDs, devices and accesses become their restored copies. */
  private restore(): void {
    const open = this.fds.flatMap((f, i) => (f.closed ? [] : [i]));
    // New buffers full of garbage: the restore must bring back every byte of the saved RAM.
    const ram = ramBuffers(this.ram.map((w) => ({ base: w.base, bytes: w.bytes.length })), this.iommu.shared, 0x5a);
    const r = this.api.Iommu.restore(this.iommu.snapshot(), {
      ...(ram.length > 0 ? { ram: ram.map((w) => ({ base: w.base, buffer: w.buffer })) } : {}),
      onUnmap: (j, id) => {
        const key = `${open[j]}:${id}`;
        return this.accesses.get(key)?.react === undefined ? undefined : (iova, length) => this.onUnmap(open[j]!, key, iova, length);
      },
    });
    const fds = this.fds.map((f) => {
      if (!f.closed) return undefined;
      const closed = r.iommu.open();
      closed.close();
      return closed;
    });
    open.forEach((i, j) => (fds[i] = r.fds[j]!));
    for (const [key, a] of this.accesses) a.access = r.accesses[open.indexOf(Number(key.split(':')[0]))]!.get(a.access.id)!;
    for (const key of this.faultFds.keys()) {
      const [fd, id] = key.split(':').map(Number) as [number, number];
      this.faultFds.set(key, r.faultFds[open.indexOf(fd)]!.get(id)!);
    }
    this.devs = this.devs.map((d) => r.devices.get(d.bdf)!);
    this.fds = fds as IommuFd[];
    this.iommu = r.iommu;
    this.ram = ram;
    this.batch = r.iommu.batch(16);
    this.workers.clear();
    this.stale.clear();
  }

  run(op: Op): Outcome {
    try {
      return { v: this.value(op) };
    } catch (e) {
      if (e instanceof this.api.IommuError) return { e: e.errno };
      throw e;
    }
  }

  private value(op: Op): unknown {
    switch (op.k) {
      case 'open':
        this.fds.push(this.iommu.open());
        return this.fds.length - 1;
      case 'close':
        for (const key of this.accesses.keys()) if (key.startsWith(`${op.fd}:`)) this.accesses.delete(key);
        for (const key of this.faultFds.keys()) if (key.startsWith(`${op.fd}:`)) this.faultFds.delete(key);
        return this.fds[op.fd]!.close();
      case 'addDevice': {
        const dev = this.iommu.addDevice({ bdf: op.bdf, pasidBits: op.pasidBits, reservedRegions: op.reserved, dirty: op.dirty, pri: op.pri });
        this.devs.push(dev);
        return this.devs.length - 1;
      }
      case 'ioasAlloc':
        return this.fds[op.fd]!.ioasAlloc();
      case 'destroy':
        this.fds[op.fd]!.destroy(op.id);
        this.accesses.delete(`${op.fd}:${op.id}`);
        this.faultFds.delete(`${op.fd}:${op.id}`);
        return undefined;
      case 'map':
        return this.fds[op.fd]!.ioasMap(op.ioas, { iova: op.iova, length: op.length, phys: op.phys, read: op.read, write: op.write });
      case 'unmap':
        return this.fds[op.fd]!.ioasUnmap(op.ioas, op.iova, op.length);
      case 'copy':
        return this.fds[op.fd]!.ioasCopy({ dstIoas: op.dst, srcIoas: op.src, srcIova: op.srcIova, length: op.length, dstIova: op.dstIova, read: op.read, write: op.write });
      case 'ranges':
        return this.fds[op.fd]!.ioasIovaRanges(op.ioas);
      case 'allow':
        return this.fds[op.fd]!.ioasAllowIovas(op.ioas, op.ranges);
      case 'pasidAlloc':
        return this.fds[op.fd]!.pasidAlloc(op.pasid === undefined ? undefined : { pasid: op.pasid });
      case 'pasidFree':
        return this.fds[op.fd]!.pasidFree(op.pasid);
      case 'hwptAlloc':
        return this.fds[op.fd]!.hwptAlloc({ devId: op.devId, ptId: op.ptId, pasid: op.pasid, nestParent: op.nestParent, dirtyTracking: op.dirtyTracking, faultId: op.faultId });
      case 'bind':
        return this.devs[op.dev]!.bind(this.fds[op.fd]);
      case 'unbind':
        return this.devs[op.dev]!.unbind();
      case 'attach':
        return this.devs[op.dev]!.attach(op.pt, op.pasid === undefined ? undefined : { pasid: op.pasid });
      case 'detach':
        return this.devs[op.dev]!.detach(op.pasid === undefined ? undefined : { pasid: op.pasid });
      case 'inspect': {
        const fd = this.fds[op.fd]!;
        return {
          objects: fd.objects(),
          pasids: fd.pasids(),
          attachments: this.devs.map((d) => [...d.attachments()].sort((a, b) => a[0] - b[0])),
          devIds: this.devs.map((d) => d.devId),
        };
      }
      case 'translate': {
        const out = this.translate(op.via, op.reqs);
        // Rings drained now (as read/poll/detach would): the model delivers at translation time.
        this.api.testing.drainPageRequests(this.iommu);
        return out;
      }
      case 'dma': {
        const out = this.dma(op);
        this.api.testing.drainPageRequests(this.iommu);
        return out;
      }
      case 'accessCreate': {
        const fd = op.fd;
        let key = '';
        const access = this.fds[fd]!.accessCreate(op.ioas, op.react === undefined ? undefined : { onUnmap: (iova, length) => this.onUnmap(fd, key, iova, length) });
        key = `${fd}:${access.id}`;
        this.accesses.set(key, { access, ioas: op.ioas, react: op.react });
        return access.id;
      }
      case 'pin':
        return this.access(op.fd, op.access).pin(op.iova, op.length);
      case 'unpin':
        return this.access(op.fd, op.access).unpin(op.iova, op.length);
      case 'snapshot':
        return this.restore();
      case 'handle': {
        const handle = this.iommu.translatorHandle({ batchCapacity: 16 });
        this.workers.set(handle.slot, { handle, t: this.api.Translator!.attach(handle) });
        return handle.slot;
      }
      case 'release': {
        const w = this.workers.get(op.slot);
        const handle = w?.handle ?? this.stale.get(op.slot) ?? ({} as TranslatorHandle);
        this.iommu.translatorRelease(handle);
        this.workers.delete(op.slot);
        this.stale.set(op.slot, handle);
        return undefined;
      }
      case 'setDirty':
        return this.fds[op.fd]!.hwptSetDirtyTracking(op.hwpt, op.enable);
      case 'faultAlloc': {
        const q = this.fds[op.fd]!.faultQueueAlloc();
        this.faultFds.set(`${op.fd}:${q.id}`, q.fd);
        return q.id;
      }
      case 'faultRead':
        return this.faultFd(op.fd, op.id).read(op.max);
      case 'faultWrite':
        return this.faultFd(op.fd, op.id).write(op.responses as never);
      case 'faultClose':
        return this.faultFd(op.fd, op.id, false).close();
      case 'responses':
        return sortResponses(this.devs[op.dev]!.pageResponses());
      case 'dirtyBitmap':
        return [...this.fds[op.fd]!.hwptGetDirtyBitmap(op.hwpt, { iova: op.iova, length: op.length, pageSize: op.pageSize, noClear: op.noClear })];
    }
  }

  /**
   * A DMA op through the owner or the lowest live worker translator, in dmaOutcome's shape: the
   * fault log (that translator's) holds exactly the records the call added.
   */
  private dma(op: Extract<Op, { k: 'dma' }>): unknown {
    let t: Pick<Translator, 'dmaRead' | 'dmaWrite' | 'faults'> = this.iommu;
    if (op.via === 'worker') {
      const w = this.workers.get(Math.min(...this.workers.keys()));
      if (!w) return 'no-worker';
      t = w.t;
    }
    t.faults.drain();
    const buf = new Uint8Array(op.length);
    if (op.write) dmaData(buf, op.seed);
    else buf.fill(DMA_SENTINEL);
    const r = op.write ? t.dmaWrite(op.rid, op.pasid, op.iova, buf) : t.dmaRead(op.rid, op.pasid, op.iova, buf);
    return dmaOutcome(r.bytes, r.fault, op.write ? undefined : buf, t.faults.drain());
  }

  /**
   * Where this engine's guest RAM differs from the model's: in the ranges given (each widened by
   * 64 bytes), or everywhere.
   */
  ramDiff(m: Model, ranges?: { phys: bigint; n: number }[]): string | undefined {
    for (let i = 0; i < m.ram.length; i++) {
      const want = m.ram[i]!.bytes;
      const got = this.ram[i]!.bytes;
      const base = m.ram[i]!.base;
      const at = ranges ? firstDiffIn(got, want, ranges.map((r): [number, number] => [Number(r.phys - base), r.n])) : firstDiff(got, want);
      if (at >= 0) return `guest RAM at 0x${(base + BigInt(at)).toString(16)}: engine 0x${got[at]!.toString(16)}, model 0x${want[at]!.toString(16)}`;
    }
    return undefined;
  }

  /** Translations, normalised to the model's shape; also checks the fault log and batch counts. */
  private translate(via: 'call' | 'into' | 'batch' | 'worker', reqs: Req[]): unknown {
    const reasons = this.api.FAULT_REASONS;
    if (via === 'worker') {
      // The lowest live worker slot translates (its own IOTLB, maybe idle for a long time).
      const slot = Math.min(...this.workers.keys());
      const w = this.workers.get(slot);
      if (!w) return 'no-worker';
      return reqs.map(([rid, pasid, iova, access]) => {
        const t = w.t.translate(rid, pasid, iova, access);
        if (t.iova !== iova && t.fault?.reason !== 'bad-request') return { wrongIova: t.iova };
        if (t.ok) return { ok: true, phys: t.phys, sizeLg2: t.size.toString(2).length - 1, perm: t.perm };
        if (t.fault!.stage !== 0) return { ok: false, reason: 'nonzero-stage', level: -1 };
        return { ok: false, reason: t.fault!.reason, level: t.fault!.level };
      });
    }
    // Mix number and bigint IOVAs deterministically (both are accepted).
    const arg = (iova: bigint): number | bigint => (iova < TWO_53 && (iova & 0x1000n) === 0n ? Number(iova) : iova);
    if (via === 'batch') {
      const b = this.batch;
      for (let i = 0; i < reqs.length; i++) {
        const [rid, pasid, iova, access] = reqs[i]!;
        if (iova < TWO_53) b.set(i, rid, pasid, Number(iova), access);
        else if (rid >>> 0 === rid && rid < 65536 && access < 65536) {
          const w = b.requests;
          w[i * 4] = rid | (access << 16);
          w[i * 4 + 1] = pasid;
          w[i * 4 + 2] = Number(iova & 0xffffffffn);
          w[i * 4 + 3] = Number(iova >> 32n);
        } else {
          b.set(i, rid, pasid, Number.NaN, access); // not representable: must come back as bad-request
        }
      }
      const faults = b.run(reqs.length);
      const res = b.results;
      const out = reqs.map((_, i) => {
        if (b.ok(i)) return { ok: true, phys: (BigInt(res[i * 4 + 1]!) << 32n) | BigInt(res[i * 4]!), sizeLg2: b.sizeLg2(i), perm: b.perm(i) };
        // Level and stage fields of the info word (assembly/abi.ts INFO_LEVEL_SHIFT, INFO_STAGE_SHIFT).
        const info = b.info(i);
        if ((info >>> 28) & 3) return { ok: false, reason: 'nonzero-stage', level: -1 };
        return { ok: false, reason: reasons[b.reason(i)] ?? `reason-${b.reason(i)}`, level: (info >>> 24) & 15 };
      });
      const expectFaults = out.filter((t) => !t.ok).length;
      if (faults !== expectFaults) return { batchFaultCount: faults, expected: expectFaults };
      return out;
    }
    const log = this.iommu.faults;
    log.drain();
    const out = reqs.map(([rid, pasid, iova, access]) => {
      if (via === 'call') {
        const t: Translation = this.iommu.translate(rid, pasid, arg(iova), access);
        if (t.iova !== iova && t.fault?.reason !== 'bad-request') return { wrongIova: t.iova };
        if (t.ok) return { ok: true, phys: t.phys, sizeLg2: t.size.toString(2).length - 1, perm: t.perm };
        if (t.fault!.stage !== 0) return { ok: false, reason: 'nonzero-stage', level: -1 };
        return { ok: false, reason: t.fault!.reason, level: t.fault!.level };
      }
      const o = this.iommu.translateInto(this.out, rid, pasid, arg(iova), access);
      if (o.ok) {
        const phys = (BigInt(o.physHi) << 32n) | BigInt(o.physLo);
        if (o.phys !== Number(phys)) return { physMismatch: o.phys };
        return { ok: true, phys, sizeLg2: o.sizeLg2, perm: o.perm };
      }
      if (o.stage !== 0) return { ok: false, reason: 'nonzero-stage', level: -1 };
      return { ok: false, reason: reasons[o.reason], level: o.level };
    });
    // The fault log holds exactly this op's faults, in order, with their requests.
    const logged = log.drain();
    const faulted = out.map((t, i) => [t, reqs[i]!] as const).filter(([t]) => (t as { ok?: boolean }).ok === false);
    if (logged.length !== faulted.length) return { faultLog: logged.length, expected: faulted.length };
    for (let i = 0; i < logged.length; i++) {
      const f = logged[i]!;
      const [t, [rid, pasid, iova, access]] = faulted[i]!;
      const tt = t as { reason: string; level: number };
      if (f.reason !== tt.reason || f.level !== tt.level || f.stage !== 0) return { faultLogRecord: f };
      if (f.reason !== 'bad-request' && (f.rid !== rid || f.pasid !== pasid || f.iova !== iova || f.access !== access)) return { faultLogRecord: f };
    }
    return out;
  }
}

/** The first index where two equally long byte arrays (whole buffers, multiples of 4 bytes long) differ, or -1. */
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const a32 = new Int32Array(a.buffer, a.byteOffset, a.length >>> 2);
  const b32 = new Int32Array(b.buffer, b.byteOffset, b.length >>> 2);
  for (let i = 0; i < a32.length; i++) {
    if (a32[i] !== b32[i]) {
      for (let j = i * 4; ; j++) if (a[j] !== b[j]) return j;
    }
  }
  return -1;
}

/** The first index where `a` and `b` differ in one of the spans [from, from + n), each widened by 64 bytes (clipped to the arrays), or -1. */
function firstDiffIn(a: Uint8Array, b: Uint8Array, spans: [from: number, n: number][]): number {
  for (const [from, n] of spans) {
    const end = Math.min(from + n + 64, a.length);
    for (let at = Math.max(0, from - 64); at < end; at++) if (a[at] !== b[at]) return at;
  }
  return -1;
}

/** A disagreement between engine and model (or a broken invariant). */
export interface Divergence {
  index: number;
  op: Op;
  what: string;
  engine?: string;
  model?: string;
}

/** Table pages an engine-managed domain holding `areas` has (root included), per the model. */
export function expectedTablePages(m: Model, areas: Area[]): number {
  const levels = m.levels;
  let pages = 1;
  for (let l = 0; l <= levels - 2; l++) {
    // A table at level l hangs from an entry at level l+1 whose block meets an area and is not a leaf.
    const shift = BigInt(12 + 9 * (l + 1));
    const size = 1n << shift;
    const tables = new Set<bigint>();
    for (const a of areas) {
      for (let b = a.iova >> shift; b <= a.last >> shift; b++) {
        if (tables.has(b)) continue;
        const start = b << shift;
        const inside = start >= a.iova && start + size - 1n <= a.last;
        // A leaf at level l+1 or above covers the block: no table under it.
        if (inside && m.leafLevel(a, start) >= l + 1) continue;
        tables.add(b);
      }
    }
    pages += tables.size;
  }
  return pages;
}

/** Compares the engine's internals with the model; returns what differs, or undefined. */
export function deepCheck(m: Model, e: EngineSide): string | undefined {
  const t = e.api.testing;
  for (let i = 0; i < m.fds.length; i++) {
    const mf = m.fds[i]!;
    const v = t.fdView(e.fds[i]!);
    if (v.closed !== mf.closed) return `fd ${i}: closed ${v.closed}, model ${mf.closed}`;
    if (v.reserved.length > 0) return `fd ${i}: IDs left reserved: ${v.reserved}`;
    let next = 1;
    while (mf.objs.has(next)) next++;
    if (v.nextId !== next) return `fd ${i}: next ID ${v.nextId}, model ${next}`;
    const want = [...mf.objs.values()].sort((a, b) => a.id - b.id).map((o) => {
      if (o instanceof MIoas) {
        const r = m.iovaRanges(o);
        return { id: o.id, type: 'ioas', users: o.hwpts.size + o.accesses.size, areas: o.areas, allowed: o.allowed, ranges: r.ranges, alignment: r.alignment, hwpts: [...o.hwpts].map((h) => h.id).sort((a, b) => a - b) };
      }
      if (o instanceof MHwpt) {
        return {
          id: o.id, type: 'hwpt-paging', users: o.users, ioas: o.ioas.id, auto: o.auto, pasid: o.pasid, nestParent: o.nestParent,
          ...(o.dirtyTracking === undefined ? {} : { dirtyTracking: o.dirtyTracking }), tablePages: expectedTablePages(m, o.ioas.areas),
        };
      }
      if (o instanceof MAccess) return { id: o.id, type: 'access', users: 0, ioasId: o.ioas.id, pins: o.pins.length };
      if (o instanceof MFault) return { id: o.id, type: 'fault', users: o.users, queued: o.queued.length, pending: o.pending.size };
      return { id: o.id, type: 'device', users: 1, rid: o.dev.rid };
    });
    const got = v.objects.map((o) => {
      if (o.type !== 'hwpt-paging') return o;
      const { domain: _domain, ...rest } = o;
      return rest;
    });
    if (show(got) !== show(want)) return `fd ${i} objects:\n  engine ${show(got)}\n  model  ${show(want)}`;
    if (show(v.pasids) !== show(m.pasids(i))) return `fd ${i} pasids: engine ${show(v.pasids)}, model ${show(m.pasids(i))}`;
  }
  const pool = t.poolState(e.iommu);
  let hwpts = 0;
  let domainPages = 0;
  for (const f of m.fds) for (const o of f.objs.values()) if (o instanceof MHwpt) {
    hwpts++;
    domainPages += expectedTablePages(m, o.ioas.areas);
  }
  if (pool.liveDomains !== hwpts) return `live domains ${pool.liveDomains}, model HWPTs ${hwpts}`;
  if (pool.domainPages !== domainPages) return `domain table pages ${pool.domainPages}, model ${domainPages}`;
  const leaves = new Set<string>();
  for (const d of m.devices) for (const p of d.att.keys()) if (p !== 0) leaves.add(`${d.rid}:${p >> 10}`);
  if (pool.pasidLeafPages !== leaves.size) return `PASID leaf pages ${pool.pasidLeafPages}, model ${leaves.size}`;
  const accounted = pool.busPages + pool.pasidDirPages + pool.pasidLeafPages + pool.domainPages + e.bufferPages + e.ringPages();
  if (pool.pagesUsed !== accounted) return `pages used ${pool.pagesUsed}, accounted ${accounted} (${show(pool)})`;
  return e.ramDiff(m);
}

/** One run's state: model, engine and how many FDs/devices exist (for replays). */
export class Pair {
  /** Optional observer of every compared outcome (coverage statistics). */
  static tally: ((op: Op, outcome: Outcome) => void) | undefined;
  readonly model: Model;
  engine: EngineSide;
  /**
   * After a snapshot op: the restored engine, run side by side with the original (`engine`) for
   * `twinLeft` more ops; both must give the same outcomes and pass the same checks. Then one of
   * the two (chosen by the op index) is dropped and the other carries on.
   */
  private twin: EngineSide | undefined;
  private twinLeft = 0;
  constructor(api: EngineApi, readonly cfg: EngineConfig) {
    this.model = new Model(cfg);
    this.engine = new EngineSide(api, cfg);
  }

  /** Runs one op on the model and the engine(s); returns what diverged, if anything. */
  step(op: Op, index: number, deep: boolean): Divergence | undefined {
    if (!applicable(op, this.model.fds.length, this.model.devices.length)) return undefined;
    const twin = this.twin;
    if (twin && --this.twinLeft <= 0) {
      if (((index * 0x9e3779b1) >>> 31) === 1) this.engine = twin;
      this.twin = undefined;
    }
    if (op.k === 'snapshot' && !this.twin) {
      runModel(this.model, op);
      try {
        this.twin = this.engine.twin();
      } catch (err) {
        return { index, op, what: `restore threw: ${(err as Error).stack}` };
      }
      this.twinLeft = 5 + (Math.imul(index, 0x2c1b3c6d) >>> 0) % 60;
      Pair.tally?.(op, { v: undefined });
      const d = deepCheck(this.model, this.twin) ?? deepCheck(this.model, this.engine);
      return d ? { index, op, what: `state after snapshot: ${d}` } : undefined;
    }
    if (!this.twin) return this.stepOne(this.engine, op, index, deep, true);
    // Side by side: the twin first with a throwaway model copy is not possible (the model is not
    // cloneable), so the original runs against the model and the twin must give the same outcome.
    const outcome = { seen: undefined as Outcome | undefined };
    const d = this.stepOne(this.engine, op, index, deep, true, outcome);
    if (d) return d;
    const twinOut = { seen: undefined as Outcome | undefined };
    const dt = this.stepOne(this.twin, op, index, deep, false, twinOut);
    if (dt) return { ...dt, what: `restored twin: ${dt.what}` };
    if (show(twinOut.seen) !== show(outcome.seen)) return { index, op, what: 'original and restored engine disagree', engine: show(outcome.seen), model: show(twinOut.seen) };
    return undefined;
  }

  /**
   * One op on engine `engine`; with `withModel` the model runs it too and the outcomes must agree,
   * else `out.seen` receives the engine's outcome (compared by the caller). Checks guards, and the
   * engine's internals against the model when `deep`.
   */
  private stepOne(side: EngineSide, op: Op, index: number, deep: boolean, withModel: boolean, out?: { seen: Outcome | undefined }): Divergence | undefined {
    const t = side.api.testing;
    const iommu = side.iommu;
    let eo: Outcome;
    let mo: Outcome;
    // Fault injection inside the campaign: the engine runs first with its `failAt`th fallible step
    // failing. If that step was reached, the call must fail ENOMEM and change nothing, so the model
    // does not run and the deep check below compares the engine with the unchanged model.
    if (op.failAt !== undefined) {
      t.setFailCountdown(iommu, op.failAt);
      let fired: boolean;
      try {
        eo = side.run(op);
        fired = t.failCountdown(iommu) === 0;
      } catch (err) {
        return { index, op, what: `engine threw a non-IommuError under fault injection: ${(err as Error).stack}` };
      } finally {
        t.setFailCountdown(iommu, 0);
      }
      if (fired) {
        if (!('e' in eo) || eo.e !== 'ENOMEM') return { index, op, what: `injected failure reported as ${show(eo)}, expected ENOMEM` };
        if (out) out.seen = eo;
        if (withModel) Pair.tally?.(op, eo);
        const guards = t.guardViolations(iommu);
        if (guards.length > 0) return { index, op, what: `guard overwritten: ${show(guards)}` };
        const d = deepCheck(this.model, side);
        return d ? { index, op, what: `state changed by an injected failure: ${d}` } : undefined;
      }
      mo = eo;
      if (withModel) {
        try {
          mo = runModel(this.model, op);
        } catch (err) {
          return { index, op, what: `model crashed: ${(err as Error).stack}` };
        }
        if (show(eo) !== show(mo)) return { index, op, what: 'outcome', engine: show(eo), model: show(mo) };
      }
    } else {
      mo = { v: undefined };
      if (withModel) {
        try {
          mo = runModel(this.model, op);
        } catch (err) {
          return { index, op, what: `model crashed: ${(err as Error).stack}` };
        }
      }
      try {
        eo = side.run(op);
      } catch (err) {
        return { index, op, what: `engine threw a non-IommuError: ${(err as Error).stack}` };
      }
      if (withModel && show(eo) !== show(mo)) return { index, op, what: 'outcome', engine: show(eo), model: show(mo) };
      if (!withModel) mo = eo;
    }
    if (out) out.seen = eo;
    if (withModel) Pair.tally?.(op, mo);
    const guards = side.api.testing.guardViolations(side.iommu);
    if (guards.length > 0) return { index, op, what: `guard overwritten: ${show(guards)}` };
    // A DMA write: the bytes it wrote, and their neighbours, equal the model's.
    if (op.k === 'dma' && op.write) {
      const d = side.ramDiff(this.model, this.model.lastDma);
      if (d) return { index, op, what: `after the DMA write: ${d}` };
    }
    if (deep) {
      const d = deepCheck(this.model, side);
      if (d) return { index, op, what: `state: ${d}` };
    }
    return undefined;
  }
}

/** The configuration of epoch `seed`: address width, PASID width, IOTLB size, shared or not. */
export function epochConfig(seed: number): EngineConfig {
  const rng = new Rng(seed ^ 0x5eed);
  return {
    addressWidth: rng.pick([39, 48, 48, 57]),
    pasidBits: rng.pick([4, 8, 20]),
    maxDomains: rng.pick([5, 64, 64]),
    iotlbEntries: rng.pick([2, 16, 256]),
    shared: rng.chance(0.5),
    maxMemoryBytes: 64 * 2 ** 20,
    workerSlots: 2,
    ram: FUZZ_RAM,
  };
}

/** Replays `ops` on a fresh pair; the first divergence, if any. */
export function replay(api: EngineApi, cfg: EngineConfig, ops: Op[], deepEvery = 25): Divergence | undefined {
  const p = new Pair(api, cfg);
  for (let i = 0; i < ops.length; i++) {
    const d = p.step(ops[i]!, i, (i + 1) % deepEvery === 0 || i === ops.length - 1);
    if (d) return d;
  }
  return undefined;
}

/** Delta debugging (ddmin): a small subsequence of `ops` on which `fails` still holds. */
export function minimise(ops: Op[], fails: (ops: Op[]) => boolean, budgetMs = 60_000): Op[] {
  const end = Date.now() + budgetMs;
  let cur = ops;
  let n = 2;
  while (cur.length >= 2 && Date.now() < end) {
    const chunk = Math.ceil(cur.length / n);
    let reduced = false;
    for (let i = 0; i < n && Date.now() < end; i++) {
      const candidate = [...cur.slice(0, i * chunk), ...cur.slice((i + 1) * chunk)];
      if (candidate.length < cur.length && fails(candidate)) {
        cur = candidate;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= cur.length) break;
      n = Math.min(cur.length, n * 2);
    }
  }
  return cur;
}

export interface EpochResult {
  ops: number;
  divergence?: Divergence;
  /** The ops up to and including the divergent one. */
  trace?: Op[];
  cfg: EngineConfig;
}

/** One epoch: a fresh engine and model driven by `ops` generated ops. */
export function runEpoch(api: EngineApi, seed: number, ops: number, opts: { deepEvery?: number; gen?: GenOptions } = {}): EpochResult {
  const cfg = epochConfig(seed);
  const pair = new Pair(api, cfg);
  const gen = new Gen(new Rng(seed), pair.model, opts.gen);
  const deepEvery = opts.deepEvery ?? 50;
  const trace: Op[] = [];
  for (let i = 0; i < ops; i++) {
    const op = gen.next();
    trace.push(op);
    const d = pair.step(op, i, (i + 1) % deepEvery === 0 || i === ops - 1);
    if (d) return { ops: i + 1, divergence: d, trace, cfg };
  }
  return { ops, cfg };
}

/** Seed of epoch `k` of a campaign. */
export function epochSeed(seed: number, k: number): number {
  let h = (seed ^ Math.imul(k + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  return (h ^ (h >>> 12)) >>> 0;
}

/** A divergence report: seed, config, the minimised op list and the first difference. */
export function report(seed: number, epoch: number, r: EpochResult, minimised: Op[] | undefined, min?: Divergence): string {
  const d = r.divergence!;
  const lines = [
    `DIVERGENCE in campaign seed ${seed}, epoch ${epoch} (epoch seed ${epochSeed(seed, epoch)}), op ${d.index}: ${d.what}`,
    `  config ${show(r.cfg)}`,
    `  op     ${show(d.op)}`,
  ];
  if (d.engine) lines.push(`  engine ${d.engine}`, `  model  ${d.model}`);
  if (minimised) {
    lines.push(`minimised to ${minimised.length} ops${min ? ` (fails at op ${min.index}: ${min.what}${min.engine ? `; engine ${min.engine}; model ${min.model}` : ''})` : ''}:`);
    for (const op of minimised) lines.push(`  ${show(op)}`);
  }
  return lines.join('\n');
}

/** Minimises an epoch's divergent trace: same op kind must still diverge. */
export function minimiseEpoch(api: EngineApi, r: EpochResult, budgetMs: number): { ops: Op[]; divergence?: Divergence } {
  const kind = r.divergence!.op.k;
  const trace = r.trace!.slice(0, r.divergence!.index + 1);
  const fails = (ops: Op[]): boolean => {
    try {
      const d = replay(api, r.cfg, ops);
      return d !== undefined && d.op.k === kind;
    } catch {
      return false;
    }
  };
  if (!fails(trace)) return { ops: trace };
  const start = Date.now();
  const ops = shrink(minimise(trace, fails, budgetMs), fails, Math.max(1000, budgetMs - (Date.now() - start)));
  return { ops, divergence: replay(api, r.cfg, ops) };
}

/**
 * What ddmin cannot do with index-named FDs and devices: drop an `open` or `addDevice` and renumber
 * the ops after it (ops on the dropped FD or device go too), drop requests of a translate op, and
 * make a DMA op shorter (halving its length) or run it through the owner instead of a worker.
 */
export function shrink(ops: Op[], fails: (ops: Op[]) => boolean, budgetMs: number): Op[] {
  const end = Date.now() + budgetMs;
  let cur = ops;
  for (let progress = true; progress && Date.now() < end; ) {
    progress = false;
    for (let i = cur.length - 1; i >= 0 && Date.now() < end; i--) {
      const op = cur[i]!;
      let candidate: Op[] | undefined;
      if (op.k === 'open' || op.k === 'addDevice') {
        const key = op.k === 'open' ? 'fd' : 'dev';
        const index = cur.slice(0, i).filter((o) => o.k === op.k).length;
        candidate = [];
        for (let j = 0; j < cur.length; j++) {
          if (j === i) continue;
          const o = cur[j]!;
          if (j > i && key in o) {
            const v = (o as unknown as Record<string, number>)[key]!;
            if (v === index) continue;
            if (v > index) {
              candidate.push({ ...o, [key]: v - 1 } as Op);
              continue;
            }
          }
          candidate.push(o);
        }
      } else if (op.k === 'translate' && op.reqs.length > 1) {
        for (let q = op.reqs.length - 1; q >= 0; q--) {
          const fewer = { ...op, reqs: op.reqs.filter((_, x) => x !== q) };
          const c = [...cur.slice(0, i), fewer, ...cur.slice(i + 1)];
          if (fails(c)) {
            cur = c;
            progress = true;
          }
        }
        continue;
      } else if (op.k === 'dma') {
        // Drop it, else a shorter transfer (halved while it still fails), else through the owner.
        const without = [...cur.slice(0, i), ...cur.slice(i + 1)];
        if (fails(without)) {
          cur = without;
          progress = true;
          continue;
        }
        let shorter = op;
        while (shorter.length > 1 && Date.now() < end) {
          const half = { ...shorter, length: Math.ceil(shorter.length / 2) };
          if (!fails([...cur.slice(0, i), half, ...cur.slice(i + 1)])) break;
          shorter = half;
        }
        if (shorter.via === 'worker' && fails([...cur.slice(0, i), { ...shorter, via: 'call' }, ...cur.slice(i + 1)])) shorter = { ...shorter, via: 'call' };
        if (shorter !== op) {
          cur = [...cur.slice(0, i), shorter, ...cur.slice(i + 1)];
          progress = true;
        }
        continue;
      } else {
        candidate = [...cur.slice(0, i), ...cur.slice(i + 1)];
      }
      if (candidate && fails(candidate)) {
        cur = candidate;
        progress = true;
      }
    }
  }
  return cur;
}
