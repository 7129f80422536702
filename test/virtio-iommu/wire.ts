// A test-side encoder and decoder of virtio-iommu's wire layouts, written byte by byte from the
// specification's tables (VIRTIO 1.2 §5.13.6, include/uapi/linux/virtio_iommu.h), independent of
// src/viommu/virtio/: little-endian fields at fixed offsets, nothing shared with the device.

export const T = { ATTACH: 1, DETACH: 2, MAP: 3, UNMAP: 4, PROBE: 5 } as const;
export const S = { OK: 0, IOERR: 1, UNSUPP: 2, DEVERR: 3, INVAL: 4, RANGE: 5, NOENT: 6, FAULT: 7, NOMEM: 8 } as const;
export const F = { INPUT_RANGE: 0, DOMAIN_RANGE: 1, MAP_UNMAP: 2, BYPASS: 3, PROBE: 4, MMIO: 5, BYPASS_CONFIG: 6, VERSION_1: 32 } as const;
export const MAP_READ = 1;
export const MAP_WRITE = 2;
export const MAP_MMIO = 4;
export const ATTACH_BYPASS = 1;

/** Puts `value` little-endian into `n` bytes of `b` at `at`. */
export function put(b: Uint8Array, at: number, n: number, value: bigint | number): void {
  let v = BigInt(value);
  for (let i = 0; i < n; i++) {
    b[at + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/** Reads `n` little-endian bytes of `b` at `at`. */
export function get(b: Uint8Array, at: number, n: number): bigint {
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[at + i]!);
  return v;
}

function request(size: number, type: number, headReserved = 0): Uint8Array {
  const b = new Uint8Array(size);
  b[0] = type;
  put(b, 1, 3, headReserved);
  return b;
}

/** struct virtio_iommu_req_attach: head, domain @4, endpoint @8, flags @12, reserved[4] @16; 20 bytes. */
export function attachReq(a: { domain: number; endpoint: number; flags?: number; reserved?: number; headReserved?: number }): Uint8Array {
  const b = request(20, T.ATTACH, a.headReserved);
  put(b, 4, 4, a.domain);
  put(b, 8, 4, a.endpoint);
  put(b, 12, 4, a.flags ?? 0);
  put(b, 16, 4, a.reserved ?? 0);
  return b;
}

/** struct virtio_iommu_req_detach: head, domain @4, endpoint @8, reserved[8] @12; 20 bytes. */
export function detachReq(a: { domain: number; endpoint: number; reserved?: bigint }): Uint8Array {
  const b = request(20, T.DETACH);
  put(b, 4, 4, a.domain);
  put(b, 8, 4, a.endpoint);
  put(b, 12, 8, a.reserved ?? 0n);
  return b;
}

/** struct virtio_iommu_req_map: head, domain @4, virt_start @8, virt_end @16, phys_start @24, flags @32; 36 bytes. */
export function mapReq(a: { domain: number; start: bigint; end: bigint; phys: bigint; flags: number }): Uint8Array {
  const b = request(36, T.MAP);
  put(b, 4, 4, a.domain);
  put(b, 8, 8, a.start);
  put(b, 16, 8, a.end);
  put(b, 24, 8, a.phys);
  put(b, 32, 4, a.flags);
  return b;
}

/** struct virtio_iommu_req_unmap: head, domain @4, virt_start @8, virt_end @16, reserved[4] @24; 28 bytes. */
export function unmapReq(a: { domain: number; start: bigint; end: bigint; reserved?: number }): Uint8Array {
  const b = request(28, T.UNMAP);
  put(b, 4, 4, a.domain);
  put(b, 8, 8, a.start);
  put(b, 16, 8, a.end);
  put(b, 24, 4, a.reserved ?? 0);
  return b;
}

/** struct virtio_iommu_req_probe: head, endpoint @4, reserved[64] @8; 72 bytes. */
export function probeReq(a: { endpoint: number; reservedFill?: number }): Uint8Array {
  const b = request(72, T.PROBE);
  put(b, 4, 4, a.endpoint);
  b.fill(a.reservedFill ?? 0, 8, 72);
  return b;
}

export interface Property {
  offset: number;
  type: number;
  /** Bits 12-15 of the type field. */
  reservedBits: number;
  length: number;
  subtype?: number;
  reserved?: bigint;
  start?: bigint;
  end?: bigint;
}

/** Walks the properties as Linux does: until type NONE or the end of probe_size. */
export function parseProperties(w: Uint8Array, probeSize: number): Property[] {
  const out: Property[] = [];
  let at = 0;
  while (at + 4 <= probeSize) {
    const word = Number(get(w, at, 2));
    const type = word & 0xfff;
    if (type === 0) break;
    const length = Number(get(w, at + 2, 2));
    const p: Property = { offset: at, type, reservedBits: word >> 12, length };
    if (type === 1) Object.assign(p, { subtype: w[at + 4], reserved: get(w, at + 5, 3), start: get(w, at + 8, 8), end: get(w, at + 16, 8) });
    out.push(p);
    at += 4 + length;
  }
  return out;
}

/** struct virtio_iommu_fault: reason @0, reserved[3] @1, flags @4, endpoint @8, reserved1[4] @12, address @16. */
export function parseFault(b: Uint8Array): { reason: number; reserved: bigint; flags: number; endpoint: number; reserved1: bigint; address: bigint } {
  return { reason: b[0]!, reserved: get(b, 1, 3), flags: Number(get(b, 4, 4)), endpoint: Number(get(b, 8, 4)), reserved1: get(b, 12, 4), address: get(b, 16, 8) };
}

/** Reads a little-endian field of the configuration space. */
export const cfg = {
  pageSizeMask: (c: Uint8Array) => get(c, 0, 8),
  inputStart: (c: Uint8Array) => get(c, 8, 8),
  inputEnd: (c: Uint8Array) => get(c, 16, 8),
  domainStart: (c: Uint8Array) => Number(get(c, 24, 4)),
  domainEnd: (c: Uint8Array) => Number(get(c, 28, 4)),
  probeSize: (c: Uint8Array) => Number(get(c, 32, 4)),
  bypass: (c: Uint8Array) => c[36]!,
};
