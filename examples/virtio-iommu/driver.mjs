// The guest side: what Linux's virtio-iommu driver (drivers/iommu/virtio-iommu.c) sends, encoded
// byte by byte in the spec's layouts (VIRTIO 1.2 §5.13.6). Bring-up reads the configuration and
// negotiates features; each endpoint is probed and attached to its own default DMA domain; in
// strict mode every DMA buffer is one MAP before the device uses it and one UNMAP right after;
// releasing a device DETACHes it. The "virtqueue" is a call to the device's handleRequest with the
// readable and writable parts of one descriptor chain; the event queue is drained on each kick.

const T = { ATTACH: 1, DETACH: 2, MAP: 3, UNMAP: 4, PROBE: 5 };
const F = { INPUT_RANGE: 0n, DOMAIN_RANGE: 1n, MAP_UNMAP: 2n, PROBE: 4n, MMIO: 5n, BYPASS_CONFIG: 6n, VERSION_1: 32n };
export const STATUS_NAMES = ['OK', 'IOERR', 'UNSUPP', 'DEVERR', 'INVAL', 'RANGE', 'NOENT', 'FAULT', 'NOMEM'];
const PAGE = 0x1000n;

export class GuestDriver {
  constructor(vio) {
    this.vio = vio;
    this.requests = { ATTACH: 0, DETACH: 0, MAP: 0, UNMAP: 0, PROBE: 0 };
    this.failures = [];
    this.events = [];
    // One buffer for every request: the driver's request is built, sent and answered in place.
    this.readable = new Uint8Array(72);
    this.rview = new DataView(this.readable.buffer);
  }

  /** virtio_iommu_probe(): features, then the configuration fields they make valid. */
  bringUp() {
    const offered = this.vio.deviceFeatures;
    const bit = (f) => (offered >> f) & 1n;
    if (!bit(F.VERSION_1) || !bit(F.MAP_UNMAP)) throw new Error('device lacks VERSION_1 or MAP_UNMAP: Linux would not bind');
    const wanted = [F.VERSION_1, F.MAP_UNMAP, F.INPUT_RANGE, F.DOMAIN_RANGE, F.PROBE, F.MMIO, F.BYPASS_CONFIG].reduce((a, f) => a | (1n << f), 0n);
    this.features = this.vio.ackFeatures(offered & wanted);
    const c = new DataView(this.vio.config.buffer, this.vio.config.byteOffset, 40);
    this.granule = c.getBigUint64(0, true) & -c.getBigUint64(0, true);
    this.inputStart = this.has(F.INPUT_RANGE) ? c.getBigUint64(8, true) : 0n;
    this.inputEnd = this.has(F.INPUT_RANGE) ? c.getBigUint64(16, true) : (1n << 64n) - 1n;
    this.probeSize = this.has(F.PROBE) ? c.getUint32(32, true) : 0;
    // With BYPASS_CONFIG the first domain ID is kept for the identity domain.
    this.nextDomain = (this.has(F.DOMAIN_RANGE) ? c.getUint32(24, true) : 0) + (this.has(F.BYPASS_CONFIG) ? 1 : 0);
    this.vio.onEvent = () => this.drainEvents();
  }

  has(f) {
    return ((this.features >> f) & 1n) === 1n;
  }

  /** One request through the request queue; `writable` bytes answer; the status is checked. */
  send(type, fill, writableBytes = 4) {
    this.readable.fill(0);
    this.readable[0] = type;
    const size = fill(this.rview);
    const w = new Uint8Array(writableBytes);
    const used = this.vio.handleRequest(this.readable.subarray(0, size), w);
    const name = Object.keys(T).find((k) => T[k] === type);
    this.requests[name]++;
    // Linux copies the answer back only when the used length is the whole writable part.
    const status = used === writableBytes ? w[writableBytes - 4] : 1;
    if (status !== 0) this.failures.push(`${name}: ${STATUS_NAMES[status] ?? status} (used ${used})`);
    return { status, w };
  }

  /** viommu_probe_endpoint(): the endpoint's reserved regions (RESV_MEM properties). */
  probe(endpoint) {
    if (!this.probeSize) return [];
    const { status, w } = this.send(T.PROBE, (v) => (v.setUint32(4, endpoint, true), 72), this.probeSize + 4);
    const regions = [];
    for (let at = 0; status === 0 && at + 4 <= this.probeSize; ) {
      const d = new DataView(w.buffer, at);
      const type = d.getUint16(0, true) & 0xfff;
      if (type === 0) break;
      const length = d.getUint16(2, true);
      if (type === 1) regions.push({ subtype: d.getUint8(4) === 1 ? 'msi' : 'reserved', start: d.getBigUint64(8, true), end: d.getBigUint64(16, true) });
      at += 4 + length;
    }
    return regions;
  }

  /** The default DMA domain of a new group: a fresh domain ID, one ATTACH per endpoint ID. */
  attachDefaultDomain(endpoint, reserved) {
    const domain = { id: this.nextDomain++, reserved, nextIova: this.inputStart > PAGE ? this.inputStart : PAGE };
    this.send(T.ATTACH, (v) => (v.setUint32(4, domain.id, true), v.setUint32(8, endpoint, true), 20));
    return domain;
  }

  /** iommu_dma_alloc_iova (simplified): the next free granule-aligned IOVA outside reserved regions. */
  allocIova(domain, bytes) {
    const size = ((bytes + this.granule - 1n) / this.granule) * this.granule;
    let iova = domain.nextIova;
    for (const r of domain.reserved) if (iova <= r.end && iova + size - 1n >= r.start) iova = ((r.end + 1n + this.granule - 1n) / this.granule) * this.granule;
    if (iova + size - 1n > this.inputEnd) iova = PAGE; // wrap: strict mode unmapped everything behind us
    domain.nextIova = iova + size;
    return { iova, size };
  }

  /** dma_map_single in strict mode: one MAP of the buffer. */
  map(domain, iova, size, phys, write) {
    const flags = 1 | (write ? 2 : 0);
    return this.send(T.MAP, (v) => (v.setUint32(4, domain.id, true), v.setBigUint64(8, iova, true), v.setBigUint64(16, iova + size - 1n, true), v.setBigUint64(24, phys, true), v.setUint32(32, flags, true), 36)).status;
  }

  /** dma_unmap_single in strict mode: one UNMAP, synchronous (iotlb_sync). */
  unmap(domain, iova, size) {
    return this.send(T.UNMAP, (v) => (v.setUint32(4, domain.id, true), v.setBigUint64(8, iova, true), v.setBigUint64(16, iova + size - 1n, true), 28)).status;
  }

  /** viommu_release_device(): DETACH from the domain. */
  detach(domain, endpoint) {
    return this.send(T.DETACH, (v) => (v.setUint32(4, domain.id, true), v.setUint32(8, endpoint, true), 20)).status;
  }

  /** viommu_event_handler(): one 24-byte buffer per report. */
  drainEvents() {
    const buf = new Uint8Array(24);
    while (this.vio.nextEvent(buf) === 24) {
      const d = new DataView(buf.buffer);
      this.events.push({ reason: ['unknown', 'domain', 'mapping'][buf[0]] ?? 'unknown', flags: d.getUint32(4, true), endpoint: d.getUint32(8, true), address: d.getBigUint64(16, true) });
    }
  }
}
