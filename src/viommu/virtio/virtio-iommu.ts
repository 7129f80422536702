/**
 * VirtioIommu: the virtio-iommu device (VIRTIO 1.2 §5.13) over an `Iommu`, transport-agnostic.
 * The emulator owns the transport (PCI or MMIO registers, virtqueues, notifications) and hands
 * over each request of the request queue as the device-readable and device-writable parts of its
 * descriptor chain; the device answers in place and returns the used length. Domains are IOASes of
 * one FD the device owns; endpoints are the Iommu's devices (endpoint ID = requester ID), bound to
 * that FD; DMA keeps going through `iommu.translate` / `dmaRead` / `dmaWrite` and workers'
 * translators. Nothing a guest sends can throw: a request gets a status or, when the spec says so,
 * no answer at all (used length 0), and a refused request changes nothing.
 * @module
 */
import { IommuError, type FaultRecord, type Iommu } from '../../api';
import { attach, detach } from './attach';
import { CONFIG, FEATURE, HEAD_SIZE, READABLE_SIZE, REQ, STATUS, TAIL_SIZE } from './layout';
import { EventQueue } from './event-queue';
import { queueFault } from './fault-events';
import { map, unmap } from './map';
import { Model } from './model';
import { resolveOptions, type VirtioIommuOptions } from './options';
import { probe } from './probe';

/** What `state()` shows: the guest-visible state, addresses in bytes (end inclusive). */
export interface VirtioIommuState {
  /** `config.bypass`: unattached endpoints reach memory 1:1. */
  bypass: boolean;
  /** The feature bits the driver acknowledged. */
  driverFeatures: bigint;
  /** Endpoint ID → domain ID, or null when unattached. */
  endpoints: Record<number, number | null>;
  /** Every domain the guest created. */
  domains: {
    /** The guest's domain ID. */
    id: number;
    /** Attached with `ATTACH_F_BYPASS`: its endpoints reach memory 1:1. */
    bypass: boolean;
    /** Endpoint IDs attached to it. */
    endpoints: number[];
    /** Its mappings, in IOVA order. */
    mappings: {
      /** First IOVA. */
      start: bigint;
      /** Last IOVA (inclusive). */
      end: bigint;
      /** Output address of `start`. */
      phys: bigint;
      /** `VIRTIO_IOMMU_MAP_F_*` bits (READ 1, WRITE 2, MMIO 4). */
      flags: number;
    }[];
  }[];
}

const EVENT_CAPACITY = 256;

/**
 * The virtio-iommu device (VIRTIO 1.2 §5.13) over an `Iommu`, transport-agnostic: the emulator
 * hands it each request-queue descriptor chain and each event-queue buffer; domains are IOASes of
 * one FD the device owns, endpoints are the Iommu's devices (endpoint ID = requester ID).
 * @example
 * ```ts no-run
 * const vio = new VirtioIommu(iommu);
 * vio.onEvent = () => kickEventQueue();
 * const used = vio.handleRequest(readable, writable);   // one request of the request queue
 * ```
 */
export class VirtioIommu {
  /** `struct virtio_iommu_config`, live: read it for config-space reads; write through `writeConfig`. */
  readonly config: Uint8Array;
  /** Feature bits offered: VERSION_1, MAP_UNMAP, INPUT_RANGE, MMIO, BYPASS_CONFIG, PROBE (probeSize > 0), DOMAIN_RANGE (domainRange given). */
  readonly deviceFeatures: bigint;
  /** Called whenever a fault report is queued: kick the event queue (call `nextEvent`). */
  onEvent: (() => void) | undefined;
  private readonly m: Model;
  private readonly events = new EventQueue(EVENT_CAPACITY);
  private readonly unsubscribe: () => void;

  /**
   * Makes the device and adopts every device of `iommu` not bound to an FD yet as an endpoint,
   * placed as unattached (bypass or blocked by `opts.bypass`; blocked when the engine has no room
   * for its identity space: never more access than the configuration says).
   * @throws IommuError EINVAL / EOPNOTSUPP bad options; EBADF / ENOMEM no FD or binding possible.
   */
  constructor(iommu: Iommu, opts?: VirtioIommuOptions) {
    this.m = new Model(iommu, resolveOptions(opts, iommu.addressWidth));
    this.config = this.m.config.bytes;
    this.deviceFeatures = this.m.deviceFeatures;
    this.refreshEndpoints();
    this.unsubscribe = iommu.faults.subscribe((f) => this.reportFault(f));
  }

  /** The features the driver accepted (`ackFeatures`). */
  get driverFeatures(): bigint {
    return this.m.driverFeatures;
  }

  /**
   * Feature negotiation: records the driver's features, masked to the offered ones.
   * @returns the accepted bits. @throws IommuError EINVAL not a bigint in [0, 2^64).
   */
  ackFeatures(bits: bigint): bigint {
    if (typeof bits !== 'bigint' || bits < 0n || bits >> 64n !== 0n) throw new IommuError('EINVAL', 'ackFeatures', 'expected a bigint in [0, 2^64)');
    const m = this.m;
    m.driverFeatures = bits & m.deviceFeatures;
    m.mmio = m.acked(FEATURE.MMIO);
    m.bypassConfig = m.acked(FEATURE.BYPASS_CONFIG);
    return m.driverFeatures;
  }

  /**
   * A driver write to the configuration space. Only `bypass` (offset 0x24) is writable, only once
   * BYPASS_CONFIG is negotiated, and it keeps bit 0 only; every other byte is ignored. A change
   * re-places the unattached endpoints at once. Never throws.
   */
  writeConfig(offset: number, data: Uint8Array): void {
    if (!Number.isInteger(offset) || !(data instanceof Uint8Array) || !this.m.bypassConfig) return;
    const at = CONFIG.BYPASS - offset;
    if (at < 0 || at >= data.length) return;
    const on = (data[at]! & 1) === 1;
    if (on === this.m.config.bypass) return;
    this.m.config.bypass = on;
    this.m.applyBypass();
  }

  /**
   * Handles one request of the request queue in place. `readable` holds the request (head and
   * body), `writable` receives the answer (properties for PROBE, then the tail with the status).
   * @returns the used length: 4 (PROBE: probe_size + 4), or 0 when the spec says not to answer
   * (no room for head or tail, unknown type, PROBE not offered). Never throws.
   */
  handleRequest(readable: Uint8Array, writable: Uint8Array): number {
    if (!(readable instanceof Uint8Array) || !(writable instanceof Uint8Array)) return 0;
    if (readable.length < HEAD_SIZE || writable.length < TAIL_SIZE) return 0;
    const type = readable[0]!;
    if (type < REQ.ATTACH || type > REQ.PROBE) return 0;
    const probeSize = this.m.opts.probeSize;
    if (type === REQ.PROBE && probeSize === 0) return 0;
    const tail = type !== REQ.PROBE ? 0 : writable.length >= probeSize + TAIL_SIZE ? probeSize : writable.length - TAIL_SIZE;
    let status: number = STATUS.INVAL; // a body shorter than its type's cannot be parsed
    if (readable.length >= READABLE_SIZE[type]!) {
      try {
        status = this.dispatch(type, readable, writable);
      } catch {
        status = STATUS.DEVERR; // an engine failure the checks did not foresee
      }
    }
    writable[tail] = status;
    writable[tail + 1] = writable[tail + 2] = writable[tail + 3] = 0;
    return tail + TAIL_SIZE;
  }

  private dispatch(type: number, r: Uint8Array, w: Uint8Array): number {
    switch (type) {
      case REQ.MAP:
        return map(this.m, r);
      case REQ.UNMAP:
        return unmap(this.m, r);
      case REQ.ATTACH:
        return attach(this.m, r);
      case REQ.DETACH:
        return detach(this.m, r);
      default:
        return probe(this.m, r, w);
    }
  }

  /**
   * Fills one event-queue buffer with the oldest fault report (`struct virtio_iommu_fault`).
   * @returns 24, or 0 when no report waits or `writable` is shorter than 24 bytes (a report is
   * never split; it stays queued). Never throws.
   */
  nextEvent(writable: Uint8Array): number {
    if (!(writable instanceof Uint8Array)) return 0;
    return this.events.pop(writable);
  }

  /** Fault reports waiting for buffers, and reports dropped because too many waited. */
  get pendingEvents(): number {
    return this.events.size;
  }

  /** Fault reports dropped because the event queue was full. */
  get droppedEvents(): number {
    return this.events.dropped;
  }

  /**
   * Reports a translation fault (the owner's faults are reported automatically; pass those of
   * worker translators, `translator.faults`, here). Faults of non-endpoints are ignored.
   */
  reportFault(f: FaultRecord): void {
    if (typeof f !== 'object' || f === null || typeof f.iova !== 'bigint') return;
    if (queueFault(this.m, this.events, f)) this.onEvent?.();
  }

  /** Adopts devices added to the Iommu since (hot plug), so that `config.bypass` applies to them at once. */
  refreshEndpoints(): void {
    for (const dev of this.m.iommu.devices()) if (!this.m.endpoints.has(dev.rid)) this.m.adopt(dev);
  }

  /**
   * Device reset: every endpoint detached, every domain and mapping destroyed, features
   * renegotiated, pending reports dropped; `bypass` is kept. With `system: true` (a system reset)
   * `bypass` returns to its initial value too (§5.13.4.2).
   */
  reset(opts?: { system?: boolean }): void {
    this.m.reset();
    this.events.clear();
    if (opts?.system === true && this.m.config.bypass !== this.m.opts.bypass) {
      this.m.config.bypass = this.m.opts.bypass;
      this.m.applyBypass();
    }
  }

  /** The guest-visible state (tests and diagnostics). */
  state(): VirtioIommuState {
    const endpoints: Record<number, number | null> = {};
    for (const [id, ep] of this.m.endpoints) endpoints[id] = ep.domain?.id ?? null;
    const domains = [...this.m.domains.values()].sort((a, b) => a.id - b.id).map((d) => ({
      id: d.id,
      bypass: d.bypass,
      endpoints: d.endpoints.map((e) => e.rid).sort((a, b) => a - b),
      mappings: d.mappings.entries().map(([s, e, p, flags]) => ({ start: BigInt(s) << 12n, end: (BigInt(e) << 12n) - 1n, phys: BigInt(p) << 12n, flags })),
    }));
    return { bypass: this.m.config.bypass, driverFeatures: this.m.driverFeatures, endpoints, domains };
  }

  /** Stops reporting faults and closes the FD: endpoints are unbound (DMA blocked). */
  close(): void {
    this.unsubscribe();
    this.m.fd.close();
  }
}
