/**
 * ioasid: an IOMMU translation engine for emulators, with the FD-centric ownership model of Linux
 * iommufd (ex /dev/ioasid) and its hot path in WebAssembly.
 * @module
 */
export * from './api';
export { VirtioIommu, type VirtioIommuState } from './viommu/virtio/virtio-iommu';
export type { VirtioIommuOptions } from './viommu/virtio/options';
export { RiscvIommu, DEFAULT_CAPABILITIES, MAX_COMMANDS_PER_RUN, type RiscvIommuOptions, type RiscvTranslation, type RiscvDmaResult, type InterruptSink } from './viommu/riscv/index';
