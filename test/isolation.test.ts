// Isolation properties of the FD-centric model, on random multi-FD scenarios (seeded):
//   1. a device never translates through an address space, or with a PASID, it is not attached
//      to: every successful translation comes from the IOAS behind the device's own attachment
//      (outputs are tagged with the FD and IOAS they were mapped in, and IOVAs collide across FDs);
//   2. IDs of one FD are useless in another: every ID-taking call fails, and changes nothing;
//   3. one FD's close, destroy or unmap never changes another FD's translations.
import { describe, expect, test } from 'vitest';
import { Access, Iommu, IommuError, NO_PASID, type DeviceFd, type IommuFd } from '../src/index';
import * as testing from './testing';
import { show } from './model/ops';
import { Rng } from './model/rng';

const K = 4096n;
/** IOVA windows shared by every FD, so that the same IOVA is mapped in several address spaces. */
const WINDOWS = [0x10_0000n, 0x4000_0000n, 0x7fff_0000_0000n];

interface Fd {
  fd: IommuFd;
  /** Generation of this FD (the n-th opened), part of every output tag. */
  gen: number;
}

/** Output address of a page mapped by FD generation `gen` in IOAS `ioas`: the tag sits above bit 32. */
const tagged = (gen: number, ioas: number, page: bigint): bigint => (BigInt(gen * 256 + ioas) << 32n) | (page * K);
const tagOf = (phys: bigint): number => Number(phys >> 32n);

class Scenario {
  readonly iommu = Iommu.createSync({ pasidBits: 8, iotlbEntries: 64, translators: 2, maxMemoryBytes: 64 * 2 ** 20 });
  readonly fds: Fd[] = [];
  readonly devs: DeviceFd[] = [];
  /** Device index -> the FD it is bound to. */
  readonly boundTo = new Map<number, Fd>();
  private gens = 0;

  constructor(readonly rng: Rng) {
    for (let i = 0; i < 3; i++) this.open();
    for (let i = 0; i < 6; i++) this.devs.push(this.iommu.addDevice({ bdf: `0${i % 2}:0${i}.0`, pasidBits: i === 5 ? 0 : 8 }));
    for (let i = 0; i < this.devs.length; i++) this.bind(i, this.rng.pick(this.fds));
  }

  open(): Fd {
    const f = { fd: this.iommu.open(), gen: ++this.gens };
    this.fds.push(f);
    for (let i = 0; i < 2; i++) f.fd.ioasAlloc();
    return f;
  }

  bind(dev: number, f: Fd): void {
    this.devs[dev]!.bind(f.fd);
    this.boundTo.set(dev, f);
  }

  ioases(f: Fd): number[] {
    return f.fd.objects().filter((o) => o.type === 'ioas').map((o) => o.id);
  }

  /** One random control op on FD `f` (whose neighbours must not notice). */
  stepOn(f: Fd): void {
    const rng = this.rng;
    const fd = f.fd;
    const ioases = this.ioases(f);
    const objects = fd.objects();
    const attempt = (fn: () => unknown): void => {
      try {
        fn();
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
    };
    switch (rng.weighted({ map: 10, unmap: 5, attach: 6, pasid: 6, detach: 3, hwpt: 3, destroy: 2, ioas: 1, close: 0.6 })) {
      case 'map': {
        if (ioases.length === 0) return;
        const ioas = rng.pick(ioases);
        const page = BigInt(rng.int(32));
        const pages = BigInt(rng.range(1, 4));
        attempt(() => fd.ioasMap(ioas, { iova: rng.pick(WINDOWS) + page * K, length: pages * K, phys: tagged(f.gen, ioas, page), write: rng.chance(0.7) }));
        return;
      }
      case 'unmap': {
        const withAreas = testing.fdView(fd).objects.filter((o) => o.type === 'ioas' && o.areas.length > 0);
        if (withAreas.length === 0) return;
        const o = rng.pick(withAreas);
        if (o.type !== 'ioas') return;
        const a = rng.pick(o.areas);
        attempt(() => (rng.chance(0.2) ? fd.ioasUnmap(o.id, 0n, (1n << 64n) - 1n) : fd.ioasUnmap(o.id, a.iova, a.last - a.iova + 1n)));
        return;
      }
      case 'attach': {
        const mine = [...this.boundTo].filter(([, b]) => b === f).map(([d]) => d);
        if (mine.length === 0 || objects.length === 0) return;
        const target = rng.pick(objects.filter((o) => o.type === 'ioas' || o.type === 'hwpt-paging').concat(objects)).id;
        attempt(() => this.devs[rng.pick(mine)]!.attach(target));
        return;
      }
      case 'pasid': {
        const mine = [...this.boundTo].filter(([, b]) => b === f).map(([d]) => d);
        const hwpts = objects.filter((o) => o.type === 'hwpt-paging' && o.pasid);
        if (mine.length === 0 || hwpts.length === 0) return;
        // Sometimes a PASID of another FD: the seed's EPERM must keep it out.
        const pasids = rng.chance(0.3) ? rng.pick(this.fds).fd.pasids() : fd.pasids();
        attempt(() => {
          const dev = this.devs[rng.pick(mine)]!;
          // A RID on a HWPT that is not PASID-capable keeps PASIDs out: move it first, sometimes.
          if (rng.chance(0.5)) dev.attach(rng.pick(hwpts).id);
          const pasid = pasids.length > 0 && rng.chance(0.6) ? rng.pick(pasids) : fd.pasidAlloc();
          dev.attach(rng.pick(hwpts).id, { pasid });
        });
        return;
      }
      case 'detach': {
        const mine = [...this.boundTo].filter(([, b]) => b === f).map(([d]) => d);
        if (mine.length === 0) return;
        const d = this.devs[rng.pick(mine)]!;
        const p = [...d.attachments().keys()];
        attempt(() => d.detach(p.length > 0 && rng.chance(0.7) ? { pasid: rng.pick(p) } : undefined));
        return;
      }
      case 'hwpt': {
        const devIds = objects.filter((o) => o.type === 'device').map((o) => o.id);
        if (devIds.length === 0 || ioases.length === 0) return;
        attempt(() => fd.hwptAlloc({ devId: rng.pick(devIds), ptId: rng.pick(ioases), pasid: rng.chance(0.7) }));
        return;
      }
      case 'destroy':
        if (objects.length > 0) attempt(() => fd.destroy(rng.pick(objects).id));
        return;
      case 'ioas':
        attempt(() => fd.ioasAlloc());
        return;
      case 'close': {
        fd.close();
        this.fds.splice(this.fds.indexOf(f), 1);
        const fresh = this.open();
        for (const [d, b] of [...this.boundTo]) if (b === f) this.bind(d, rng.chance(0.5) ? fresh : rng.pick(this.fds));
        return;
      }
    }
  }

  /** Every (device, pasid, iova) worth asking: all PASIDs in use, every area edge of every FD. */
  probes(): [dev: number, pasid: number, iova: bigint][] {
    const iovas = new Set<bigint>();
    for (const f of this.fds) {
      for (const o of testing.fdView(f.fd).objects) if (o.type === 'ioas') for (const a of o.areas) {
        iovas.add(a.iova);
        iovas.add(a.last);
      }
    }
    for (const w of WINDOWS) iovas.add(w + 5n * K);
    const pasids = new Set<number>([NO_PASID, 1, 2]);
    for (const f of this.fds) for (const p of f.fd.pasids()) pasids.add(p);
    const out: [number, number, bigint][] = [];
    for (let d = 0; d < this.devs.length; d++) for (const p of pasids) for (const iova of iovas) out.push([d, p, iova]);
    return out;
  }

  /** Property 1 for every probe. */
  checkAttachedOnly(): { ok: number; pasidOk: number } {
    let ok = 0;
    let pasidOk = 0;
    for (const [d, pasid, iova] of this.probes()) {
      const dev = this.devs[d]!;
      const t = this.iommu.translate(dev.rid, pasid, iova, Access.Read);
      if (!t.ok) continue;
      ok++;
      if (pasid !== NO_PASID) pasidOk++;
      const hwptId = dev.attachments().get(pasid);
      const f = this.boundTo.get(d);
      expect(hwptId, `device ${d} translated ${iova} with PASID ${pasid} it is not attached to`).toBeDefined();
      const hwpt = f!.fd.objects().find((o) => o.id === hwptId)!;
      const ioasId = hwpt.ioasId as number;
      expect(tagOf(t.phys), `device ${d} pasid ${pasid} iova ${iova}: output of another address space`).toBe(f!.gen * 256 + ioasId);
      const view = testing.fdView(f!.fd).objects.find((o) => o.id === ioasId);
      const area = view?.type === 'ioas' ? view.areas.find((a) => a.iova <= iova && iova <= a.last) : undefined;
      expect(area, `device ${d}: ${iova} is not mapped in its IOAS`).toBeDefined();
      expect(t.phys).toBe(area!.phys + (iova - area!.iova));
    }
    this.iommu.faults.drain();
    return { ok, pasidOk };
  }

  /** Translations of `probes` by every device not in `skip`. */
  view(probes: [number, number, bigint][], skip: Set<number>): string {
    const out: string[] = [];
    for (const [d, pasid, iova] of probes) {
      if (skip.has(d)) continue;
      out.push(show(this.iommu.translate(this.devs[d]!.rid, pasid, iova, Access.Write)));
    }
    this.iommu.faults.drain();
    return out.join('\n');
  }
}

describe('isolation between FDs, devices and PASIDs', () => {
  test.each([1, 2, 3, 4, 5, 6])('random multi-FD scenario %i: no translation crosses an attachment; neighbours never notice', (seed) => {
    const s = new Scenario(new Rng(seed * 7919));
    let successes = 0;
    let pasidSuccesses = 0;
    for (let i = 0; i < 100; i++) {
      // Property 3 for the FD the op touches: close/destroy/unmap/... there leaves the others alone.
      const f = s.rng.pick(s.fds);
      const probes = s.probes();
      const own = new Set([...s.boundTo].filter(([, b]) => b === f).map(([d]) => d));
      const before = s.view(probes, own);
      s.stepOn(f);
      expect(s.view(probes, own), `op ${i} on FD gen ${f.gen} changed another FD's translations`).toBe(before);
      const r = s.checkAttachedOnly();
      successes += r.ok;
      pasidSuccesses += r.pasidOk;
      expect(testing.guardViolations(s.iommu)).toEqual([]);
    }
    // Meaningful only if translations (RID and PASID) really succeeded along the way.
    expect(successes).toBeGreaterThan(100);
    expect(pasidSuccesses).toBeGreaterThan(0);
  });

  test("IDs of one FD are useless in another, and a miss changes nothing", () => {
    const iommu = Iommu.createSync({ pasidBits: 8, translators: 2, maxMemoryBytes: 32 * 2 ** 20 });
    const a = iommu.open();
    const b = iommu.open();
    const da = iommu.addDevice({ bdf: '00:01.0' });
    const db = iommu.addDevice({ bdf: '00:02.0' });
    // A: IOAS 1 (mapped, attached through auto HWPT 4), device 2, HWPT 3. B: IDs 1..9; 5..9 are B's only.
    const ioasA = a.ioasAlloc();
    a.ioasMap(ioasA, { iova: 0x10_0000, length: 4n * K, phys: 0x1_0000_0000 });
    const devA = da.bind(a);
    a.hwptAlloc({ devId: devA, ptId: ioasA, pasid: true });
    da.attach(ioasA);
    const ioasB = b.ioasAlloc();
    b.ioasMap(ioasB, { iova: 0x10_0000, length: 4n * K, phys: 0x2_0000_0000 });
    const devB = db.bind(b);
    const hwptB = b.hwptAlloc({ devId: devB, ptId: ioasB, pasid: true });
    db.attach(hwptB);
    for (let i = 0; i < 6; i++) b.ioasAlloc();
    const pasidB = b.pasidAlloc();
    db.attach(hwptB, { pasid: pasidB });
    const onlyInB = b.objects().map((o) => o.id).filter((id) => !a.objects().some((o) => o.id === id));
    expect(onlyInB.length).toBeGreaterThanOrEqual(4);
    const state = (): string => show([testing.fdView(a), testing.fdView(b), [...da.attachments()], [...db.attachments()],
      iommu.translate(da.rid, 0, 0x10_0000, 1), iommu.translate(db.rid, 0, 0x10_0000, 1), iommu.translate(db.rid, pasidB, 0x10_0000, 1)]);
    const before = state();
    const calls: [string, (id: number) => unknown][] = [
      ['ioasMap', (id) => a.ioasMap(id, { iova: 0x20_0000, length: K, phys: 0 })],
      ['ioasUnmap', (id) => a.ioasUnmap(id, 0n, (1n << 64n) - 1n)],
      ['ioasCopy src', (id) => a.ioasCopy({ srcIoas: id, dstIoas: ioasA, srcIova: 0x10_0000, length: K, dstIova: 0x30_0000 })],
      ['ioasCopy dst', (id) => a.ioasCopy({ srcIoas: ioasA, dstIoas: id, srcIova: 0x10_0000, length: K })],
      ['ioasIovaRanges', (id) => a.ioasIovaRanges(id)],
      ['ioasAllowIovas', (id) => a.ioasAllowIovas(id, [])],
      ['hwptAlloc devId', (id) => a.hwptAlloc({ devId: id, ptId: ioasA })],
      ['hwptAlloc ptId', (id) => a.hwptAlloc({ devId: devA, ptId: id })],
      ['destroy', (id) => a.destroy(id)],
      ['attach (device bound to A)', (id) => da.attach(id)],
      ['accessCreate', (id) => a.accessCreate(id)],
    ];
    for (const id of onlyInB) {
      for (const [name, call] of calls) {
        let err: unknown;
        try {
          call(id);
        } catch (e) {
          err = e;
        }
        expect(err, `${name}(${id}) on A with an ID of B`).toBeInstanceOf(IommuError);
        expect(['ENOENT', 'EINVAL'], `${name}(${id})`).toContain((err as IommuError).errno);
        expect(state(), `${name}(${id}) changed something`).toBe(before);
      }
    }
    // B's PASID is B's: A's device may not use it, A may not free it.
    expect(() => da.attach(3, { pasid: pasidB })).toThrow(expect.objectContaining({ errno: 'EPERM' }));
    expect(() => a.pasidFree(pasidB)).toThrow(expect.objectContaining({ errno: 'ENOENT' }));
    // A's device cannot name B's HWPT even with an ID A also has: ID 1 in A is A's IOAS, not B's.
    expect(da.attach(1)).toBe(da.attachments().get(NO_PASID));
    expect(iommu.translate(da.rid, 0, 0x10_0000, 1).phys).toBe(0x1_0000_0000n);
    expect(state()).toBe(before);
  });
});
