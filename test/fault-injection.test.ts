// Fault injection in the manner of the kernel's iommufd_fail_nth: through the countdown shared by
// the TS layer (Engine.failPoint: object IDs, domain slots, PASIDs, PASID tables, devices) and the
// Wasm core (page allocation, memory growth, buffers), every public control call of a
// representative sequence is made to fail at its 1st, 2nd, 3rd… fallible step until it succeeds.
// Each failure must be a clean IommuError ENOMEM that changed nothing observable: objects and IDs,
// areas and ranges, attachments, PASIDs, translations (IOTLB included), and the core's page-pool
// and domain counters. At the end, closing every FD must return the page pool to the pages that
// are never freed (device bus pages and PASID directories) and leave no domain and no ID behind.
import { describe, expect, test } from 'vitest';
import { Access, Iommu, IommuError, NO_PASID, type DeviceFd, type IommuFd } from '../src/index';
import * as testing from './testing';
import { observe } from './helpers';

const K = 4096;
const M2 = 2 * 1024 * 1024;

interface Ctx {
  iommu: Iommu;
  fds: IommuFd[];
  devs: DeviceFd[];
  /** IDs and PASIDs the sequence hands from one step to the next. */
  ids: Record<string, number>;
}

/** Everything observable (helpers.ts `observe`: it also probes both ends and the middle of every area). */
function snapshot(c: Ctx) {
  return observe({ iommu: c.iommu, fds: c.fds, devs: c.devs, probes: [0n, 0x10_0000n, BigInt(M2), 1n << 47n] });
}

type Step = [name: string, run: (c: Ctx) => unknown];

/** The sequence: every public control call, with zero, one and two domains on the IOAS. */
const STEPS: Step[] = [
  ['open', (c) => c.fds.push(c.iommu.open())],
  ['ioasAlloc', (c) => (c.ids.ioas = c.fds[0]!.ioasAlloc())],
  ['ioasIovaRanges', (c) => c.fds[0]!.ioasIovaRanges(c.ids.ioas!)],
  ['ioasAllowIovas', (c) => c.fds[0]!.ioasAllowIovas(c.ids.ioas!, [{ start: 16n * 1024n, last: 0xfdff_ffffn }, { start: 1n << 32n, last: (1n << 40n) - 1n }])],
  ['ioasMap auto, no domain', (c) => (c.ids.autoIova = Number(c.fds[0]!.ioasMap(c.ids.ioas!, { length: 16 * K, phys: 0x4000_0000 })))],
  ['ioasMap fixed, no domain', (c) => c.fds[0]!.ioasMap(c.ids.ioas!, { iova: 0x20_0000 + 3 * K, length: 5 * M2, phys: 0x8000_0000 + 7 * K })],
  ['addDevice', (c) => c.devs.push(c.iommu.addDevice({ bdf: '00:03.0' }))],
  ['bind', (c) => (c.ids.devA = c.devs[0]!.bind(c.fds[0]!))],
  ['attach RID to IOAS (auto HWPT)', (c) => (c.ids.auto = c.devs[0]!.attach(c.ids.ioas!))],
  ['ioasMap, one domain', (c) => c.fds[0]!.ioasMap(c.ids.ioas!, { iova: 0x4000_0000 + 5 * K, length: 3 * M2, phys: 0x1_0000_0000 })],
  ['addDevice, second bus', (c) => c.devs.push(c.iommu.addDevice({ bdf: '07:00.0', reservedRegions: [{ start: 0xfee0_0000n, last: 0xfeef_ffffn }] }))],
  ['bind second', (c) => (c.ids.devB = c.devs[1]!.bind(c.fds[0]!))],
  ['hwptAlloc (second domain)', (c) => (c.ids.hwpt = c.fds[0]!.hwptAlloc({ devId: c.ids.devB!, ptId: c.ids.ioas!, pasid: true }))],
  ['ioasMap, two domains', (c) => c.fds[0]!.ioasMap(c.ids.ioas!, { iova: 0x1_0000_0000 + 9 * K, length: 4 * M2 + 8 * K, phys: 0x3_0000_0000 + 3 * K })],
  ['ioasMap 1 GiB leaf, two domains', (c) => c.fds[0]!.ioasMap(c.ids.ioas!, { iova: 2 ** 31, length: 2 ** 30, phys: 2 ** 33 })],
  ['attach second RID to HWPT', (c) => c.devs[1]!.attach(c.ids.hwpt!)],
  ['ioasAlloc second', (c) => (c.ids.ioas2 = c.fds[0]!.ioasAlloc())],
  ['attach RID: replace to second IOAS (auto HWPT freed)', (c) => c.devs[0]!.attach(c.ids.ioas2!)],
  ['ioasCopy into a domain', (c) => c.fds[0]!.ioasCopy({ dstIoas: c.ids.ioas2!, srcIoas: c.ids.ioas!, srcIova: 0x4000_0000 + 5 * K, length: 3 * M2 })],
  ['ioasCopy same IOAS, auto IOVA, two domains', (c) => c.fds[0]!.ioasCopy({ dstIoas: c.ids.ioas!, srcIoas: c.ids.ioas!, srcIova: 0x1_0000_0000 + 9 * K, length: 2 * M2 })],
  ['attach RID back to first IOAS (auto HWPT again)', (c) => c.devs[0]!.attach(c.ids.ioas!)],
  ['pasidAlloc', (c) => (c.ids.pasid = c.fds[0]!.pasidAlloc())],
  ['pasidAlloc fixed', (c) => (c.ids.pasid2 = c.fds[0]!.pasidAlloc({ pasid: 5000 }))],
  ['attach PASID', (c) => c.devs[1]!.attach(c.ids.hwpt!, { pasid: c.ids.pasid! })],
  ['attach second PASID (new PASID leaf)', (c) => c.devs[1]!.attach(c.ids.hwpt!, { pasid: c.ids.pasid2! })],
  ['ioasUnmap, two domains', (c) => c.fds[0]!.ioasUnmap(c.ids.ioas!, 0x1_0000_0000 + 9 * K, 4 * M2 + 8 * K)],
  ['open second FD', (c) => c.fds.push(c.iommu.open())],
  ['ioasAlloc in second FD', (c) => (c.ids.ioasB = c.fds[1]!.ioasAlloc())],
  ['ioasMap in second FD', (c) => c.fds[1]!.ioasMap(c.ids.ioasB!, { iova: 0x10_0000, length: 64 * K, phys: 0x9_0000_0000 })],
  ['addDevice third', (c) => c.devs.push(c.iommu.addDevice({ bdf: '07:01.0', pasidBits: 8 }))],
  ['bind third to second FD', (c) => (c.ids.devC = c.devs[2]!.bind(c.fds[1]!))],
  ['hwptAlloc in second FD', (c) => (c.ids.hwptB = c.fds[1]!.hwptAlloc({ devId: c.ids.devC!, ptId: c.ids.ioasB!, pasid: true }))],
  ['attach third RID', (c) => c.devs[2]!.attach(c.ids.hwptB!)],
  ['pasidAlloc in second FD', (c) => (c.ids.pasidB = c.fds[1]!.pasidAlloc())],
  ['attach third PASID', (c) => c.devs[2]!.attach(c.ids.hwptB!, { pasid: c.ids.pasidB! })],
  ['detach PASID', (c) => c.devs[1]!.detach({ pasid: c.ids.pasid! })],
  ['pasidFree', (c) => c.fds[0]!.pasidFree(c.ids.pasid!)],
  ['detach RID', (c) => c.devs[0]!.detach()],
  ['destroy second IOAS', (c) => c.fds[0]!.destroy(c.ids.ioas2!)],
  ['ioasUnmap all', (c) => c.fds[0]!.ioasUnmap(c.ids.ioas!, 0n, (1n << 64n) - 1n)],
  ['unbind', (c) => c.devs[0]!.unbind()],
  ['close second FD', (c) => c.fds[1]!.close()],
  ['close first FD', (c) => c.fds[0]!.close()],
];

describe('fault injection (iommufd_fail_nth): every fallible step of every call unwinds cleanly', () => {
  test.each([
    ['shared memory', true],
    ['unshared memory', false],
  ])('%s', (_name, shared) => {
    const iommu = Iommu.createSync({ shared, translators: 2, iotlbEntries: 64, maxMemoryBytes: 64 * 2 ** 20 });
    const c: Ctx = { iommu, fds: [], devs: [], ids: {} };
    const failures: Record<string, number> = {};
    let injected = 0;
    for (const [name, run] of STEPS) {
      for (let n = 1; ; n++) {
        expect(n, `${name}: still failing after ${n} steps`).toBeLessThan(400);
        const before = snapshot(c);
        testing.setFailCountdown(iommu, n);
        let err: unknown;
        try {
          run(c);
        } catch (e) {
          err = e;
        }
        const fired = testing.failCountdown(iommu) === 0;
        testing.setFailCountdown(iommu, 0);
        if (err === undefined) {
          expect(fired, `${name}: the call succeeded although failure ${n} fired`).toBe(false);
          break;
        }
        expect(err, `${name} (fail at step ${n}): ${String(err)}`).toBeInstanceOf(IommuError);
        expect((err as IommuError).errno, `${name} (fail at step ${n}): ${String(err)}`).toBe('ENOMEM');
        expect(snapshot(c), `${name}: state changed by the failure at step ${n}`).toEqual(before);
        expect(testing.guardViolations(iommu)).toEqual([]);
        failures[name] = n;
        injected++;
      }
    }
    // The sequence reached the allocation paths it is meant to (domains, tables, PASID tables, IDs).
    expect(injected).toBeGreaterThan(60);
    console.log(`fault injection (${_name}): ${injected} injected failures over ${STEPS.length} calls, all clean`);
    for (const name of ['ioasAlloc', 'bind', 'attach RID to IOAS (auto HWPT)', 'ioasMap, two domains', 'hwptAlloc (second domain)',
      'attach PASID', 'ioasCopy into a domain', 'pasidAlloc', 'addDevice, second bus']) {
      expect(failures[name], name).toBeGreaterThan(0);
    }
    // Everything closed: the pool holds only pages that are never freed; no domain, no object, no PASID.
    const pool = testing.poolState(iommu);
    expect(pool.liveDomains).toBe(0);
    expect(pool.domainPages).toBe(0);
    expect(pool.pasidLeafPages).toBe(0);
    expect(pool.pagesUsed).toBe(pool.busPages + pool.pasidDirPages);
    expect(pool.busPages).toBe(2);
    for (const fd of c.fds) {
      const v = testing.fdView(fd);
      expect(v.closed).toBe(true);
      expect(v.objects).toEqual([]);
      expect(v.reserved).toEqual([]);
      expect(v.nextId).toBe(1);
      expect(fd.pasids()).toEqual([]);
    }
    // And the engine still works: a new FD gets ID 1, maps, attaches and translates.
    const fd = iommu.open();
    const ioas = fd.ioasAlloc();
    expect(ioas).toBe(1);
    fd.ioasMap(ioas, { iova: 0x10_0000, length: K, phys: 0x5000 });
    c.devs[0]!.bind(fd);
    c.devs[0]!.attach(ioas);
    expect(iommu.translate(c.devs[0]!.rid, NO_PASID, 0x10_0010, Access.Read).phys).toBe(0x5010n);
    fd.close();
    expect(testing.poolState(iommu).pagesUsed).toBe(pool.pagesUsed);
  });

  test('an injected failure in a translator-handle buffer or batch allocation is ENOMEM and leaks nothing', () => {
    const iommu = Iommu.createSync({ translators: 2, maxMemoryBytes: 64 * 2 ** 20 });
    const before = testing.poolState(iommu).pagesUsed;
    testing.setFailCountdown(iommu, 1);
    expect(() => iommu.batch(64)).toThrow(expect.objectContaining({ errno: 'ENOMEM' }));
    testing.setFailCountdown(iommu, 0);
    expect(testing.poolState(iommu).pagesUsed).toBe(before);
    if (iommu.shared) {
      testing.setFailCountdown(iommu, 1);
      expect(() => iommu.translatorHandle()).toThrow(expect.objectContaining({ errno: 'ENOMEM' }));
      testing.setFailCountdown(iommu, 0);
      expect(testing.poolState(iommu).pagesUsed).toBe(before);
      // The slot was not taken: a handle can still be made.
      const h = iommu.translatorHandle();
      expect(h.slot).toBe(1);
    }
  });
});

describe('a map that needs new tables (built privately, published at once)', () => {
  test('failing at each table page leaves the domain, the pool and translation as before; the map then succeeds', () => {
    const iommu = Iommu.createSync({});
    const dev = iommu.addDevice({ bdf: '00:05.0' });
    const fd = iommu.open();
    dev.bind(fd);
    const ioas = fd.ioasAlloc();
    dev.attach(ioas);
    fd.ioasMap(ioas, { iova: 0x10_0000, length: K, phys: 0x9000 });
    // 2^47 + 5 pages: a new level-2, level-1 and level-0 table under the root (4 levels).
    const iova = (1n << 47n) + 5n * BigInt(K);
    const before = testing.poolState(iommu);
    for (let n = 1; n <= 3; n++) {
      testing.setFailCountdown(iommu, n);
      expect(() => fd.ioasMap(ioas, { iova, length: K, phys: 0x7000 })).toThrow(expect.objectContaining({ errno: 'ENOMEM' }));
      testing.setFailCountdown(iommu, 0);
      // The pool may have grown its top for the pages it handed out: they are free again.
      expect({ ...testing.poolState(iommu), poolTop: 0, memoryBytes: 0 }).toEqual({ ...before, poolTop: 0, memoryBytes: 0 });
      expect(iommu.translate(dev.rid, NO_PASID, iova, Access.Read).ok).toBe(false);
    }
    fd.ioasMap(ioas, { iova, length: K, phys: 0x7000 });
    expect(testing.poolState(iommu).domainPages).toBe(before.domainPages + 3);
    expect(iommu.translate(dev.rid, NO_PASID, iova + 8n, Access.Write).phys).toBe(0x7008n);
    expect(iommu.translate(dev.rid, NO_PASID, 0x10_0008n, Access.Read).phys).toBe(0x9008n);
    fd.ioasUnmap(ioas, iova, K);
    expect(testing.poolState(iommu).domainPages).toBe(before.domainPages);
    expect(testing.guardViolations(iommu)).toEqual([]);
  });
});
