/**
 * The RISC-V IOMMU device model (specification 1.0) over ioasid's public API.
 * @module
 */
export { RiscvIommu, DEFAULT_CAPABILITIES, type RiscvIommuOptions, type RiscvTranslation, type RiscvDmaResult } from './riscv-iommu';
export { MAX_COMMANDS_PER_RUN } from './command-queue';
export type { InterruptSink } from './interrupts';
