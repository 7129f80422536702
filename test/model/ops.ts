/**
 * The operations the differential fuzzer runs, as plain data, and how the model executes them.
 *
 * Ops are concrete (IDs, addresses, PASIDs are values), so a recorded list replays on a fresh
 * engine and model; that is what lets the minimiser drop ops. FDs and devices are named by
 * creation index (`fd: 2` = the third successful `open`, `dev: 0` = the first device added); an op
 * naming an FD or device that does not exist in a replay is skipped on both sides.
 * @module
 */
import { Model, ModelError, type MDmaFault, type MLogRecord, type MTranslation, type Range } from './model';

/** How a translate op asks: the owner per call, allocation-free or batched, or a worker translator (in-thread) per call. */
export type TranslateVia = 'call' | 'into' | 'batch' | 'worker';

export type Op = OpBody & {
  /** Fault injection: the engine's `failAt`th fallible step in this call fails (see harness). */
  failAt?: number;
};

type OpBody =
  | { k: 'open' }
  | { k: 'close'; fd: number }
  | { k: 'addDevice'; bdf: string; pasidBits?: number; reserved?: Range[]; dirty?: boolean; pri?: boolean }
  | { k: 'ioasAlloc'; fd: number }
  | { k: 'destroy'; fd: number; id: number }
  | { k: 'map'; fd: number; ioas: number; iova?: bigint; length: bigint; phys: bigint; read?: boolean; write?: boolean }
  | { k: 'unmap'; fd: number; ioas: number; iova: bigint; length: bigint }
  | { k: 'copy'; fd: number; dst: number; src: number; srcIova: bigint; length: bigint; dstIova?: bigint; read?: boolean; write?: boolean }
  | { k: 'ranges'; fd: number; ioas: number }
  | { k: 'allow'; fd: number; ioas: number; ranges: Range[] }
  | { k: 'pasidAlloc'; fd: number; pasid?: number }
  | { k: 'pasidFree'; fd: number; pasid: number }
  | { k: 'hwptAlloc'; fd: number; devId: number; ptId: number; pasid?: boolean; nestParent?: boolean; dirtyTracking?: boolean; faultId?: number }
  /** A FAULT object and its fault FD; read (up to `max`), answer by cookie, close the fault FD; a device's page responses. */
  | { k: 'faultAlloc'; fd: number }
  | { k: 'faultRead'; fd: number; id: number; max?: number }
  | { k: 'faultWrite'; fd: number; id: number; responses: { cookie: number; code: 'success' | 'invalid' | 0 | 1 | 'maybe' }[] }
  | { k: 'faultClose'; fd: number; id: number }
  | { k: 'responses'; dev: number }
  | { k: 'bind'; dev: number; fd: number }
  | { k: 'unbind'; dev: number }
  | { k: 'attach'; dev: number; pt: number; pasid?: number }
  | { k: 'detach'; dev: number; pasid?: number }
  | { k: 'inspect'; fd: number }
  | { k: 'translate'; via: TranslateVia; reqs: Req[] }
  /**
   * Software DMA: `iommu.dmaRead`/`dmaWrite` ('call') or the lowest worker translator's ('worker')
   * of `length` bytes at `iova` (a number IOVA is passed as a number). A write's bytes are
   * `dmaData(seed)`; a read's destination starts as DMA_SENTINEL bytes.
   */
  | { k: 'dma'; via: 'call' | 'worker'; write: boolean; rid: number; pasid: number; iova: bigint | number; length: number; seed: number }
  /** A software-DMA access on an IOAS; with `react`, a pinning one whose onUnmap does that (see React). */
  | { k: 'accessCreate'; fd: number; ioas: number; react?: React }
  | { k: 'pin'; fd: number; access: number; iova: bigint; length: bigint }
  | { k: 'unpin'; fd: number; access: number; iova: bigint; length: bigint }
  | { k: 'setDirty'; fd: number; hwpt: number; enable: boolean }
  /** A translator handle (a worker slot), attached in this thread; `release` gives slot `slot` back (a stale handle: EINVAL). */
  | { k: 'handle' }
  | { k: 'release'; slot: number }
  | { k: 'dirtyBitmap'; fd: number; hwpt: number; iova: bigint; length: bigint; pageSize: bigint; noClear?: boolean }
  /** The engine is replaced by `Iommu.restore(iommu.snapshot())`; the model does nothing. */
  | { k: 'snapshot' };

/**
 * What a pinning access's onUnmap(iova, length) does, on both sides: 'none' nothing (the unmap
 * ends EDEADLOCK); otherwise it unpins its pins that intersect the range, then 'unpin-map' maps one
 * page at an automatic IOVA, 'unpin-unmap' unmaps everything of the IOAS, 'unpin-copy' copies the
 * range within the IOAS (automatic IOVA) — re-entrant calls whose errors are ignored.
 */
export type React = 'none' | 'unpin' | 'unpin-map' | 'unpin-unmap' | 'unpin-copy';

/** Backing address of the page a 'unpin-map' reaction maps. */
export const REACT_PHYS = 0x4000_0000n;

/** One DMA request: requester ID, PASID (0 = none), IOVA, access bits. */
export type Req = [rid: number, pasid: number, iova: bigint, access: number];

/** The outcome of an op: a value or an errno. */
export type Outcome = { v: unknown } | { e: string };

/** What a read's destination holds before the transfer (bytes not read must keep it). */
export const DMA_SENTINEL = 0xa5;

/** The bytes a DMA write op writes: a xorshift stream from `seed`. */
export function dmaData(out: Uint8Array, seed: number): Uint8Array {
  let x = (seed | 0) || 0x2545f491;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** FNV-1a of `bytes`, as hex (a read's whole destination, compared between engine and model). */
export function checksum(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

/**
 * A DMA op's outcome in the shape both sides produce: bytes done, the fault (reason, level, stage,
 * and the output address of a not-ram fault), a read's destination checksum (with its length)
 * and the fault-log records the call added (request fields only for translation faults).
 */
export function dmaOutcome(bytes: number, fault: MDmaFault | undefined, dst: Uint8Array | undefined, log: MLogRecord[]): unknown {
  return {
    bytes,
    fault: fault && { reason: fault.reason, level: fault.level, stage: fault.stage, ...(fault.reason === 'not-ram' ? { phys: fault.phys } : {}) },
    read: dst && `${dst.length}:${checksum(dst)}`,
    log: log.map((f) => (f.reason === 'bad-request' ? { reason: f.reason, level: f.level, stage: f.stage } : { reason: f.reason, level: f.level, stage: f.stage, rid: f.rid, pasid: f.pasid, iova: f.iova, access: f.access })),
  };
}

/** A canonical string for comparisons and reports (bigints as 0x…n). */
export function show(x: unknown): string {
  return JSON.stringify(x, (_k, v) => {
    if (typeof v === 'bigint') return `0x${v.toString(16)}n`;
    if (v && typeof v === 'object' && !Array.isArray(v)) return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    return v;
  });
}

/** Ops as JSON (bigints tagged) and back, for reproducers. */
export function opsToJson(ops: Op[]): string {
  return JSON.stringify(ops, (_k, v) => (typeof v === 'bigint' ? { $big: v.toString(16) } : v));
}

export function opsFromJson(text: string): Op[] {
  return JSON.parse(text, (_k, v) => (v && typeof v === 'object' && typeof v.$big === 'string' ? BigInt(`0x${v.$big}`) : v)) as Op[];
}

/** Does the op name only FDs/devices that exist? (Replays of a subsequence skip the others.) */
export function applicable(op: Op, fds: number, devs: number): boolean {
  if ('fd' in op && op.fd >= fds) return false;
  if ('dev' in op && op.dev >= devs) return false;
  return true;
}

/** A model translation in the shape the harness compares. */
export function modelTranslation(t: MTranslation): unknown {
  return t.ok ? { ok: true, phys: t.phys, sizeLg2: t.sizeLg2, perm: t.perm } : { ok: false, reason: t.reason, level: t.level };
}

/** Runs `op` on the model. */
export function runModel(m: Model, op: Op): Outcome {
  try {
    return { v: modelValue(m, op) };
  } catch (e) {
    if (e instanceof ModelError) return { e: e.errno };
    throw e;
  }
}

function modelValue(m: Model, op: Op): unknown {
  switch (op.k) {
    case 'open':
      return m.openFd();
    case 'close':
      return m.close(op.fd);
    case 'addDevice':
      return m.addDevice(op.bdf, op.pasidBits, op.reserved ?? [], op.dirty, op.pri);
    case 'ioasAlloc':
      return m.ioasAlloc(op.fd);
    case 'destroy':
      return m.destroy(op.fd, op.id);
    case 'map':
      return m.map(op.fd, op.ioas, op);
    case 'unmap':
      return m.unmap(op.fd, op.ioas, op.iova, op.length);
    case 'copy':
      return m.copy(op.fd, { dstIoas: op.dst, srcIoas: op.src, srcIova: op.srcIova, length: op.length, dstIova: op.dstIova, read: op.read, write: op.write });
    case 'ranges':
      return m.ranges(op.fd, op.ioas);
    case 'allow':
      return m.allow(op.fd, op.ioas, op.ranges);
    case 'pasidAlloc':
      return m.pasidAlloc(op.fd, op.pasid);
    case 'pasidFree':
      return m.pasidFree(op.fd, op.pasid);
    case 'hwptAlloc':
      return m.hwptAlloc(op.fd, op);
    case 'bind':
      return m.bind(op.dev, op.fd);
    case 'unbind':
      return m.unbind(op.dev);
    case 'attach':
      return m.attach(op.dev, op.pt, op.pasid);
    case 'detach':
      return m.detach(op.dev, op.pasid);
    case 'inspect':
      return {
        objects: m.objects(op.fd),
        pasids: m.pasids(op.fd),
        attachments: m.devices.map((_, i) => m.attachments(i)),
        devIds: m.devices.map((d) => d.obj?.id),
      };
    case 'translate':
      if (op.via === 'worker' && m.slots.size === 0) return 'no-worker';
      return op.reqs.map(([rid, pasid, iova, access]) => modelTranslation(m.translate(rid, pasid, iova, access)));
    case 'dma': {
      if (op.via === 'worker' && m.slots.size === 0) return 'no-worker';
      const data = new Uint8Array(op.length);
      if (op.write) dmaData(data, op.seed);
      else data.fill(DMA_SENTINEL);
      const r = m.dma(op.rid, op.pasid, op.iova, data, op.write);
      return dmaOutcome(r.bytes, r.fault, op.write ? undefined : data, r.log);
    }
    case 'handle':
      return m.handle();
    case 'release':
      return m.release(op.slot);
    case 'accessCreate':
      return m.accessCreate(op.fd, op.ioas, op.react);
    case 'pin':
      return m.pin(op.fd, op.access, op.iova, op.length);
    case 'unpin':
      return m.unpin(op.fd, op.access, op.iova, op.length);
    case 'snapshot':
      m.slots.clear(); // a restored engine has no workers
      return undefined;
    case 'setDirty':
      return m.setDirty(op.fd, op.hwpt, op.enable);
    case 'faultAlloc':
      return m.faultAlloc(op.fd);
    case 'faultRead':
      return m.faultRead(op.fd, op.id, op.max);
    case 'faultWrite':
      return m.faultWrite(op.fd, op.id, op.responses);
    case 'faultClose':
      return m.faultClose(op.fd, op.id);
    case 'responses':
      return m.takeResponses(op.dev);
    case 'dirtyBitmap':
      return m.dirtyBitmap(op.fd, op.hwpt, op.iova, op.length, op.pageSize, op.noClear ?? false);
  }
}
