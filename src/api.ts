/**
 * The public API of the engine: everything an emulator (and a guest-visible device model under
 * `src/viommu/`) may use. Device models import from this file only, the way QEMU's vIOMMUs use
 * nothing of iommufd but its uAPI; `index.ts` adds the device models on top.
 * @module
 */
export { Iommu, sharedMemoryUnavailableReason, type IommuOptions, type DeviceOptions, type Restored } from './iommu';
export type { RestoreOptions, RestoredObjects } from './snapshot/index';
export { IommuFd, type HwptAllocArgs } from './iommufd';
export type { FdLimits } from './fd-limits';
export { DeviceFd } from './device';
export { Translator, type TranslatorHandle, type TranslatorStats } from './translator';
export { Batch } from './batch';
export { IoasAccess, type UnmapCallback } from './access';
export type { DmaResult } from './dma';
export { IommuError, ERRNO, type Errno } from './errno';
export { Access, NO_PASID, FAULT_REASONS, TranslationOut, type Translation, type Fault, type FaultReason } from './translation';
export { FaultLog, type FaultRecord } from './fault-log';
export type { MapArgs, CopyArgs } from './ioas';
export type { IoRange } from './io-pagetable';
export type { HwptUserArgs, UserTable } from './hwpt-user';
export { FaultQueueFd, type PageRequest, type PageResponse, type PageResponseArgs } from './fault-queue';
export { InvalidateError, type InvalidateEntry } from './invalidate';
