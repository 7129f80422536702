/**
 * The system-wide PASID space of one IOMMU. PASIDs are unique across FDs (a device's PASID table
 * is global hardware state), but each one is owned by the FD that allocated it: only that FD may
 * attach its devices with it or free it. PASID 0 is never handed out (it is NO_PASID).
 * @module
 */
import { fail } from '../base/errno';

export class PasidSpace {
  private readonly owners = new Map<number, object>();
  /** PASIDs held per owner (per-FD limits check it on every allocation: counting `owners` would make n allocations O(n^2)). */
  private readonly held = new Map<object, number>();
  /** Attachments per PASID, so that a PASID in use cannot be freed. */
  private readonly uses = new Map<number, number>();
  /** Lowest PASID that may be free. */
  private hint = 1;
  readonly limit: number;

  constructor(bits: number) {
    this.limit = 2 ** bits;
  }

  get size(): number {
    return this.owners.size;
  }

  /** PASIDs of `owner`, ascending. */
  ownedBy(owner: object): number[] {
    return [...this.owners].filter(([, o]) => o === owner).map(([p]) => p).sort((a, b) => a - b);
  }

  /** How many PASIDs `owner` holds. */
  countOf(owner: object): number {
    return this.held.get(owner) ?? 0;
  }

  owner(pasid: number): object | undefined {
    return this.owners.get(pasid);
  }

  /** Allocates `pasid` (or the lowest free one) for `owner`. @throws EINVAL out of range, EEXIST taken, ENOSPC exhausted. */
  alloc(op: string, owner: object, pasid?: number): number {
    if (pasid !== undefined) {
      if (pasid < 1 || pasid >= this.limit) fail('EINVAL', op, `pasid: expected 1..${this.limit - 1}, got ${pasid}`);
      if (this.owners.has(pasid)) fail('EEXIST', op, `PASID ${pasid} is already allocated`);
      this.take(pasid, owner);
      return pasid;
    }
    let p = this.hint;
    while (p < this.limit && this.owners.has(p)) p++;
    if (p >= this.limit) fail('ENOSPC', op, `all ${this.limit - 1} PASIDs are allocated`);
    this.take(p, owner);
    this.hint = p + 1;
    return p;
  }

  private take(pasid: number, owner: object): void {
    this.owners.set(pasid, owner);
    this.held.set(owner, this.countOf(owner) + 1);
  }

  /** Frees a PASID owned by `owner`. @throws ENOENT not owned by it, EBUSY attached. */
  free(op: string, owner: object, pasid: number): void {
    if (this.owners.get(pasid) !== owner) fail('ENOENT', op, `PASID ${pasid} is not allocated by this FD`);
    if ((this.uses.get(pasid) ?? 0) > 0) fail('EBUSY', op, `PASID ${pasid} is attached to a device`);
    this.owners.delete(pasid);
    this.held.set(owner, this.countOf(owner) - 1);
    if (pasid < this.hint) this.hint = pasid;
  }

  /** Frees every PASID of `owner` (FD close, after its devices are unbound). */
  freeAll(owner: object): void {
    for (const [pasid, o] of this.owners) {
      if (o !== owner) continue;
      this.owners.delete(pasid);
      if (pasid < this.hint) this.hint = pasid;
    }
    this.held.delete(owner);
  }

  /** @internal Snapshot support (src/snapshot/): where the search for a free PASID starts. */
  get allocHint(): number {
    return this.hint;
  }

  set allocHint(hint: number) {
    if (!Number.isInteger(hint) || hint < 1 || hint > this.limit) throw new Error(`PASID allocation hint ${hint} out of range`);
    this.hint = hint;
  }

  use(pasid: number, delta: 1 | -1): void {
    const n = (this.uses.get(pasid) ?? 0) + delta;
    if (n === 0) this.uses.delete(pasid);
    else this.uses.set(pasid, n);
  }
}
