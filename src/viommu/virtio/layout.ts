/**
 * The numbers of the virtio-iommu device (VIRTIO 1.2, §5.13 "IOMMU Device", and Linux's
 * include/uapi/linux/virtio_iommu.h): feature bits, request types and sizes, status codes, flags,
 * probe properties and fault reasons. Every multi-byte field of the device is little-endian.
 * @module
 */

/** Virtio device type of an IOMMU (§5.13.1). */
export const VIRTIO_ID_IOMMU = 23;

/** Feature bits (§5.13.3); VERSION_1 is the transport-independent bit 32 (§6). */
export const FEATURE = {
  INPUT_RANGE: 0n,
  DOMAIN_RANGE: 1n,
  MAP_UNMAP: 2n,
  BYPASS: 3n,
  PROBE: 4n,
  MMIO: 5n,
  BYPASS_CONFIG: 6n,
  VERSION_1: 32n,
} as const;

/** `struct virtio_iommu_config` (§5.13.4): 40 bytes. */
export const CONFIG = {
  PAGE_SIZE_MASK: 0x00,
  INPUT_START: 0x08,
  INPUT_END: 0x10,
  DOMAIN_START: 0x18,
  DOMAIN_END: 0x1c,
  PROBE_SIZE: 0x20,
  BYPASS: 0x24,
  SIZE: 40,
} as const;

/** Request types (§5.13.6). */
export const REQ = { ATTACH: 1, DETACH: 2, MAP: 3, UNMAP: 4, PROBE: 5 } as const;

/** Bytes of the device-readable part of each request type (head included), indexed by type. */
export const READABLE_SIZE = [0, 20, 20, 36, 28, 72] as const;

/** `struct virtio_iommu_req_head` and `_tail`: 4 bytes each (type or status, then reserved[3]). */
export const HEAD_SIZE = 4;
export const TAIL_SIZE = 4;

/** Status codes of the tail (§5.13.6.1). */
export const STATUS = { OK: 0, IOERR: 1, UNSUPP: 2, DEVERR: 3, INVAL: 4, RANGE: 5, NOENT: 6, FAULT: 7, NOMEM: 8 } as const;

/** ATTACH flags (§5.13.6.3). */
export const ATTACH_F_BYPASS = 1;

/** MAP flags (§5.13.6.5). */
export const MAP_F = { READ: 1, WRITE: 2, MMIO: 4, MASK: 7 } as const;

/** PROBE properties (§5.13.6.8): header = le16 type (bits 0-11), le16 length of the value. */
export const PROBE_T = { NONE: 0, RESV_MEM: 1 } as const;
export const PROP_HEAD_SIZE = 4;
/** RESV_MEM: header, subtype u8, reserved[3], start le64, end le64 (inclusive). */
export const RESV_MEM_SIZE = 24;
export const RESV_MEM_T = { RESERVED: 0, MSI: 1 } as const;

/** `struct virtio_iommu_fault` (§5.13.6.9): 24 bytes on the event queue. */
export const FAULT_SIZE = 24;
export const FAULT_REASON = { UNKNOWN: 0, DOMAIN: 1, MAPPING: 2 } as const;
export const FAULT_F = { READ: 1, WRITE: 2, ADDRESS: 0x100 } as const;
