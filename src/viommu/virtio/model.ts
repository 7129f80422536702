/**
 * The device's state behind the request handlers: the FD whose IOASes are the domains, the
 * endpoints (the Iommu's devices bound to that FD, by requester ID), the domain table, identity
 * spaces for bypass, and the negotiated features. Where an endpoint's DMA goes follows §5.13.6.1:
 * attached to a normal domain = its mappings; to a bypass domain = identity; unattached = identity
 * when `config.bypass` is 1 (VIRTIO_IOMMU_F_BYPASS_CONFIG is offered, so this holds even before
 * negotiation), else blocked.
 * @module
 */
import { IommuError, type DeviceFd, type Iommu, type IommuFd } from '../../api';
import { VirtioIommuConfig } from './config';
import type { Domain } from './domain';
import { Endpoint } from './endpoint';
import { IdentitySpaces } from './identity';
import { FEATURE, STATUS } from './layout';
import type { Resolved } from './options';

/**
 * Bypass reaches addresses below 2^48 (256 TiB, beyond any guest RAM or MMIO of the platforms the
 * engine emulates): an identity space over a 57-bit input range would need 2^27 1 GiB leaves.
 */
const IDENTITY_END_PAGE = 2 ** 36;

/** Arguments object of `ioasMap`, reused by every MAP (the hot path allocates nothing of its own). */
export interface MapArgsSlot {
  iova: number | bigint;
  length: number | bigint;
  phys: number | bigint;
  read: boolean;
  write: boolean;
}

export class Model {
  readonly fd: IommuFd;
  readonly config: VirtioIommuConfig;
  readonly endpoints = new Map<number, Endpoint>();
  readonly domains = new Map<number, Domain>();
  readonly identity: IdentitySpaces;
  readonly deviceFeatures: bigint;
  driverFeatures = 0n;
  /** Negotiated VIRTIO_IOMMU_F_MMIO and _BYPASS_CONFIG, as booleans for the request path. */
  mmio = false;
  bypassConfig = false;
  /** The input range in 4 KiB pages, `inputEnd` exclusive. */
  readonly inputFirst: number;
  readonly inputEnd: number;
  readonly mapArgs: MapArgsSlot = { iova: 0, length: 0, phys: 0, read: true, write: true };

  constructor(readonly iommu: Iommu, readonly opts: Resolved) {
    this.fd = iommu.open();
    this.config = new VirtioIommuConfig(opts);
    this.inputFirst = Number(opts.inputStart >> 12n);
    this.inputEnd = Number((opts.inputEnd >> 12n) + 1n);
    this.identity = new IdentitySpaces(this.fd, this.inputFirst, Math.min(this.inputEnd, IDENTITY_END_PAGE));
    let f = (1n << FEATURE.VERSION_1) | (1n << FEATURE.MAP_UNMAP) | (1n << FEATURE.INPUT_RANGE) | (1n << FEATURE.MMIO) | (1n << FEATURE.BYPASS_CONFIG);
    if (opts.domainRange) f |= 1n << FEATURE.DOMAIN_RANGE;
    if (opts.probeSize > 0) f |= 1n << FEATURE.PROBE;
    this.deviceFeatures = f;
  }

  acked(bit: bigint): boolean {
    return ((this.driverFeatures >> bit) & 1n) === 1n;
  }

  /** The endpoint with ID `id`, adopting a device added to the Iommu since (hot plug). */
  endpoint(id: number): Endpoint | undefined {
    const ep = this.endpoints.get(id);
    if (ep !== undefined) return ep;
    const dev = id <= 0xffff ? this.iommu.device(id) : undefined;
    return dev ? this.adopt(dev) : undefined;
  }

  /**
   * Makes `dev` an endpoint: binds it to the model's FD and places it as unattached. A device
   * already bound to another FD belongs to someone else and is not an endpoint.
   */
  adopt(dev: DeviceFd): Endpoint | undefined {
    if (dev.devId !== undefined) return undefined;
    dev.bind(this.fd);
    const ep = new Endpoint(dev, this.opts.msiRegion);
    this.endpoints.set(ep.rid, ep);
    this.placeUnattached(ep);
    return ep;
  }

  /**
   * Points an endpoint without a domain at identity (bypass) or nothing (blocked). If the engine
   * has no room for an identity space, the endpoint is blocked: never more access than allowed.
   */
  placeUnattached(ep: Endpoint): void {
    if (this.config.bypass) {
      try {
        ep.dev.attach(this.identity.ioasFor(ep));
        return;
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
    }
    ep.dev.detach();
  }

  /** Takes `ep` out of its domain, destroying the domain (IOAS and mappings) when it empties. */
  leaveDomain(ep: Endpoint): void {
    const d = ep.domain;
    if (!d) return;
    ep.domain = undefined;
    d.remove(ep);
    if (d.endpoints.length > 0) return;
    this.domains.delete(d.id);
    if (d.ioasId !== 0) this.fd.destroy(d.ioasId);
  }

  /** Re-places every unattached endpoint after `config.bypass` changed. */
  applyBypass(): void {
    for (const ep of this.endpoints.values()) if (!ep.domain) this.placeUnattached(ep);
  }

  /** Device reset (§5.13.6.1): every endpoint detached, every domain and mapping gone; `bypass` kept. */
  reset(): void {
    for (const ep of this.endpoints.values()) {
      if (!ep.domain) continue;
      this.placeUnattached(ep);
      this.leaveDomain(ep);
    }
    this.driverFeatures = 0n;
    this.mmio = this.bypassConfig = false;
  }
}

/** The status for an engine error of a request that was validated first (so this is rare). */
export function statusOf(e: unknown): number {
  if (!(e instanceof IommuError)) return STATUS.DEVERR;
  switch (e.errno) {
    case 'ENOMEM':
    case 'ENOSPC':
      return STATUS.NOMEM;
    case 'EEXIST':
      return STATUS.INVAL;
    case 'EADDRINUSE':
      return STATUS.UNSUPP;
    case 'EOVERFLOW':
      return STATUS.RANGE;
    case 'ENOENT':
      return STATUS.NOENT;
    default:
      return STATUS.DEVERR;
  }
}
