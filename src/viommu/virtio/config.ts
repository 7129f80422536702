/**
 * `struct virtio_iommu_config` (§5.13.4) as a live 40-byte array. Every field but `bypass` is
 * fixed at construction and never changes (Linux only warns on config changes). The driver may
 * write only `bypass`, only once VIRTIO_IOMMU_F_BYPASS_CONFIG is negotiated; the device shows 0
 * or 1 there and nothing else (§5.13.4.2). Other writes are ignored (the spec leaves them open).
 * @module
 */
import { writeU32, writeU64 } from './bytes';
import { CONFIG } from './layout';
import type { Resolved } from './options';

export class VirtioIommuConfig {
  readonly bytes = new Uint8Array(CONFIG.SIZE);

  constructor(o: Resolved) {
    writeU64(this.bytes, CONFIG.PAGE_SIZE_MASK, o.pageSizeMask);
    writeU64(this.bytes, CONFIG.INPUT_START, o.inputStart);
    writeU64(this.bytes, CONFIG.INPUT_END, o.inputEnd);
    writeU32(this.bytes, CONFIG.DOMAIN_START, o.domainRange?.start ?? 0);
    writeU32(this.bytes, CONFIG.DOMAIN_END, o.domainRange?.end ?? 0xffffffff);
    writeU32(this.bytes, CONFIG.PROBE_SIZE, o.probeSize);
    this.bypass = o.bypass;
  }

  get bypass(): boolean {
    return this.bytes[CONFIG.BYPASS] === 1;
  }

  set bypass(on: boolean) {
    this.bytes[CONFIG.BYPASS] = on ? 1 : 0;
  }
}
