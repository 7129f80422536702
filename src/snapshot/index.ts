/**
 * Save and restore of a whole engine (`iommu.snapshot()`, `Iommu.restore`): the container
 * (container.ts) holds a header (engine options, layout, sizes), the object graph (save.ts,
 * load.ts) and the memory image (image.ts), under a CRC-32.
 *
 * Invariants: a snapshot is taken on the owner thread between control calls, and changes nothing
 * observable in the engine except that page requests workers had raised are moved into their fault
 * queues (as `read` or `poll` would). A restore either returns a complete engine or throws an
 * `IommuError` — EINVAL for anything wrong with the input, ENOMEM or EOPNOTSUPP for the memory it
 * asks for — and the half-built engine is dropped: restore touches no existing engine.
 * @module
 */
import { IommuError } from '../base/errno';
import type { Engine } from '../iommufd/fd-state';
import { drainPageRequests } from '../iommufd/fault-queue';
import type { IommuOptions } from '../options';
import type { Layout } from '../core/layout';
import type { RamWindowOptions } from '../core/ram-options';
import type { GuestRam } from '../core/ram-window';
import { decodeSnapshot, encodeSnapshot } from './container';
import { captureImage, checkControlBlock, loadImage } from './image';
import { arr, bad, bool, obj, OP, u64, uint } from './json';
import { rebuildGraph, type RestoreOptions, type RestoredObjects } from './load';
import { captureGraph, captureHeader } from './save';

export type { RestoreOptions, RestoredObjects } from './load';

/** Serializes `engine`; guest RAM only `withRam`. */
export function takeSnapshot(engine: Engine, withRam: boolean): Uint8Array {
  drainPageRequests(engine);
  const graph = captureGraph(engine);
  const header = captureHeader(engine, withRam);
  return encodeSnapshot(header, graph, captureImage(engine.core, engine.layout, engine.ram, withRam));
}

/** A decoded, checked snapshot, ready to be poured into a new engine. */
export interface SnapshotReader {
  /** `Iommu.create` options for the engine to restore into (`shared` as the restorer asked). */
  readonly options: IommuOptions;
  /** Copies the image into the new engine's memory (before the core binds to it). @throws EINVAL. */
  loadImage(memory: WebAssembly.Memory, layout: Layout, ram: GuestRam): void;
  /** Rebuilds the objects over the new engine. @throws EINVAL (and Errors `restoring` turns into EINVAL). */
  rebuild(engine: Engine): RestoredObjects;
}

/** Decodes `bytes` and checks the restore options. @throws EINVAL. */
export function readSnapshot(bytes: unknown, opts: unknown): SnapshotReader {
  const o = opts === undefined ? {} : obj(opts, 'options');
  for (const k of Object.keys(o)) if (!RESTORE_KEYS.includes(k)) bad(`options: unknown option '${k}' (known: ${RESTORE_KEYS.join(', ')})`);
  const shared = o.shared === undefined ? undefined : bool(o.shared, 'options.shared');
  if (o.onUnmap !== undefined && typeof o.onUnmap !== 'function') bad('options.onUnmap: expected a function');
  const onUnmap = o.onUnmap as RestoreOptions['onUnmap'];

  const { header, graph, image } = decodeSnapshot(bytes);
  const h = obj(header, 'header');
  const opt = obj(h.options, 'header.options');
  const withRam = bool(h.ramSaved, 'header.ramSaved');
  const region = opt.region === null ? undefined : obj(opt.region, 'header.options.region');
  if (region && o.memory === undefined) bad('options.memory: the snapshot was taken in an emulator\'s memory; pass that memory back');
  if (!region && o.memory !== undefined) bad('options.memory: the snapshot was taken in the engine\'s own memory');
  const options: IommuOptions = {
    addressWidth: uint(opt.addressWidth, 'header.options.addressWidth') as IommuOptions['addressWidth'],
    pasidBits: uint(opt.pasidBits, 'header.options.pasidBits'),
    iotlbEntries: uint(opt.iotlbEntries, 'header.options.iotlbEntries'),
    translators: uint(opt.translators, 'header.options.translators'),
    maxDomains: uint(opt.maxDomains, 'header.options.maxDomains'),
    ...(opt.ram === null ? {} : { ram: savedWindows(opt.ram, o.ram) }),
    ...(region
      ? { memory: o.memory as WebAssembly.Memory, region: { offset: uint(region.offset, 'header.options.region.offset', 2 ** 32), bytes: uint(region.bytes, 'header.options.region.bytes', 2 ** 32) } }
      : { maxMemoryBytes: uint(opt.maxMemoryBytes, 'header.options.maxMemoryBytes', 2 ** 32) }),
    // Default: as snapshotted — unshared stays unshared, shared is shared where SharedArrayBuffer works.
    ...(region ? {} : shared === undefined ? (bool(h.shared, 'header.shared') ? {} : { shared: false }) : { shared }),
  };
  const memoryBytes = uint(h.memoryBytes, 'header.memoryBytes', 2 ** 32);
  const poolTop = uint(h.poolTop, 'header.poolTop');
  const layout = obj(h.layout, 'header.layout');
  return {
    options,
    loadImage(memory, l, ram) {
      const { guards: _guards, ...mine } = l;
      for (const [k, v] of Object.entries(mine)) {
        if (JSON.stringify(layout[k]) !== JSON.stringify(v)) bad(`header.layout.${k}: ${String(layout[k])}, but this engine version lays the options out with ${String(v)}`);
      }
      if (Object.keys(layout).length !== Object.keys(mine).length) bad('header.layout: unknown fields');
      if (region ? memoryBytes !== 0 : memoryBytes % 65536 !== 0 || memoryBytes < l.initialPages * 65536 || memoryBytes > l.maximumPages * 65536) bad('header.memoryBytes: out of range');
      if (poolTop < l.poolBase) bad('header.poolTop: out of range');
      loadImage(memory, l, ram, image, Math.ceil((poolTop - l.origin) / 4096), memoryBytes, withRam);
      checkControlBlock(memory, l, poolTop);
    },
    rebuild: (engine) => rebuildGraph(engine, graph, onUnmap),
  };
}

const RESTORE_KEYS = ['shared', 'onUnmap', 'memory', 'ram'];

/**
 * The `ram` option of the engine to restore: the saved windows, with the buffers of external ones
 * taken from the restore option `ram` (`[{ base, buffer, offset? }]`, matched by base).
 */
function savedWindows(saved: unknown, given: unknown): RamWindowOptions[] {
  const buffers = given === undefined ? [] : arr(given, 'options.ram').map((g, i) => obj(g, `options.ram[${i}]`));
  return arr(saved, 'header.options.ram').map((v, i) => {
    const w = obj(v, `header.options.ram[${i}]`);
    const base = u64(w.base, `header.options.ram[${i}].base`);
    const bytes = uint(w.bytes, `header.options.ram[${i}].bytes`);
    if (w.external === undefined) return { base, bytes, ...(w.offset === undefined ? {} : { offset: uint(w.offset, `header.options.ram[${i}].offset`, 2 ** 32) }) };
    const g = buffers.find((b) => typeof b.base === 'bigint' || typeof b.base === 'number' ? BigInt(b.base) === base : false);
    if (!g) bad(`options.ram: the snapshot has a RAM window in a buffer at 0x${base.toString(16)}; pass { base, buffer } for it`);
    return { base, bytes, buffer: g.buffer as ArrayBuffer, ...(g.offset === undefined ? {} : { offset: g.offset as number }) };
  });
}

/**
 * Runs a restore step: an EINVAL of the restore itself passes; ENOMEM and EOPNOTSUPP (memory
 * the options ask for) keep their errno; anything else — a refusal of the engine options, a broken
 * invariant found by an import — becomes EINVAL. Nothing else ever escapes.
 */
export function restoring<T>(step: () => T): T {
  try {
    return step();
  } catch (e) {
    if (e instanceof IommuError && e.errno === 'EINVAL' && e.message.startsWith(`${OP}:`)) throw e;
    const detail = e instanceof Error ? e.message : String(e);
    if (e instanceof IommuError && (e.errno === 'ENOMEM' || e.errno === 'EOPNOTSUPP')) throw new IommuError(e.errno, OP, detail);
    if (e instanceof RangeError && /memory/i.test(detail)) throw new IommuError('ENOMEM', OP, `cannot allocate the engine memory: ${detail}`);
    throw new IommuError('EINVAL', OP, `inconsistent snapshot: ${detail}`);
  }
}
