/**
 * The public API of the engine: everything an emulator (and a guest-visible device model under
 * `src/viommu/`) may use. Device models import from this file only, the way QEMU's vIOMMUs use
 * nothing of iommufd but its uAPI; `index.ts` adds the device models on top.
 * @module
 */
export { Iommu, type Restored } from './iommu';
export { sharedMemoryUnavailableReason, type IommuOptions, type DeviceOptions } from './options';
export type { RestoreOptions, RestoredObjects } from './snapshot/index';
export { IommuFd, type HwptAllocArgs } from './iommufd/iommufd';
export type { FdLimits } from './iommufd/fd-limits';
export { DeviceFd } from './iommufd/device';
export { Translator, type TranslatorHandle, type TranslatorStats } from './dma/translator';
export { Batch } from './dma/batch';
export { IoasAccess, type UnmapCallback } from './iommufd/access';
export type { FdObject, ObjType } from './iommufd/object-table';
export type { DmaResult } from './dma/dma';
export type { RamWindowOptions } from './core/ram-options';
export type { RamWindowSpec } from './core/ram-window';
export { IommuError, ERRNO, type Errno } from './base/errno';
export { Access, NO_PASID, FAULT_REASONS, TranslationOut, type Translation, type Fault, type FaultReason } from './dma/translation';
export { FaultLog, type FaultRecord, type FaultListener } from './dma/fault-log';
export type { MapArgs, CopyArgs } from './iommufd/ioas';
export { MAP_READ, MAP_WRITE, type MapBatch, type UnmapBatch } from './iommufd/ioas-batch';
export type { IoRange } from './iommufd/io-range';
export type { HwptUserArgs, UserTable } from './iommufd/hwpt-user';
export { FaultQueueFd, type PageRequest, type PageResponse, type PageResponseArgs } from './iommufd/fault-queue';
export { InvalidateError, type InvalidateEntry } from './iommufd/invalidate';
