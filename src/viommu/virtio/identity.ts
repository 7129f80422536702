/**
 * Identity address spaces for bypassing endpoints (unattached with `config.bypass` = 1, or in a
 * bypass domain): the engine has no identity domain, so bypass is an IOAS mapping the whole input
 * range 1:1, read and write, which keeps bypassed DMA on the engine's hot path. The endpoint's
 * reserved regions stay unmapped (the engine reserves them in any IOAS the device attaches to), so
 * endpoints with the same regions share one space. Spaces live as long as the model.
 * @module
 */
import type { IommuFd } from '../../api';
import type { Endpoint } from './endpoint';

export class IdentitySpaces {
  private readonly spaces = new Map<string, number>();

  /** @param first, end the input range in 4 KiB pages, `end` exclusive. */
  constructor(private readonly fd: IommuFd, private readonly first: number, private readonly end: number) {}

  /** The identity IOAS for `ep`, made on first use. @throws IommuError (ENOMEM) when the engine is full. */
  ioasFor(ep: Endpoint): number {
    const known = this.spaces.get(ep.regionsKey);
    if (known !== undefined) return known;
    const ioas = this.fd.ioasAlloc();
    try {
      let at = this.first;
      for (let i = 0; i <= ep.startPages.length; i++) {
        const holeStart = i < ep.startPages.length ? Math.max(this.first, Math.min(ep.startPages[i]!, this.end)) : this.end;
        if (holeStart > at) this.mapPages(ioas, at, holeStart);
        if (i < ep.endPages.length) at = Math.max(at, Math.min(ep.endPages[i]!, this.end));
      }
    } catch (e) {
      this.fd.destroy(ioas);
      throw e;
    }
    this.spaces.set(ep.regionsKey, ioas);
    return ioas;
  }

  private mapPages(ioas: number, from: number, to: number): void {
    const iova = BigInt(from) << 12n;
    this.fd.ioasMap(ioas, { iova, length: BigInt(to - from) << 12n, phys: iova });
  }
}
