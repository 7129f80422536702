/**
 * Forged snapshots: a structure-aware mutator of `iommu.snapshot()` bytes, and what every snapshot
 * that `Iommu.restore` accepts must give — an engine that keeps FDs isolated and survives random
 * use. Used by test/snapshot-forgery.test.ts (a fixed-seed slice) and scripts/fuzz.mjs
 * (`--snapshots N`, a campaign).
 *
 * The mutator decodes the container (so the CRC stays valid) and changes what a forger would: a
 * control word, a domain descriptor field, a device or PASID context word, a page-table entry (made
 * to point at another page of the pool — another FD's table, a free page, a device page — or given
 * other flags or child counts), an IOTLB word, a byte anywhere; or in the object graph a number
 * (often swapped with another number of the graph, so it stays plausible), an array element
 * dropped, duplicated or swapped.
 * @module
 */
import * as abi from '../../assembly/abi';
import { Access, Iommu, IommuError, NO_PASID, TranslationOut, type DeviceFd, type IommuFd, type Restored } from '../../src/index';
import { decodeSnapshot, encodeSnapshot } from '../../src/snapshot/container';
import { checkGuards, fdView } from '../testing';
import { Rng } from './rng';

const P = 0x1000n;
const RAM = 0x8000_0000n;
const RAM_BYTES = 256 << 10;
const MiB = 1n << 20n;

/** A small engine with most object kinds, two FDs sharing nothing: the snapshot every forgery starts from. */
export function buildForgeryBase(): Uint8Array {
  const iommu = Iommu.createSync({ ram: { base: RAM, bytes: RAM_BYTES }, translators: 2, iotlbEntries: 64, maxDomains: 16, maxMemoryBytes: 4 << 20, shared: false });
  const [a1, a2, b1, b2] = ['00:01.0', '00:02.0', '01:00.0', '01:01.0'].map((bdf, i) => iommu.addDevice({ bdf, pasidBits: 8, dirty: i === 1, pri: i === 2 })) as [DeviceFd, DeviceFd, DeviceFd, DeviceFd];
  // FD A: an IOAS with 4 KiB, 2 MiB and read-only mappings, an auto HWPT, a dirty-tracking HWPT on a PASID.
  const fdA = iommu.open({ limits: { pages: 64 } });
  const ioas = fdA.ioasAlloc();
  fdA.ioasMap(ioas, { iova: 0x1000, length: 0x3000, phys: RAM + 0x4_0000n });
  fdA.ioasMap(ioas, { iova: 0x20_0000, length: 0x20_0000, phys: RAM + 2n * MiB, write: false });
  fdA.ioasMap(ioas, { iova: 0x4000_0000, length: 0x1000, phys: RAM });
  const a1Id = a1.bind(fdA);
  const a2Id = a2.bind(fdA);
  a1.attach(ioas);
  const dirty = fdA.hwptAlloc({ devId: a2Id, ptId: ioas, pasid: true, dirtyTracking: true });
  a2.attach(dirty);
  fdA.hwptSetDirtyTracking(dirty, true);
  iommu.translate(a2.rid, NO_PASID, 0x1000, Access.Write);
  const pasid = fdA.pasidAlloc();
  a2.attach(dirty, { pasid });
  // Spare tables in both of FD A's domains (assembly/spare.ts): a page mapped and unmapped again.
  fdA.ioasMap(ioas, { iova: 0x80_0000_0000, length: 0x1000, phys: RAM });
  fdA.ioasUnmap(ioas, 0x80_0000_0000, 0x1000);
  const access = fdA.accessCreate(ioas, { onUnmap: (iova, length) => access.unpin(iova, length) });
  access.pin(0x1000, 0x1000);
  void a1Id;
  // FD B: a nest parent with an x86-64 child (tables in guest RAM) and a fault queue, an sv39 table.
  // GPA [0, 32 KiB) is RAM + 128 KiB; the x86-64 tables sit at GPA 0x1000.. and map VA 0 -> GPA 0x6000.
  const fdB = iommu.open();
  const gpa = fdB.ioasAlloc();
  const GPA0 = 0x2_0000;
  fdB.ioasMap(gpa, { iova: 0, length: 0x8000, phys: RAM + BigInt(GPA0) });
  const b1Id = b1.bind(fdB);
  const parent = fdB.hwptAlloc({ devId: b1Id, ptId: gpa, nestParent: true });
  const ram = new DataView(iommu.ram.buffer, iommu.ram.byteOffset, iommu.ram.byteLength);
  for (let level = 0; level < 3; level++) ram.setBigUint64(GPA0 + 0x1000 * (level + 1), BigInt(0x1000 * (level + 2)) | 0x27n, true);
  ram.setBigUint64(GPA0 + 0x4000, 0x6000n | 0x67n, true);
  const q = fdB.faultQueueAlloc();
  const nested = fdB.hwptAlloc({ devId: b1Id, ptId: parent, faultId: q.id, table: { format: 'x86-64', root: 0x1000n } });
  b1.attach(nested);
  iommu.translate(b1.rid, NO_PASID, 0x5000_0000, Access.Read); // a page request, left unread
  const b2Id = b2.bind(fdB);
  // sv39 at RAM + 0x10000: VA 0x1000 -> RAM + 0x18000.
  ram.setBigUint64(0x10000, (((RAM + 0x11000n) >> 12n) << 10n) | 1n, true);
  ram.setBigUint64(0x11000, (((RAM + 0x12000n) >> 12n) << 10n) | 1n, true);
  ram.setBigUint64(0x12008, (((RAM + 0x18000n) >> 12n) << 10n) | 0xd7n, true);
  b2.attach(fdB.hwptAlloc({ devId: b2Id, table: { format: 'sv39', root: RAM + 0x10000n } }));
  // A freed HWPT (a free domain index and freed table pages) and a live batch.
  fdB.destroy(fdB.hwptAlloc({ devId: b2Id, ptId: gpa }));
  iommu.batch(64);
  return iommu.snapshot();
}

interface Sections {
  header: Record<string, unknown>;
  graph: Record<string, unknown>;
  image: Uint8Array;
}

/** The structure-aware mutator over one base snapshot. */
export class SnapshotMutator {
  private readonly base: Sections;
  private readonly layout: Record<string, number>;
  /** Page index -> byte offset of its stored copy in the image section. */
  private readonly stored = new Map<number, number>();
  private readonly poolPages: number[] = [];

  constructor(bytes: Uint8Array, private readonly rng: Rng) {
    const s = decodeSnapshot(bytes) as Sections;
    this.base = s;
    this.layout = s.header.layout as Record<string, number>;
    const v = new DataView(s.image.buffer, s.image.byteOffset, s.image.byteLength);
    const count = v.getUint32(0, true);
    const bitmapBytes = Math.ceil(count / 8);
    let at = 4 + bitmapBytes;
    for (let p = 0; p < count; p++) {
      if (!(s.image[4 + (p >> 3)]! & (1 << (p & 7)))) continue;
      this.stored.set(p, at);
      if (p * 4096 >= this.layout.poolBase!) this.poolPages.push(p * 4096);
      at += 4096;
    }
  }

  /** One forgery: bytes with a valid container and checksum, and what was changed. */
  mutate(): { bytes: Uint8Array; what: string } {
    const s: Sections = { header: structuredClone(this.base.header), graph: structuredClone(this.base.graph), image: this.base.image.slice() };
    const whats: string[] = [];
    for (let n = 1 + (this.rng.chance(0.3) ? this.rng.int(3) : 0); n > 0; n--) whats.push(this.rng.chance(0.6) ? this.mutateImage(s.image) : this.mutateGraph(this.rng.chance(0.9) ? s.graph : s.header));
    return { bytes: encodeSnapshot(s.header, s.graph, [s.image]), what: whats.join('; ') };
  }

  private word32(image: Uint8Array, addr: number): { get: () => number; set: (v: number) => void } | undefined {
    const off = this.stored.get(Math.floor(addr / 4096));
    if (off === undefined) return undefined;
    const v = new DataView(image.buffer, image.byteOffset + off + (addr % 4096), 4);
    return { get: () => v.getUint32(0, true), set: (x) => v.setUint32(0, x >>> 0, true) };
  }

  private value32(old: number): number {
    const r = this.rng;
    switch (r.int(7)) {
      case 0: return old + 1;
      case 1: return old - 1;
      case 2: return 0;
      case 3: return 0xffffffff;
      case 4: return r.pick(this.poolPages);
      case 5: return r.range(1, 8);
      default: return old ^ (1 << r.int(32));
    }
  }

  private mutateImage(image: Uint8Array): string {
    const r = this.rng;
    const l = this.layout;
    const target = r.weighted({ ctrl: 2, domain: 3, device: 2, table: 6, slot: 1, byte: 1 });
    let addr: number;
    if (target === 'ctrl') {
      addr = abi.CTRL_BASE + r.pick([abi.CTRL_FREE_HEAD, abi.CTRL_PAGES_USED, abi.CTRL_LIMBO_HEAD, abi.CTRL_LIMBO_TAIL, abi.CTRL_FREE_COUNT, abi.CTRL_BUF_FREE, abi.CTRL_POOL_TOP, abi.CTRL_EPOCH, abi.CTRL_CTX_GEN, abi.CTRL_SPARE_PAGES]);
    } else if (target === 'domain') {
      addr = l.domains! + r.range(1, 6) * abi.DOM_SIZE + r.pick([abi.DOM_ROOT, abi.DOM_LEVELS, abi.DOM_FLAGS, abi.DOM_PAGES, abi.DOM_SPARE, abi.DOM_FORMAT, abi.DOM_PARENT, abi.DOM_UROOT_LO, abi.DOM_PABITS]);
    } else if (target === 'device') {
      const bus = this.word32(image, l.devRoot! + r.int(2) * 4);
      const page = bus?.get() ?? 0;
      addr = page === 0 || r.chance(0.2) ? l.devRoot! + r.int(2) * 4 : page + r.int(4) * abi.DEV_SIZE + r.pick([abi.DEV_FLAGS, abi.DEV_RID_DOMAIN, abi.DEV_PASID_DIR, abi.DEV_PASID_BITS]);
    } else if (target === 'slot') {
      addr = l.slots! + r.pick([abi.SLOT_PRQ_HEAD, abi.SLOT_PRQ_TAIL, abi.SLOT_IOTLB + r.int(64) * 4]);
    } else if (target === 'byte') {
      const pages = [...this.stored.keys()];
      const at = this.stored.get(r.pick(pages))! + r.int(4096);
      const old = image[at]!;
      image[at] = r.int(256);
      return `image byte at section offset ${at}: ${old} -> ${image[at]}`;
    } else {
      return this.mutateEntry(image);
    }
    const w = this.word32(image, addr);
    if (!w) return `image word ${addr.toString(16)} not stored`;
    const old = w.get();
    w.set(this.value32(old));
    return `image ${target} word 0x${addr.toString(16)}: 0x${old.toString(16)} -> 0x${w.get().toString(16)}`;
  }

  /** A 64-bit word of a pool page (mostly table entries): re-pointed, re-flagged, re-counted or copied. */
  private mutateEntry(image: Uint8Array): string {
    const r = this.rng;
    const page = r.pick(this.poolPages);
    const off = this.stored.get(page / 4096)!;
    const v = new DataView(image.buffer, image.byteOffset + off, 4096);
    const nonzero: number[] = [];
    for (let i = 0; i < 512; i++) if (v.getBigUint64(i * 8, true) !== 0n) nonzero.push(i);
    const i = nonzero.length > 0 && r.chance(0.9) ? r.pick(nonzero) : r.int(512);
    const old = v.getBigUint64(i * 8, true);
    const addrMask = ((1n << 40n) - 1n) << 12n;
    let next: bigint;
    switch (r.int(6)) {
      case 0: next = (old & ~addrMask) | BigInt(r.pick(this.poolPages)); break; // point at another pool page
      case 1: next = old ^ BigInt(r.pick([abi.PTE_R, abi.PTE_W, abi.PTE_X, abi.PTE_PS, abi.PTE_D])); break;
      case 2: next = old + (r.chance(0.5) ? 1n : -1n) * (1n << 52n); break; // child count
      case 3: next = 0n; break;
      case 4: {
        const other = this.stored.get(r.pick(this.poolPages) / 4096)!;
        next = new DataView(image.buffer, image.byteOffset + other, 4096).getBigUint64(r.int(512) * 8, true);
        break;
      }
      default: next = old ^ (1n << BigInt(r.int(64)));
    }
    next &= (1n << 64n) - 1n;
    v.setBigUint64(i * 8, next, true);
    return `pool page 0x${page.toString(16)} word ${i}: 0x${old.toString(16)} -> 0x${next.toString(16)}`;
  }

  private mutateGraph(root: Record<string, unknown>): string {
    const r = this.rng;
    const numbers: { node: Record<string, unknown> | unknown[]; key: string | number; path: string }[] = [];
    const arrays: { node: unknown[]; path: string }[] = [];
    const walk = (node: unknown, path: string): void => {
      if (Array.isArray(node)) {
        arrays.push({ node, path });
        node.forEach((x, i) => (typeof x === 'number' ? numbers.push({ node, key: i, path: `${path}[${i}]` }) : walk(x, `${path}[${i}]`)));
      } else if (typeof node === 'object' && node !== null) {
        for (const [k, x] of Object.entries(node)) {
          if (typeof x === 'number' || typeof x === 'boolean' || typeof x === 'string') numbers.push({ node: node as Record<string, unknown>, key: k, path: `${path}.${k}` });
          else walk(x, `${path}.${k}`);
        }
      }
    };
    walk(root, '');
    if (arrays.length > 0 && r.chance(0.3)) {
      const { node, path } = r.pick(arrays);
      if (node.length === 0) {
        node.push(0);
        return `graph ${path}: added an element`;
      }
      const i = r.int(node.length);
      const how = r.int(3);
      if (how === 0) node.splice(i, 1);
      else if (how === 1) node.splice(i, 0, structuredClone(node[i]));
      else [node[i], node[0]] = [node[0], node[i]];
      return `graph ${path}: ${['dropped', 'duplicated', 'swapped'][how]} element ${i}`;
    }
    const t = r.pick(numbers);
    const slot = t.node as Record<string | number, unknown>;
    const old = slot[t.key];
    if (typeof old === 'boolean') slot[t.key] = !old;
    else {
      // Another value of the same type from the graph (an ID, a domain index, a format name...),
      // or for a number a small step: plausible enough to get past the shallow checks.
      const same = numbers.map((n) => (n.node as Record<string | number, unknown>)[n.key]).filter((v) => typeof v === typeof old);
      slot[t.key] = typeof old === 'number' && r.chance(0.5) ? old + r.pick([1, -1, 4096, -4096]) : r.pick(same);
    }
    return `graph ${t.path}: ${JSON.stringify(old)} -> ${JSON.stringify(slot[t.key])}`;
  }
}

const out = new TranslationOut();

/**
 * Isolation of a restored engine: every translation through an engine-managed HWPT (attached to a
 * device of an FD) is exactly one of that HWPT's IOAS's areas — the FD's own mappings — and every
 * area translates; a nested HWPT over an engine-managed parent outputs only what the parent's IOAS
 * maps. @returns a description of the first violation, or undefined.
 */
export function isolationViolation(r: Pick<Restored, 'iommu' | 'fds' | 'devices'>, rng: Rng): string | undefined {
  const byRid = new Map([...r.devices.values()].map((d) => [d.rid, d]));
  for (const fd of r.fds) {
    if (fd.closed) continue;
    const view = fdView(fd);
    const areasOf = (ioasId: number) => {
      const o = view.objects.find((x) => x.id === ioasId);
      return o?.type === 'ioas' ? o.areas : [];
    };
    for (const rid of view.devices) {
      const dev = byRid.get(rid);
      if (!dev) return `FD device ${rid} is not a device of the engine`;
      for (const [pasid, hwptId] of dev.attachments()) {
        const h = view.objects.find((o) => o.id === hwptId);
        if (!h) return `device ${dev.bdf} is attached to ${hwptId}, not an object of its FD`;
        let areas: { iova: bigint; last: bigint; phys: bigint; read: boolean; write: boolean }[];
        let nested = false;
        if (h.type === 'hwpt-paging') areas = areasOf(h.ioas);
        else if (h.type === 'hwpt-nested') {
          const parent = view.objects.find((o) => o.id === (h as { parentId?: number }).parentId);
          if (parent?.type !== 'hwpt-paging') continue; // over a guest-programmed G stage: outputs are the guest's
          areas = areasOf(parent.ioas);
          nested = true;
        } else continue;
        const probes: bigint[] = [];
        for (const a of areas) probes.push(a.iova, a.last & ~(P - 1n));
        for (let i = 0; i < 8; i++) probes.push(rng.bits(40) & ~(P - 1n), rng.bits(22) << 12n);
        for (const iova of probes) {
          const t = r.iommu.translateInto(out, dev.rid, pasid, iova, 0);
          const phys = (BigInt(t.physHi) << 32n) | BigInt(t.physLo);
          if (nested) {
            if (t.ok && !areas.some((a) => phys >= a.phys && phys <= a.phys + (a.last - a.iova))) return `device ${dev.bdf} pasid ${pasid}: nested output 0x${phys.toString(16)} outside its parent's IOAS`;
            continue;
          }
          const a = areas.find((x) => iova >= x.iova && iova <= x.last);
          if (!a) {
            if (t.ok) return `device ${dev.bdf} pasid ${pasid}: 0x${iova.toString(16)} translates to 0x${phys.toString(16)} but its IOAS maps nothing there`;
            continue;
          }
          const perm = (a.read ? 1 : 0) | (a.write ? 2 : 0);
          if (!t.ok || phys !== a.phys + (iova - a.iova) || t.perm !== perm) {
            return `device ${dev.bdf} pasid ${pasid}: 0x${iova.toString(16)} gives ${t.ok ? `0x${phys.toString(16)} perm ${t.perm}` : 'a fault'}, its area says 0x${(a.phys + (iova - a.iova)).toString(16)} perm ${perm}`;
          }
        }
      }
    }
  }
  return undefined;
}

/**
 * Random use of a restored engine through the public API: control calls on random IDs, PASIDs and
 * ranges, DMA, dirty bitmaps, invalidations, page requests, a snapshot round trip. Everything may
 * fail, but only with an IommuError. @returns the first thing that broke, or undefined.
 */
export function fuzzSlice(r: Restored, rng: Rng, ops: number): string | undefined {
  const { iommu } = r;
  const devs = [...r.devices.values()];
  const fdOf = (): IommuFd => rng.pick(r.fds);
  const id = (): number => rng.range(0, 12);
  const iova = (): bigint => rng.chance(0.5) ? BigInt(rng.int(64)) * P : rng.bits(32) & ~(P - 1n);
  const len = (): bigint => BigInt(1 + rng.int(16)) * P;
  const steps: (() => unknown)[] = [
    () => fdOf().ioasMap(id(), { iova: iova(), length: len(), phys: RAM + BigInt(rng.int(60)) * P }),
    () => fdOf().ioasMap(id(), { length: len(), phys: RAM + BigInt(rng.int(60)) * P }),
    () => fdOf().ioasUnmap(id(), iova(), rng.chance(0.2) ? (1n << 64n) - 1n : len()),
    () => fdOf().ioasCopy({ dstIoas: id(), srcIoas: id(), srcIova: iova(), length: len() }),
    () => fdOf().ioasAlloc(),
    () => fdOf().hwptAlloc({ devId: id(), ptId: id(), pasid: rng.chance(0.5) }),
    () => rng.pick(devs).attach(id(), rng.chance(0.3) ? { pasid: rng.int(8) } : undefined),
    () => rng.pick(devs).detach(rng.chance(0.3) ? { pasid: rng.int(8) } : undefined),
    () => fdOf().destroy(id()),
    () => fdOf().pasidAlloc(),
    () => fdOf().pasidFree(rng.int(8)),
    () => fdOf().hwptSetDirtyTracking(id(), rng.chance(0.5)),
    () => fdOf().hwptGetDirtyBitmap(id(), { iova: 0, length: 1n << 30n, pageSize: 1n << 21n }),
    () => fdOf().hwptInvalidate(id(), [{}]),
    () => {
      for (const q of r.faultFds.flatMap((m) => [...m.values()])) q.write(q.read().map((x) => ({ cookie: x.cookie, code: 'invalid' as const })));
    },
    () => iommu.dmaWrite(rng.pick(devs).rid, rng.chance(0.8) ? NO_PASID : rng.int(8), iova(), new Uint8Array(1 + rng.int(64))),
    () => iommu.dmaRead(rng.pick(devs).rid, NO_PASID, iova(), new Uint8Array(1 + rng.int(64))),
    () => r.accesses.flatMap((m) => [...m.values()]).forEach((a) => a.pin(iova(), P)),
    () => rng.chance(0.1) && fdOf().close(),
    () => rng.chance(0.1) && Iommu.restore(iommu.snapshot()),
    () => rng.pick(devs).unbind(),
  ];
  for (let i = 0; i < ops; i++) {
    const k = rng.int(steps.length);
    try {
      steps[k]!();
    } catch (e) {
      if (!(e instanceof IommuError)) return `step ${k} threw ${e instanceof Error ? e.stack : String(e)}`;
    }
    for (let j = 0; j < 4; j++) {
      const t = iommu.translate(rng.pick(devs).rid, rng.chance(0.7) ? NO_PASID : rng.int(8), iova(), rng.pick([Access.Read, Access.Write]));
      if (typeof t.ok !== 'boolean') return 'translate returned no result';
    }
  }
  try {
    checkGuards(iommu);
  } catch (e) {
    return `guards: ${e instanceof Error ? e.message : String(e)}`;
  }
  return undefined;
}

/** Outcome of `forgeries`: how many forged snapshots were refused or accepted, and the first violation. */
export interface ForgeryReport {
  refused: number;
  accepted: number;
  violation?: string;
}

/** Runs `count` forgeries of the base snapshot with `seed`; each accepted one is checked and fuzzed. */
export function forgeries(seed: number, count: number, base: Uint8Array = buildForgeryBase()): ForgeryReport {
  const rng = new Rng(seed);
  const mutator = new SnapshotMutator(base, rng);
  const report: ForgeryReport = { refused: 0, accepted: 0 };
  for (let i = 0; i < count; i++) {
    const f = mutator.mutate();
    let restored: Restored;
    try {
      restored = Iommu.restore(f.bytes);
    } catch (e) {
      if (!(e instanceof IommuError)) return { ...report, violation: `forgery ${i} (${f.what}): restore threw ${String(e)}` };
      report.refused++;
      continue;
    }
    report.accepted++;
    const why = isolationViolation(restored, rng) ?? fuzzSlice(restored, rng, 12) ?? isolationViolation(restored, rng);
    if (why) return { ...report, violation: `forgery ${i} (${f.what}): ${why}` };
  }
  return report;
}
