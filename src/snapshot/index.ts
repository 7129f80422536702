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
import { decodeSnapshot, encodeSnapshot } from './container';
import { captureImage, checkControlBlock, loadImage } from './image';
import { bad, bool, obj, OP, u64, uint } from './json';
import { rebuildGraph, type RestoreOptions, type RestoredObjects } from './load';
import { captureGraph, captureHeader } from './save';

export type { RestoreOptions, RestoredObjects } from './load';

/** Serializes `engine` (whose guest RAM starts at `ramBase`). */
export function takeSnapshot(engine: Engine, ramBase: bigint): Uint8Array {
  drainPageRequests(engine);
  const graph = captureGraph(engine);
  const header = captureHeader(engine, ramBase);
  return encodeSnapshot(header, graph, captureImage(engine.core, engine.layout));
}

/** A decoded, checked snapshot, ready to be poured into a new engine. */
export interface SnapshotReader {
  /** `Iommu.create` options for the engine to restore into (`shared` as the restorer asked). */
  readonly options: IommuOptions;
  /** Copies the image into the new engine's memory (before the core binds to it). @throws EINVAL. */
  loadImage(memory: WebAssembly.Memory, layout: Layout, ramBase: bigint): void;
  /** Rebuilds the objects over the new engine. @throws EINVAL (and Errors `restoring` turns into EINVAL). */
  rebuild(engine: Engine): RestoredObjects;
}

/** Decodes `bytes` and checks the restore options. @throws EINVAL. */
export function readSnapshot(bytes: unknown, opts: unknown): SnapshotReader {
  const o = opts === undefined ? {} : obj(opts, 'options');
  for (const k of Object.keys(o)) if (k !== 'shared' && k !== 'onUnmap') bad(`options: unknown option '${k}' (known: shared, onUnmap)`);
  const shared = o.shared === undefined ? undefined : bool(o.shared, 'options.shared');
  if (o.onUnmap !== undefined && typeof o.onUnmap !== 'function') bad('options.onUnmap: expected a function');
  const onUnmap = o.onUnmap as RestoreOptions['onUnmap'];

  const { header, graph, image } = decodeSnapshot(bytes);
  const h = obj(header, 'header');
  const opt = obj(h.options, 'header.options');
  const ram = opt.ram === null ? undefined : obj(opt.ram, 'header.options.ram');
  const options: IommuOptions = {
    addressWidth: uint(opt.addressWidth, 'header.options.addressWidth') as IommuOptions['addressWidth'],
    pasidBits: uint(opt.pasidBits, 'header.options.pasidBits'),
    iotlbEntries: uint(opt.iotlbEntries, 'header.options.iotlbEntries'),
    maxMemoryBytes: uint(opt.maxMemoryBytes, 'header.options.maxMemoryBytes', 2 ** 32),
    translators: uint(opt.translators, 'header.options.translators'),
    maxDomains: uint(opt.maxDomains, 'header.options.maxDomains'),
    ...(ram ? { ram: { base: u64(ram.base, 'header.options.ram.base'), bytes: uint(ram.bytes, 'header.options.ram.bytes') } } : {}),
    // Default: as snapshotted — unshared stays unshared, shared is shared where SharedArrayBuffer works.
    ...(shared === undefined ? (bool(h.shared, 'header.shared') ? {} : { shared: false }) : { shared }),
  };
  const memoryBytes = uint(h.memoryBytes, 'header.memoryBytes', 2 ** 32);
  const poolTop = uint(h.poolTop, 'header.poolTop');
  const layout = obj(h.layout, 'header.layout');
  return {
    options,
    loadImage(memory, l, ramBase) {
      const { guards: _guards, ...mine } = l;
      for (const [k, v] of Object.entries(mine)) if (layout[k] !== v) bad(`header.layout.${k}: ${String(layout[k])}, but this engine version lays the options out with ${v}`);
      if (Object.keys(layout).length !== Object.keys(mine).length) bad('header.layout: unknown fields');
      if (memoryBytes % 65536 !== 0 || memoryBytes < l.initialPages * 65536 || memoryBytes > l.maximumPages * 65536) bad('header.memoryBytes: out of range');
      loadImage(memory, l, ramBase, image, Math.ceil(poolTop / 4096), memoryBytes);
      checkControlBlock(memory, l, ramBase, poolTop);
    },
    rebuild: (engine) => rebuildGraph(engine, graph, onUnmap),
  };
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
