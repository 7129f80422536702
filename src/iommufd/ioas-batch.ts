/**
 * Batched IOMMU_IOAS_MAP / IOMMU_IOAS_UNMAP: many requests in typed arrays, one result per entry.
 *
 * Each entry has exactly the semantics of the per-call command (`ioasMap` with a fixed IOVA,
 * `ioasUnmap`): it is checked in iommufd's order and either applies wholly or fails with an errno
 * and changes nothing; later entries see the earlier ones' effects, as a loop of calls would.
 * Done as a batch (src/iommufd/io-pagetable.ts `mapMany`/`unmapMany`): every entry is checked
 * first, the areas go into the table in one merge and into the engine's table with one Wasm call
 * per page of records. The
 * call itself fails (an `IommuError`, nothing applied) only when the batch is malformed: no such
 * IOAS, arrays of the wrong type or length.
 * @module
 */
import { describe } from '../base/args';
import { ERRNO, caught, fail } from '../base/errno';
import { U64_MAX } from '../base/range';
import { ioasUnmap, type Ioas } from './ioas';
import type { MapRequest } from './many-requests';
import type { ObjectTable } from './object-table';

/** Requests of `IommuFd.ioasMapBatch`. */
export interface MapBatch {
  /** Three u64 words per entry: iova (fixed), length, phys. */
  readonly entries: BigUint64Array;
  /** Per entry: bit 0 read, bit 1 write (neither is EINVAL). Omitted: read and write for all. */
  readonly perms?: Uint8Array;
  /** Filled per entry: 0 applied, else the Linux errno number (see ERRNO) of why it changed nothing. */
  readonly results: Int32Array;
}

/** Requests of `IommuFd.ioasUnmapBatch`. */
export interface UnmapBatch {
  /** Two u64 words per entry: iova, length (`0, 2^64-1` unmaps everything, as `ioasUnmap`). */
  readonly entries: BigUint64Array;
  /** Filled per entry: 0 applied, else the Linux errno number (see ERRNO). */
  readonly results: Int32Array;
  /** Optional, filled per entry: bytes unmapped (0 for a failed entry). */
  readonly bytes?: BigUint64Array;
}

/** Perm bit of a MapBatch entry: devices may read the mapping. */
export const MAP_READ = 1;
/** Perm bit of a MapBatch entry: devices may write the mapping. */
export const MAP_WRITE = 2;

type ArrayType = typeof Int32Array | typeof Uint8Array | typeof BigUint64Array;

/** Checks that `value` is a `type` of at least `n` elements (or absent, when `optional`). */
function checkArray(op: string, name: string, value: unknown, type: ArrayType, n: number, optional: boolean): void {
  if (optional && value === undefined) return;
  if (!(value instanceof type) || value.length < n) fail('EINVAL', op, `${name}: expected a ${type.name} of at least ${n} entries, got ${describe(value)}`);
}

/**
 * The entry count of a batch of `words`-word entries after checking its shape (`extra`: its
 * optional per-entry array); the IOAS must exist.
 */
function checkShape(op: string, table: ObjectTable, ioasId: number, b: unknown, words: number, extra: [string, ArrayType]): number {
  if (typeof b !== 'object' || b === null) fail('EINVAL', op, `batch: expected an object, got ${describe(b)}`);
  const batch = b as Record<string, unknown>;
  const entries = batch['entries'];
  if (!(entries instanceof BigUint64Array)) fail('EINVAL', op, `entries: expected a BigUint64Array, got ${describe(entries)}`);
  if (entries.length % words !== 0) fail('EINVAL', op, `entries: expected ${words} words per entry, got ${entries.length} words`);
  const n = entries.length / words;
  checkArray(op, 'results', batch['results'], Int32Array, n, false);
  checkArray(op, extra[0], batch[extra[0]], extra[1], n, true);
  table.get<Ioas>(op, ioasId, 'ioas');
  return n;
}

/** IOMMU_IOAS_MAP per entry. @returns entries applied. @throws EINVAL/ENOENT for a malformed batch only. */
export function ioasMapBatch(table: ObjectTable, ioasId: number, batch: MapBatch): number {
  const op = 'ioasMapBatch';
  const n = checkShape(op, table, ioasId, batch, 3, ['perms', Uint8Array]);
  const { entries, perms, results } = batch;
  const fast = table.get<Ioas>(op, ioasId, 'ioas').iopt.mapBatchFast(entries, perms, results, n);
  if (fast >= 0) return fast;
  // ioasMap's own checks (an unknown flag first, as iommufd's unknown IOAS_MAP flags), then the
  // io-pagetable's for the rest, all at once.
  const reqs: MapRequest[] = [];
  const index: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = perms === undefined ? MAP_READ | MAP_WRITE : perms[i]!;
    const req = { iova: entries[3 * i]!, length: entries[3 * i + 1]!, phys: entries[3 * i + 2]!, read: (p & MAP_READ) !== 0, write: (p & MAP_WRITE) !== 0 };
    const errno = p & ~(MAP_READ | MAP_WRITE) ? 'EOPNOTSUPP' : req.iova >= U64_MAX || req.length >= U64_MAX ? 'EOVERFLOW' : !req.read && !req.write ? 'EINVAL' : undefined;
    results[i] = errno === undefined ? 0 : ERRNO[errno];
    if (errno !== undefined) continue;
    reqs.push(req);
    index.push(i);
  }
  const ioas = table.get<Ioas>(op, ioasId, 'ioas');
  return ioas.iopt.mapMany(op, reqs, (k, e) => void (results[index[k]!] = ERRNO[e.errno]));
}

/** IOMMU_IOAS_UNMAP per entry. @returns entries applied. @throws EINVAL/ENOENT for a malformed batch only. */
export function ioasUnmapBatch(table: ObjectTable, ioasId: number, batch: UnmapBatch): number {
  const op = 'ioasUnmapBatch';
  const n = checkShape(op, table, ioasId, batch, 2, ['bytes', BigUint64Array]);
  const { entries, results, bytes } = batch;
  const ioas = table.get<Ioas>(op, ioasId, 'ioas');
  if (ioas.accesses.size !== 0) return unmapEach(table, ioasId, batch, n); // pins may refuse an entry
  const fast = ioas.iopt.unmapBatchFast(entries, results, bytes, n);
  if (fast >= 0) return fast;
  const reqs: { iova: bigint; length: bigint }[] = [];
  const index: number[] = [];
  for (let i = 0; i < n; i++) {
    const iova = entries[2 * i]!;
    const length = entries[2 * i + 1]!;
    if (bytes) bytes[i] = 0n;
    // ioasUnmap's own check; (0, 2^64-1) is "everything".
    const all = iova === 0n && length === U64_MAX;
    results[i] = !all && (iova >= U64_MAX || length >= U64_MAX) ? ERRNO.EOVERFLOW : 0;
    if (results[i] !== 0) continue;
    reqs.push({ iova, length });
    index.push(i);
  }
  return ioas.iopt.unmapMany(
    op,
    reqs,
    (k, e) => void (results[index[k]!] = ERRNO[e.errno]),
    (k, done) => void (bytes && (bytes[index[k]!] = done)),
  );
}

/** `ioasUnmap` per entry, in order (an IOAS with software-DMA accesses, whose pins are reclaimed per call). */
function unmapEach(table: ObjectTable, ioasId: number, batch: UnmapBatch, n: number): number {
  const { entries, results, bytes } = batch;
  let applied = 0;
  for (let i = 0; i < n; i++) {
    let done = 0n;
    const e = caught(() => void (done = ioasUnmap(table, ioasId, entries[2 * i]!, entries[2 * i + 1]!)));
    results[i] = e === undefined ? 0 : ERRNO[e.errno];
    if (e === undefined) applied++;
    if (bytes) bytes[i] = done;
  }
  return applied;
}
