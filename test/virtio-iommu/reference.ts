// A deliberately simple virtio-iommu, written from the specification's device requirements
// (VIRTIO 1.2 §5.13.6) and the README's documented choices, not from src/: byte addresses as
// bigints, arrays scanned linearly, no engine. The fuzz test runs it beside VirtioIommu and
// compares every status, used length, state and translation.
import { get } from './wire';

interface Region { start: bigint; end: bigint }
interface Mapping { start: bigint; end: bigint; phys: bigint; flags: number }
interface Dom { bypass: boolean; endpoints: number[]; mappings: Mapping[] }

const U64 = 1n << 64n;
const OK = 0, UNSUPP = 2, INVAL = 4, RANGE = 5, NOENT = 6;

export class ReferenceIommu {
  bypass: boolean;
  mmio = true;
  bypassConfig = true;
  readonly endpoints = new Map<number, { domain: number | null; regions: Region[] }>();
  readonly domains = new Map<number, Dom>();

  constructor(
    readonly o: { probeSize: number; inputStart: bigint; inputEnd: bigint; granule: bigint; bypass: boolean },
    endpoints: [number, Region[]][],
  ) {
    this.bypass = o.bypass;
    for (const [id, regions] of endpoints) this.endpoints.set(id, { domain: null, regions });
  }

  /** @returns the used length and the status (-1 when unanswered). */
  request(r: Uint8Array, writable: number): { used: number; status: number } {
    if (r.length < 4 || writable < 4) return { used: 0, status: -1 };
    const type = r[0]!;
    if (type < 1 || type > 5 || (type === 5 && this.o.probeSize === 0)) return { used: 0, status: -1 };
    const tail = type === 5 ? (writable >= this.o.probeSize + 4 ? this.o.probeSize : writable - 4) : 0;
    const size = [0, 20, 20, 36, 28, 72][type]!;
    const status = r.length < size ? INVAL : [this.attach, this.detach, this.map, this.unmap, this.probe][type - 1]!.call(this, r, writable);
    return { used: tail + 4, status };
  }

  private attach(r: Uint8Array): number {
    const id = Number(get(r, 4, 4));
    const flags = Number(get(r, 12, 4));
    if (get(r, 16, 4) !== 0n || flags > 1) return INVAL;
    const bypass = flags === 1;
    if (bypass && !this.bypassConfig) return INVAL;
    const epId = Number(get(r, 8, 4));
    const ep = this.endpoints.get(epId);
    if (!ep) return NOENT;
    const d = this.domains.get(id);
    if (d && d.bypass !== bypass) return INVAL;
    if (d && ep.domain === id) return OK;
    if (d && d.mappings.some((m) => ep.regions.some((g) => m.start <= g.end && g.start <= m.end))) return UNSUPP;
    this.leave(epId);
    if (!d) this.domains.set(id, { bypass, endpoints: [], mappings: [] });
    this.domains.get(id)!.endpoints.push(epId);
    ep.domain = id;
    return OK;
  }

  private detach(r: Uint8Array): number {
    const epId = Number(get(r, 8, 4));
    const ep = this.endpoints.get(epId);
    if (!ep) return NOENT;
    if (ep.domain !== Number(get(r, 4, 4))) return INVAL;
    this.leave(epId);
    return OK;
  }

  private leave(epId: number): void {
    const ep = this.endpoints.get(epId)!;
    if (ep.domain === null) return;
    const d = this.domains.get(ep.domain)!;
    d.endpoints = d.endpoints.filter((e) => e !== epId);
    if (d.endpoints.length === 0) this.domains.delete(ep.domain);
    ep.domain = null;
  }

  private map(r: Uint8Array): number {
    const flags = Number(get(r, 32, 4));
    if (flags > 7 || (flags & 4 && !this.mmio)) return INVAL;
    const d = this.domains.get(Number(get(r, 4, 4)));
    if (!d) return NOENT;
    if (d.bypass) return INVAL;
    const start = get(r, 8, 8);
    const end = get(r, 16, 8);
    const phys = get(r, 24, 8);
    const g = this.o.granule;
    if (end < start) return INVAL;
    if (start % g !== 0n || phys % g !== 0n || (end + 1n) % g !== 0n) return RANGE;
    if (phys + (end - start) >= U64) return RANGE;
    if (start < this.o.inputStart || end > this.o.inputEnd) return RANGE;
    const regions = d.endpoints.flatMap((e) => this.endpoints.get(e)!.regions);
    if (regions.some((x) => x.start <= end && start <= x.end)) return INVAL;
    if (d.mappings.some((m) => m.start <= end && start <= m.end)) return INVAL;
    d.mappings.push({ start, end, phys, flags });
    d.mappings.sort((a, b) => (a.start < b.start ? -1 : 1));
    return OK;
  }

  private unmap(r: Uint8Array): number {
    const d = this.domains.get(Number(get(r, 4, 4)));
    if (!d) return NOENT;
    if (d.bypass) return INVAL;
    const start = get(r, 8, 8);
    const end = get(r, 16, 8);
    if (end < start) return INVAL;
    if (start < this.o.inputStart || end > this.o.inputEnd) return RANGE;
    const touched = d.mappings.filter((m) => m.start <= end && start <= m.end);
    if (touched.some((m) => m.start < start || m.end > end)) return RANGE;
    d.mappings = d.mappings.filter((m) => !touched.includes(m));
    return OK;
  }

  private probe(r: Uint8Array, writable: number): number {
    if (writable < this.o.probeSize + 4) return INVAL;
    return this.endpoints.has(Number(get(r, 4, 4))) ? OK : NOENT;
  }

  /** What a DMA of `ep` at `iova` gets: the output address, or null (a fault). */
  translate(epId: number, iova: bigint, write: boolean): bigint | null {
    const ep = this.endpoints.get(epId)!;
    const d = ep.domain === null ? undefined : this.domains.get(ep.domain);
    if (d && !d.bypass) {
      const m = d.mappings.find((x) => x.start <= iova && iova <= x.end);
      return m && m.flags & (write ? 2 : 1) ? m.phys + (iova - m.start) : null;
    }
    if (!d && !this.bypass) return null;
    return ep.regions.some((g) => g.start <= iova && iova <= g.end) ? null : iova;
  }

  /** The state in the shape of VirtioIommu.state() (its `driverFeatures` left out). */
  state(): unknown {
    const endpoints: Record<number, number | null> = {};
    for (const [id, ep] of this.endpoints) endpoints[id] = ep.domain;
    const domains = [...this.domains].sort((a, b) => a[0] - b[0]).map(([id, d]) => ({
      id, bypass: d.bypass, endpoints: [...d.endpoints].sort((a, b) => a - b), mappings: d.mappings.map((m) => ({ ...m })),
    }));
    return { bypass: this.bypass, endpoints, domains };
  }
}
