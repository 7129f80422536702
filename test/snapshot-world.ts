/**
 * A rich engine for the snapshot tests (test/snapshot.test.ts), and what the tests observe of it.
 *
 * VM A (FD 0): an IOAS with 4 KiB, 2 MiB (read-only) and 1 GiB leaves and an automatic IOVA; an
 * explicit PASID-capable, dirty-tracking HWPT (tracking on, pages dirtied) on the accelerator's RID
 * and one PASID, a second IOAS and HWPT on
 * another PASID, an auto HWPT for a NIC with a reserved region; a freed PASID (allocator hint
 * below the top) and a destroyed IOAS (a hole in the IDs); a pinning access with a pin and a plain
 * access. A closed FD opened between A and B (left out of snapshots). VM B (FD 1): a PRI device on
 * an x86-64 stage 1 in guest RAM nested on a nest-parent HWPT (allowed IOVA ranges on its IOAS),
 * with a fault queue holding one unread and one unanswered page request and a page response the
 * device has not taken; a RISC-V device on an sv39 table in guest RAM (hwpt-user). One device
 * stays unbound.
 */
import { Access, Iommu, NO_PASID, FAULT_REASONS, TranslationOut, type DeviceFd, type FaultQueueFd, type IoasAccess, type IommuFd } from '../src/index';
import { fdState } from '../src/iommufd/fd-state';
import { HwptPaging } from '../src/iommufd/hwpt';
import { HwptUser } from '../src/iommufd/hwpt-user';
import { Ioas } from '../src/iommufd/ioas';
import { poolState } from './testing';
import { GuestRam, GuestTables } from './vectors/guest-tables';
import { Rng } from './reference-walk';

export const RAM = 0x8000_0000n;
export const RAM_BYTES = 32 << 20;
const MiB = 1n << 20n;
const GPA_BASE = RAM + 16n * MiB; // VM B's guest-physical 0
const X86_TABLE = 0x27n; // P RW US A
const X86_LEAF = 0x67n; // P RW US A D
const SV_LEAF = 0xd7n; // V R W U A D
/** Stage-1 virtual addresses of VM B's device. */
export const VA = 0x7000_0000_0000n;
export const BDFS = ['0000:03:00.0', '04:00.0', '05:00.0', '06:00.1', '07:00.0'] as const;

/** What a test needs to drive one engine, original or restored, by the same names. */
export interface World {
  iommu: Iommu;
  fdA: IommuFd;
  fdB: IommuFd;
  accel: DeviceFd;
  nic: DeviceFd;
  vf: DeviceFd;
  lonely: DeviceFd;
  riscv: DeviceFd;
  access: IoasAccess;
  faultFd: FaultQueueFd;
  /** Calls of the pinning access's onUnmap. */
  unmapCalls: [bigint, bigint][];
}

/** IDs and numbers fixed by the build (the same in every world restored from it). */
export interface Ids {
  ioas: number;
  explicit: number;
  ioas2: number;
  gpaIoas: number;
  parent: number;
  vfId: number;
  accessId: number;
  faultId: number;
  pin: [bigint, bigint];
  /** Virtual pages mapped in the guest tables: [rid-owner, va] pairs are probed on every device. */
  stage1Pages: bigint[];
}

export function buildRich(): { world: World; ids: Ids } {
  const iommu = Iommu.createSync({ ram: { base: RAM, bytes: RAM_BYTES }, translators: 4, iotlbEntries: 256, maxDomains: 64, maxMemoryBytes: 128 << 20 });
  const [accel, nic, vf, lonely, riscv] = [
    iommu.addDevice({ bdf: BDFS[0], pasidBits: 20, dirty: true }),
    iommu.addDevice({ bdf: BDFS[1], pasidBits: 0, reservedRegions: [{ start: 0xfee0_0000n, last: 0xfeef_ffffn }] }),
    iommu.addDevice({ bdf: BDFS[2], pri: true, pasidBits: 8 }),
    iommu.addDevice({ bdf: BDFS[3] }),
    iommu.addDevice({ bdf: BDFS[4], dirty: true }),
  ] as [DeviceFd, DeviceFd, DeviceFd, DeviceFd, DeviceFd];

  // VM A.
  const fdA = iommu.open();
  const ioas = fdA.ioasAlloc();
  const doomed = fdA.ioasAlloc();
  fdA.ioasMap(ioas, { iova: 0x1000, length: 0x3000, phys: RAM + MiB });
  fdA.ioasMap(ioas, { iova: 0x20_0000, length: 0x40_0000, phys: RAM + 2n * MiB, write: false });
  fdA.ioasMap(ioas, { iova: 1n << 30n, length: 1n << 30n, phys: 0x40_0000_0000n });
  fdA.ioasMap(ioas, { length: 0x2000, phys: RAM + 8n * MiB });
  const accelId = accel.bind(fdA);
  nic.bind(fdA);
  const explicit = fdA.hwptAlloc({ devId: accelId, ptId: ioas, pasid: true, dirtyTracking: true });
  accel.attach(explicit);
  fdA.hwptSetDirtyTracking(explicit, true);
  for (const iova of [0x1000, 0x3008, 0x4000_1234]) iommu.translate(accel.rid, NO_PASID, iova, Access.Write); // D bits
  nic.attach(ioas);
  const [p1, p2, p3] = [fdA.pasidAlloc(), fdA.pasidAlloc(), fdA.pasidAlloc()];
  fdA.pasidFree(p1!);
  const ioas2 = fdA.ioasAlloc();
  fdA.ioasMap(ioas2, { iova: 0x10_0000, length: 0x8000, phys: RAM + 9n * MiB });
  accel.attach(fdA.hwptAlloc({ devId: accelId, ptId: ioas2, pasid: true }), { pasid: p2 });
  accel.attach(explicit, { pasid: p3 });
  const unmapCalls: [bigint, bigint][] = [];
  const pin: [bigint, bigint] = [0x1000n, 0x2000n];
  const access: IoasAccess = fdA.accessCreate(ioas, { onUnmap: (iova, length) => unmapCalls.push([iova, length]) && access.unpin(...pin) });
  access.pin(...pin);
  fdA.accessCreate(ioas2);
  fdA.destroy(doomed); // a hole: the next object of FD A gets ID 2

  const closed = iommu.open();
  closed.ioasAlloc();
  closed.pasidAlloc();
  closed.close();

  // VM B: GPA [0, 8 MiB) is RAM + 16 MiB; stage-1 tables at GPA 1 MiB.., sv39 tables at RAM + 24 MiB.
  const fdB = iommu.open();
  const vfId = vf.bind(fdB);
  const gpaIoas = fdB.ioasAlloc();
  fdB.ioasMap(gpaIoas, { iova: 0, length: 8n * MiB, phys: GPA_BASE });
  fdB.ioasAllowIovas(gpaIoas, [{ start: 0x100_0000n, last: 0x1ff_ffffn }]);
  const parent = fdB.hwptAlloc({ devId: vfId, ptId: gpaIoas, nestParent: true });
  const q = fdB.faultQueueAlloc();
  const ram = new GuestRam(iommu, RAM, GPA_BASE + MiB);
  const gpaOf = (addr: bigint): bigint => addr - GPA_BASE;
  const root = ram.table();
  const s1 = new GuestTables(ram, gpaOf(root), 4, (gpa) => gpa | X86_TABLE, 9, (gpa) => gpa + GPA_BASE);
  const stage1Pages: bigint[] = [];
  for (let i = 0n; i < 8n; i++) {
    s1.map(VA + i * 0x1000n, 0, (0x30_0000n + i * 0x1000n) | X86_LEAF, () => gpaOf(ram.table()));
    stage1Pages.push(VA + i * 0x1000n);
  }
  s1.map(VA + 0x20_0000n, 1, 0x40_0000n | 0x80n | X86_LEAF, () => gpaOf(ram.table()));
  stage1Pages.push(VA + 0x20_0000n, VA + 0x3f_f000n);
  const nested = fdB.hwptAlloc({ devId: vfId, ptId: parent, faultId: q.id, pasid: true, table: { format: 'x86-64', root: gpaOf(root) } });
  vf.attach(nested);
  // Page requests: one answered (its response not taken), one read (pending), one unread.
  for (const page of [0x10_0000n, 0x20_0000n, 0x30_0000n]) iommu.translate(vf.rid, NO_PASID, VA + page * 0x1000n + 0x10n, Access.Read);
  const [answered] = q.fd.read(1);
  q.fd.write([{ cookie: answered!.cookie, code: 'success' }]);
  q.fd.read(1);

  const riscvId = riscv.bind(fdB);
  const ram2 = new GuestRam(iommu, RAM, RAM + 24n * MiB);
  const root2 = ram2.table();
  const sv = new GuestTables(ram2, root2, 3, (a) => ((a >> 12n) << 10n) | 1n);
  for (let i = 0n; i < 4n; i++) sv.map(0x4000_0000n + i * 0x1000n, 0, (((RAM + 10n * MiB + i * 0x1000n) >> 12n) << 10n) | SV_LEAF, () => ram2.table());
  riscv.attach(fdB.hwptAlloc({ devId: riscvId, table: { format: 'sv39', root: root2 } }));
  stage1Pages.push(0x4000_0000n, 0x4000_3000n);

  // Bytes in guest RAM, so RAM comparisons mean something.
  iommu.ram.set(new TextEncoder().encode('guest RAM survives the round trip'), 0x12345);
  return {
    world: { iommu, fdA, fdB, accel, nic, vf, lonely, riscv, access, faultFd: q.fd, unmapCalls },
    ids: { ioas, explicit, ioas2, gpaIoas, parent, vfId, accessId: access.id, faultId: q.id, pin, stage1Pages },
  };
}

/** The same world, over a restored engine (`Iommu.restore` of a snapshot of `buildRich`). */
export function restoredWorld(r: ReturnType<typeof Iommu.restore>, ids: Ids, unmapCalls: [bigint, bigint][]): World {
  const dev = (bdf: string): DeviceFd => r.devices.get(bdf)!;
  return {
    iommu: r.iommu, fdA: r.fds[0]!, fdB: r.fds[1]!,
    accel: dev(BDFS[0]), nic: dev(BDFS[1]), vf: dev(BDFS[2]), lonely: dev(BDFS[3]), riscv: dev(BDFS[4]),
    access: r.accesses[0]!.get(ids.accessId)!, faultFd: r.faultFds[1]!.get(ids.faultId)!, unmapCalls,
  };
}

/** An FD's internals as plain data: ID allocator, users, areas, allowed ranges, alignment, domains, member orders. */
export function internals(fd: IommuFd) {
  const s = fdState(fd)!;
  return {
    closed: s.closed,
    ids: s.table.idState(),
    devices: [...s.devices].map((d) => d.rid),
    objects: s.table.objects().map((o) => ({
      id: o.id, type: o.type, users: o.users,
      ...(o instanceof Ioas ? {
        areas: o.iopt.areas.map((a) => ({ ...a })), allowed: o.iopt.allowed.map((r) => ({ ...r })), alignment: o.iopt.alignment,
        hwpts: [...o.hwpts].map((h) => h.id), accesses: [...o.accesses].map((a) => a.id),
      } : {}),
      ...(o instanceof HwptPaging || o instanceof HwptUser ? { domain: o.domain, children: [...o.children].map((c) => (c as HwptUser).id) } : {}),
    })),
  };
}

/** The areas of every IOAS of the open FDs. */
function areas(fds: IommuFd[]): { iova: bigint; last: bigint }[] {
  return fds.filter((fd) => !fd.closed).flatMap((fd) => internals(fd).objects.flatMap((o) => o.areas ?? []));
}

/** Pages to probe: every page of every area (1 GiB leaves sampled), the stage-1 pages, unmapped neighbours. */
export function probePages(fds: IommuFd[], extra: bigint[], rng = new Rng(7)): bigint[] {
  const pages = new Set<bigint>(extra);
  for (const a of areas(fds)) {
    const n = (a.last - a.iova + 1n) / 4096n;
    if (n <= 32768n) for (let i = 0n; i < n; i++) pages.add(a.iova + i * 4096n);
    else for (let i = 0; i < 64; i++) pages.add(a.iova + rng.big(n) * 4096n);
    pages.add(a.last + 1n).add(a.iova - 4096n);
  }
  return [...pages].filter((p) => p >= 0n && p < 1n << 64n).sort((a, b) => (a < b ? -1 : 1));
}

const out = new TranslationOut();

/**
 * Every probe page of every device, through its RID and every PASID any FD owns, as one string per
 * translation (access 0 reports the leaf's rights).
 */
export function translations(iommu: Iommu, fds: IommuFd[], devices: DeviceFd[], pages: bigint[]): string[] {
  const pasids = new Set([NO_PASID]);
  for (const fd of fds) if (!fd.closed) for (const p of fd.pasids()) pasids.add(p);
  const lines: string[] = [];
  for (const dev of devices) {
    for (const pasid of pasids) {
      for (const page of pages) {
        const r = iommu.translateInto(out, dev.rid, pasid, page, 0);
        lines.push(`${dev.bdf}#${pasid}@${page.toString(16)} ${r.ok ? `${r.physHi.toString(16)}:${r.physLo.toString(16)}/${r.sizeLg2}/${r.perm}` : FAULT_REASONS[r.reason]}`);
      }
    }
  }
  return lines;
}

/** Everything the API shows of a world, plus the internals tests compare (testing.fdView, pool accounting). */
export function observe(w: World, pages: bigint[]) {
  const fds = [w.fdA, w.fdB];
  const devices = [w.accel, w.nic, w.vf, w.lonely, w.riscv];
  const pool = poolState(w.iommu);
  return {
    fds: fds.map((fd) => ({
      closed: fd.closed,
      objects: fd.closed ? [] : fd.objects(),
      pasids: fd.closed ? [] : fd.pasids(),
      ranges: fd.closed ? [] : fd.objects().filter((o) => o.type === 'ioas').map((o) => fd.ioasIovaRanges(o.id)),
      internal: internals(fd),
    })),
    devices: devices.map((d) => ({ bdf: d.bdf, rid: d.rid, pasidBits: d.pasidBits, pri: d.pri, devId: d.devId, attachments: [...d.attachments()] })),
    access: { pinned: w.access.pinned() },
    pool,
    translations: translations(w.iommu, fds, devices, pages),
  };
}
