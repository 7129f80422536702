// A guest's view of one virtio-iommu: an engine with RAM and endpoints, the device, and helpers to
// send requests built with wire.ts and to check that a refused request changed nothing.
import { expect } from 'vitest';
import { Access, Iommu, NO_PASID, VirtioIommu, type DeviceOptions, type IommuOptions, type VirtioIommuOptions } from '../../src/index';
import { F, S, cfg } from './wire';

export const RAM_BASE = 0x8000_0000n;
export const PAGE = 0x1000n;
/** Endpoint IDs (requester IDs) of the default devices: 00:01.0 and 00:02.0, the second with a reserved region. */
export const EP1 = 0x08;
export const EP2 = 0x10;
export const RESERVED2 = { start: 0x4000_0000n, last: 0x400f_ffffn };
export const MSI = { start: 0xfee0_0000n, end: 0xfeef_ffffn };

/** Every feature the device offers; what Linux accepts. */
export const ALL = (vio: VirtioIommu): bigint => vio.deviceFeatures;

export interface Guest {
  iommu: Iommu;
  vio: VirtioIommu;
  /** Sends one request; `writable` defaults to 4 bytes (PROBE: probe_size + 4), pre-filled with 0xff. */
  send(readable: Uint8Array, writableBytes?: number): { used: number; status: number; w: Uint8Array };
  status(readable: Uint8Array): number;
  translate(ep: number, iova: bigint, access?: number): { ok: boolean; phys: bigint; reason?: string };
}

export function guest(o: { vio?: VirtioIommuOptions; devices?: DeviceOptions[]; iommu?: IommuOptions; ack?: bigint | 'none' } = {}): Guest {
  const iommu = Iommu.createSync({ addressWidth: 39, iotlbEntries: 256, translators: 2, maxDomains: 64, maxMemoryBytes: 64 * 2 ** 20, ram: { base: RAM_BASE, bytes: 1 << 20 }, ...o.iommu });
  for (const d of o.devices ?? [{ bdf: '00:01.0' }, { bdf: '00:02.0', reservedRegions: [RESERVED2] }]) iommu.addDevice(d);
  const vio = new VirtioIommu(iommu, o.vio);
  if (o.ack !== 'none') vio.ackFeatures(o.ack ?? ALL(vio));
  const probeSize = cfg.probeSize(vio.config);
  const send = (readable: Uint8Array, writableBytes?: number) => {
    const size = writableBytes ?? (readable[0] === 5 ? probeSize + 4 : 4);
    const w = new Uint8Array(size).fill(0xff);
    const used = vio.handleRequest(readable, w);
    const tail = readable[0] === 5 && size >= probeSize + 4 ? probeSize : size - 4;
    return { used, status: used === 0 ? -1 : w[tail]!, w };
  };
  return {
    iommu, vio, send,
    status: (readable) => send(readable).status,
    translate: (ep, iova, access = Access.Read) => {
      const t = iommu.translate(ep, NO_PASID, iova, access);
      return t.ok ? { ok: true, phys: t.phys } : { ok: false, phys: 0n, reason: t.fault?.reason };
    },
  };
}

/** IOVAs whose translations `unchanged` compares: around the test mappings and both bypass cases. */
const PROBES = [0n, 0x1000n, 0x10_0000n, 0x10_1000n, 0x10_2000n, 0x20_0000n, 0x4000_0000n, 0x8000_0000n, 0x8000_1000n];

function observe(g: Guest): unknown {
  const t = g.vio.state();
  const tr = [EP1, EP2].flatMap((ep) => PROBES.map((iova) => [g.translate(ep, iova, Access.Read), g.translate(ep, iova, Access.Write)]));
  return { state: t, tr };
}

/** Sends `readable`, expects `status`, and expects the device state and every probed translation unchanged. */
export function refused(g: Guest, readable: Uint8Array, status: number): void {
  const before = observe(g);
  expect(g.send(readable).status).toBe(status);
  expect(observe(g)).toEqual(before);
}

export function ok(g: Guest, readable: Uint8Array): void {
  expect(g.send(readable).status).toBe(S.OK);
}

export const bit = (n: number): bigint => 1n << BigInt(n);
export { F };
