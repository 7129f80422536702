/**
 * ioasid: an IOMMU translation engine for emulators, with the FD-centric ownership model of Linux
 * iommufd (ex /dev/ioasid) and its hot path in WebAssembly.
 * @module
 */
export * from './api';
export { RiscvIommu, DEFAULT_CAPABILITIES, MAX_COMMANDS_PER_RUN, type RiscvIommuOptions, type RiscvTranslation, type RiscvDmaResult } from './viommu/riscv/index';
