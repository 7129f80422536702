/**
 * One virtio-iommu domain: an IOAS of the model's FD holding its mappings (or, for a bypass
 * domain made with ATTACH_F_BYPASS, no IOAS: its endpoints use identity spaces). A domain exists
 * while it has endpoints; when the last leaves, its IOAS and mappings are destroyed and its ID is
 * free again (§5.13.6.4), which Linux relies on to replay its mappings on the next ATTACH.
 * @module
 */
import { MappingIndex } from './mapping-index';

/**
 * What a domain needs of its endpoints (an `Endpoint` is one): their ID and reserved pages. Named
 * here, not imported, so that endpoint.ts and domain.ts do not import each other.
 */
export interface DomainMember {
  readonly rid: number;
  readonly startPages: readonly number[];
  readonly endPages: readonly number[];
}

export class Domain {
  readonly endpoints: DomainMember[] = [];
  readonly mappings = new MappingIndex();
  /** Reserved pages of every endpoint, `[starts[i], ends[i])`, unsorted (a few per endpoint). */
  private reservedStarts: number[] = [];
  private reservedEnds: number[] = [];

  /** @param ioasId the IOAS holding the mappings; 0 for a bypass domain. */
  constructor(readonly id: number, readonly bypass: boolean, readonly ioasId: number) {}

  add(ep: DomainMember): void {
    this.endpoints.push(ep);
    this.refreshReserved();
  }

  remove(ep: DomainMember): void {
    this.endpoints.splice(this.endpoints.indexOf(ep), 1);
    this.refreshReserved();
  }

  /** True when `[start, end)` (pages) touches a reserved region of an endpoint of the domain. */
  touchesReserved(start: number, end: number): boolean {
    for (let i = 0; i < this.reservedStarts.length; i++) {
      if (this.reservedStarts[i]! < end && start < this.reservedEnds[i]!) return true;
    }
    return false;
  }

  /** True when one of `ep`'s reserved regions holds a mapping of this domain (ATTACH would break it). */
  clashesWith(ep: DomainMember): boolean {
    for (let i = 0; i < ep.startPages.length; i++) if (this.mappings.overlaps(ep.startPages[i]!, ep.endPages[i]!)) return true;
    return false;
  }

  private refreshReserved(): void {
    this.reservedStarts = this.endpoints.flatMap((e) => e.startPages);
    this.reservedEnds = this.endpoints.flatMap((e) => e.endPages);
  }
}
