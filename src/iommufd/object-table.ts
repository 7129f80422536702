/**
 * The per-FD object table (iommufd's `main.c` xarray): FD-local IDs from 1 in one number space for
 * every object type, two-phase creation, typed lookup and leaf-first teardown.
 *
 * Invariants: an ID is either free, reserved (creation in progress: invisible, lookups ENOENT) or
 * published; only published objects are ever returned. `users` counts references from other
 * objects and bindings; an object with users > 0 cannot be destroyed (EBUSY).
 * @module
 */
import { fail } from '../base/errno';

/** The type of an object in an FD's table, as `IommuFd.objects()` reports it. */
export type ObjType = 'ioas' | 'hwpt-paging' | 'hwpt-nested' | 'hwpt-user' | 'device' | 'access' | 'fault';

/**
 * Base of every object an FD holds (an `IoasAccess` is one a user gets): its type and its ID in
 * the FD's number space. `release` frees what the object owns; it must not fail.
 */
export abstract class FdObject {
  /** What kind of object this is. */
  abstract readonly type: ObjType;
  /** The object's ID in its FD (set when the object is published; 0 before). */
  id = 0;
  /** @internal References from other objects (HWPT -> IOAS, attachment -> HWPT, binding -> device). */
  users = 0;
  /** @internal Frees the object's resources once it is unreachable; never throws. */
  abstract release(): void;
  /** @internal Type-specific facts for `IommuFd.objects()` (the IOAS a HWPT mirrors, a device's BDF, …). */
  details(): Record<string, unknown> {
    return {};
  }
}

const RESERVED = null;
const NONE: ReadonlySet<FdObject> = new Set();

export class ObjectTable {
  private readonly slots = new Map<number, FdObject | typeof RESERVED>();
  /** The published objects of each type, kept with `slots`: counting a type costs no scan. */
  private readonly byType = new Map<ObjType, Set<FdObject>>();
  /** Freed IDs below `next`, kept sorted so the lowest is reused first (as xa_alloc does). */
  private readonly freed: number[] = [];
  private next = 1;

  /** @param failPoint fault injection: returns true when this allocation must fail. */
  constructor(private readonly failPoint: () => boolean) {}

  get size(): number {
    return this.slots.size;
  }

  /**
   * Two-phase creation, the one way every command makes an object: reserves the lowest free ID,
   * runs `build` (which links the object into its neighbours as its last, non-failing steps), then
   * publishes it. If `build` throws, the ID is freed again: it was never visible, so the failed
   * call changed nothing. @throws ENOMEM (ID space exhausted or injected) and whatever `build` throws.
   */
  create<T extends FdObject>(op: string, build: () => T): T {
    const id = this.reserve(op);
    let obj: T;
    try {
      obj = build();
    } catch (e) {
      this.abort(id);
      throw e;
    }
    return this.publish(id, obj);
  }

  /** Phase one: reserves the lowest free ID. @throws ENOMEM (ID space exhausted or injected). */
  private reserve(op: string): number {
    if (this.failPoint()) fail('ENOMEM', op, 'object ID allocation failed (injected)');
    let id: number;
    if (this.freed.length > 0) id = this.freed.shift()!;
    else if (this.next <= 0x7fffffff) id = this.next++;
    else return fail('ENOMEM', op, 'object ID space exhausted');
    this.slots.set(id, RESERVED);
    return id;
  }

  /** Phase two: makes a fully built object visible under its reserved ID. */
  publish<T extends FdObject>(id: number, obj: T): T {
    obj.id = id;
    this.slots.set(id, obj);
    let ofType = this.byType.get(obj.type);
    if (!ofType) this.byType.set(obj.type, (ofType = new Set()));
    ofType.add(obj);
    return obj;
  }

  /** Undoes `reserve` after a failed creation: the ID was never visible. */
  private abort(id: number): void {
    this.slots.delete(id);
    this.free(id);
  }

  /**
   * The published object `id`, of `type` when given. @throws ENOENT missing, reserved or wrong type.
   * (One optional type, not a rest list: ioasMap and ioasUnmap call this per request, and a rest
   * list is an array made per call.)
   */
  get<T extends FdObject>(op: string, id: number, type?: ObjType): T {
    const obj = this.slots.get(id);
    if (!obj || (type !== undefined && obj.type !== type)) return fail('ENOENT', op, `no ${type ?? 'object'} with ID ${id}`);
    return obj as T;
  }

  /** The published object `id` of any type, or undefined. */
  find(id: number): FdObject | undefined {
    return this.slots.get(id) ?? undefined;
  }

  /** Removes and releases a published object with no users. @throws ENOENT, EBUSY. */
  destroy(op: string, id: number): void {
    const obj = this.get(op, id);
    if (obj.users > 0) fail('EBUSY', op, `object ${id} (${obj.type}) still has ${obj.users} user(s)`);
    this.remove(obj);
  }

  /** Removes and releases `obj` (its users are already gone). */
  remove(obj: FdObject): void {
    this.slots.delete(obj.id);
    this.byType.get(obj.type)?.delete(obj);
    this.free(obj.id);
    obj.release();
  }

  /** Close: releases leaf objects (no users) first, repeating until the table is empty. */
  destroyAll(): void {
    while (this.slots.size > 0) {
      const leaves = [...this.slots.values()].filter((o): o is FdObject => o !== RESERVED && o.users === 0);
      if (leaves.length === 0) throw new Error('ioasid: object table teardown made no progress (reference leak)');
      for (const obj of leaves) this.remove(obj);
    }
  }

  /** @internal Snapshot support (src/snapshot/): the ID allocator — the next never-used ID and the freed IDs below it. */
  idState(): { next: number; freed: number[] } {
    return { next: this.next, freed: [...this.freed] };
  }

  /**
   * @internal Snapshot support: sets the ID allocator of a table whose objects were published by ID.
   * @throws Error unless every ID below `next` is either published or freed (the invariant of `reserve`).
   */
  restoreIds(next: number, freed: readonly number[]): void {
    const ok = Number.isInteger(next) && next >= 1 && next <= 0x80000000 && freed.length + this.slots.size === next - 1
      && freed.every((id, i) => id >= 1 && id < next && !this.slots.has(id) && (i === 0 || freed[i - 1]! < id))
      && [...this.slots.keys()].every((id) => id < next);
    if (!ok) throw new Error('object IDs inconsistent with the ID allocator');
    this.freed.splice(0, this.freed.length);
    for (const id of freed) this.freed.push(id);
    this.next = next;
  }

  /** The published objects of `type`, in no particular order (live: do not change the table while iterating). */
  ofType(type: ObjType): ReadonlySet<FdObject> {
    return this.byType.get(type) ?? NONE;
  }

  /** Published objects, in ID order. */
  objects(): FdObject[] {
    return [...this.slots.entries()].sort((a, b) => a[0] - b[0]).map(([, o]) => o).filter((o): o is FdObject => o !== RESERVED);
  }

  private free(id: number): void {
    let lo = 0;
    let hi = this.freed.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.freed[mid]! < id) lo = mid + 1;
      else hi = mid;
    }
    this.freed.splice(lo, 0, id);
  }
}
