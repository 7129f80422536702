// The public calls a vIOMMU model needs to find its endpoints and their reserved regions, and to
// see faults as they happen: Iommu.device / devices, DeviceFd.reservedRegions, FaultLog.subscribe.
import { describe, expect, test } from 'vitest';
import { Access, Iommu, IommuError, NO_PASID, type FaultRecord } from '../src/index';

const small = () => Iommu.createSync({ iotlbEntries: 256, translators: 2, maxDomains: 64, maxMemoryBytes: 16 * 2 ** 20 });

describe('Iommu.device / Iommu.devices', () => {
  test('finds a device by requester ID and lists every device in RID order', () => {
    const iommu = small();
    const b = iommu.addDevice({ bdf: '00:03.1' });
    const a = iommu.addDevice({ bdf: '00:01.0' });
    expect(iommu.device(0x19)).toBe(b);
    expect(iommu.device(0x08)).toBe(a);
    expect(iommu.device(0x10)).toBeUndefined();
    expect(iommu.device(-1)).toBeUndefined();
    expect(iommu.devices()).toEqual([a, b]);
  });
});

describe('DeviceFd.reservedRegions', () => {
  test('returns the regions the device was added with, as copies', () => {
    const iommu = small();
    const dev = iommu.addDevice({ bdf: '00:02.0', reservedRegions: [{ start: 0xfee00000n, last: 0xfeefffffn }] });
    const regions = dev.reservedRegions;
    expect(regions).toEqual([{ start: 0xfee00000n, last: 0xfeefffffn }]);
    regions[0]!.start = 0n;
    expect(dev.reservedRegions[0]!.start).toBe(0xfee00000n);
    expect(iommu.addDevice({ bdf: '00:03.0' }).reservedRegions).toEqual([]);
  });
});

describe('FaultLog.subscribe', () => {
  test('each listener sees every fault as it is logged, drain still gets them, unsubscribe stops it', () => {
    const iommu = small();
    const dev = iommu.addDevice({ bdf: '00:04.0' });
    const seenA: FaultRecord[] = [];
    const seenB: FaultRecord[] = [];
    const offA = iommu.faults.subscribe((r) => seenA.push(r));
    iommu.faults.subscribe((r) => seenB.push(r));
    iommu.translate(dev.rid, NO_PASID, 0x1000n, Access.Write);
    expect(seenA).toEqual([expect.objectContaining({ rid: dev.rid, iova: 0x1000n, access: Access.Write, reason: 'not-attached' })]);
    expect(seenB).toEqual(seenA);
    offA();
    iommu.translate(dev.rid, NO_PASID, 0x2000n, Access.Read);
    expect(seenA).toHaveLength(1);
    expect(seenB).toHaveLength(2);
    expect(iommu.faults.drain().map((r) => r.iova)).toEqual([0x1000n, 0x2000n]);
  });

  test('a listener that throws does not make translate throw', () => {
    const iommu = small();
    iommu.faults.subscribe(() => {
      throw new Error('listener bug');
    });
    expect(iommu.translate(0x77, NO_PASID, 0n, Access.Read).ok).toBe(false);
    expect(iommu.faults.size).toBe(1);
  });

  test('a listener that is not a function is EINVAL', () => {
    const iommu = small();
    expect(() => iommu.faults.subscribe(42 as never)).toThrow(IommuError);
    expect(() => iommu.faults.subscribe(42 as never)).toThrow(/EINVAL/);
  });
});
