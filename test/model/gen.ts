/**
 * The random op generator of the differential fuzzer. It looks at the model's state to make ops
 * that mostly make sense (existing IDs, addresses next to, inside, across and around existing
 * mappings, attached PASIDs) and a steady share that should fail (foreign IDs, destroyed IDs,
 * closed FDs, overlaps, partial unmaps, reserved ranges, misalignment, overflow), so every errno
 * path and every translation path is exercised. Addresses cluster in a few hot windows (low
 * memory, the 1 GiB boundary, the top of the table's input width, the top of the u64 space) so
 * that ops collide; large maps use 2 MiB / 1 GiB aligned, congruent addresses to get large leaves.
 * @module
 */
import { MAccess, MDevObj, MFault, MHwpt, MIoas, type MDevice, type MObj, type Model, NO_PASID, U64_MAX, type Range, type Area } from './model';
import type { Op, React, Req, TranslateVia } from './ops';
import type { Rng } from './rng';

const K = 4096n;
const M2 = 1n << 21n;
const G1 = 1n << 30n;

export interface GenOptions {
  /** Relative op weights to override (0 disables an op kind). */
  weights?: Partial<Record<Op['k'], number>>;
  /** Restrict fixed IOVAs to the first hot window (the soak's probe window). */
  narrow?: boolean;
  /** Requests per translate op (default 1..8). */
  maxReqs?: number;
  /** Share of control ops run under fault injection (default 0.04). */
  inject?: number;
}

export class Gen {
  private readonly windows: bigint[];
  /** Device reserved regions land here, inside the first window. */
  static readonly MSI: Range = { start: 0x10_0000n + 40n * K, last: 0x10_0000n + 48n * K - 1n };

  constructor(
    private readonly rng: Rng,
    private readonly m: Model,
    private readonly opts: GenOptions = {},
  ) {
    const aw = BigInt(m.cfg.addressWidth);
    this.windows = opts.narrow ? [0x10_0000n] : [0x10_0000n, G1 - 16n * K, (1n << aw) - 32n * K, U64_MAX + 1n - 64n * K];
  }

  // ---- state views ---------------------------------------------------------------------------

  private openFds(): number[] {
    return this.m.fds.flatMap((f, i) => (f.closed ? [] : [i]));
  }

  private anyFd(): number | undefined {
    const open = this.openFds();
    if (open.length === 0) return this.m.fds.length > 0 && this.rng.chance(0.5) ? this.rng.int(this.m.fds.length) : undefined;
    if (this.m.fds.length > open.length && this.rng.chance(0.03)) return this.rng.int(this.m.fds.length);
    return this.rng.pick(open);
  }

  private objsOf(fd: number): MObj[] {
    return [...this.m.fds[fd]!.objs.values()];
  }

  private ioasesOf(fd: number): MIoas[] {
    return this.objsOf(fd).filter((o): o is MIoas => o instanceof MIoas);
  }

  /** An ID that names an IOAS of `fd` most of the time, else anything (another type, another FD's, free). */
  private ioasId(fd: number): number {
    const own = this.ioasesOf(fd);
    if (own.length > 0 && this.rng.chance(0.92)) return this.rng.pick(own).id;
    return this.strayId(fd);
  }

  private strayId(fd: number): number {
    const r = this.rng.int(4);
    const objs = this.objsOf(fd);
    if (r === 0 && objs.length > 0) return this.rng.pick(objs).id;
    if (r === 1 && this.m.fds.length > 1) {
      const other = this.m.fds[this.rng.int(this.m.fds.length)]!;
      const ids = [...other.objs.keys()];
      if (ids.length > 0) return this.rng.pick(ids);
    }
    if (r === 2) return this.rng.pick([0, -1, 2 ** 31, 1]);
    return this.rng.range(1, 12);
  }

  private ioasOf(fd: number, id: number): MIoas | undefined {
    const o = this.m.fds[fd]?.objs.get(id);
    return o instanceof MIoas ? o : undefined;
  }

  private areasOf(fd: number, id: number): Area[] {
    return this.ioasOf(fd, id)?.areas ?? [];
  }

  // ---- addresses ---------------------------------------------------------------------------

  private hotIova(odd = false): bigint {
    if (this.rng.chance(0.03)) return 0n;
    const base = this.rng.pick(this.windows);
    let v = base + BigInt(this.rng.int(64)) * K;
    if (odd) v += BigInt(this.rng.range(1, 4095));
    return v > U64_MAX ? U64_MAX : v;
  }

  /**
   * A backing address aligned to `align`: `inRam` of the time at, in or around a guest RAM window (a
   * few pages before or past it too, so mappings straddle its edges), so that DMA moves bytes;
   * else anywhere below 2^36 (almost never RAM: not-ram faults).
   */
  private phys(align: bigint = K, inRam = 0.4): bigint {
    const ram = this.m.cfg.ram ?? [];
    if (ram.length > 0 && this.rng.chance(inRam)) {
      const w = this.rng.pick(ram);
      const p = w.base - 4n * K + this.rng.bits(40) % (BigInt(w.bytes) + 8n * K);
      return (p / align) * align;
    }
    return (this.rng.bits(36) / align) * align;
  }

  private pages(max: number): bigint {
    return BigInt(this.rng.range(1, max)) * K;
  }

  private perms(): { read?: boolean; write?: boolean } {
    const r = this.rng.int(100);
    if (r < 70) return {};
    if (r < 85) return { read: true, write: false };
    if (r < 97) return { read: false, write: true };
    return { read: false, write: false };
  }

  // ---- ops ---------------------------------------------------------------------------------

  next(): Op {
    const op = this.body();
    // A share of control calls runs with one of its first fallible steps failing (harness: ENOMEM,
    // no change). Not unmaps (onUnmap callbacks may make calls that take the failure and ignore it),
    // pins (nothing to fail) or snapshots (the restore allocates a whole engine).
    const noInject = ['translate', 'dma', 'inspect', 'unmap', 'pin', 'unpin', 'snapshot'];
    if (!noInject.includes(op.k) && this.rng.chance(this.opts.inject ?? 0.04)) op.failAt = this.rng.range(1, 6);
    return op;
  }

  private body(): Op {
    const m = this.m;
    const open = this.openFds().length;
    const devs = m.devices.length;
    let areas = 0;
    for (const f of m.fds) for (const o of f.objs.values()) if (o instanceof MIoas) areas = Math.max(areas, o.areas.length);
    const w: Partial<Record<Op['k'], number>> = {
      open: open < 2 ? 4 : open < 4 ? 0.3 : 0,
      close: open > 0 ? 0.35 : 0,
      addDevice: devs < 3 ? 6 : devs < 10 ? 0.25 : 0,
      ioasAlloc: 3,
      destroy: 3,
      map: areas > 40 ? 4 : 18,
      unmap: areas > 40 ? 20 : 9,
      copy: 5,
      ranges: 1.5,
      allow: 2,
      pasidAlloc: m.cfg.pasidBits <= 4 ? 5 : 2,
      pasidFree: 1.2,
      hwptAlloc: 3,
      bind: 3,
      unbind: 0.6,
      attach: 7,
      detach: 3,
      inspect: 2.5,
      translate: 22,
      // DMA mostly while some attachment maps guest RAM (then it moves bytes).
      dma: m.devices.some((d) => [...d.att.values()].some((h) => h.ioas.areas.some((a) => this.inRam(a)))) ? 14 : 4,
      accessCreate: 1.2,
      pin: 3,
      unpin: 1.2,
      snapshot: 0.06,
      handle: this.m.cfg.shared ? 0.3 : 0.05,
      release: this.m.slots.size > 0 ? 0.25 : 0.03,
      setDirty: 2,
      dirtyBitmap: 4,
      faultAlloc: 0.6,
      faultRead: 2.5,
      faultWrite: 2,
      faultClose: 0.15,
      responses: 1,
      ...this.opts.weights,
    };
    if (open === 0 && m.fds.length === 0) return { k: 'open' };
    const kind = this.rng.weighted(w);
    const fd = this.anyFd();
    const needsFd = !['open', 'addDevice', 'unbind', 'attach', 'detach', 'translate', 'dma', 'bind', 'snapshot', 'handle', 'release', 'responses'].includes(kind);
    if (needsFd && fd === undefined) return { k: 'open' };
    switch (kind) {
      case 'open':
        return { k: 'open' };
      case 'close':
        return { k: 'close', fd: fd! };
      case 'addDevice':
        return this.addDevice();
      case 'ioasAlloc':
        return { k: 'ioasAlloc', fd: fd! };
      case 'destroy':
        return { k: 'destroy', fd: fd!, id: this.rng.chance(0.8) && this.objsOf(fd!).length > 0 ? this.rng.pick(this.objsOf(fd!)).id : this.strayId(fd!) };
      case 'map':
        return this.map(fd!);
      case 'unmap':
        return this.unmap(fd!);
      case 'copy':
        return this.copy(fd!);
      case 'ranges':
        return { k: 'ranges', fd: fd!, ioas: this.ioasId(fd!) };
      case 'allow':
        return this.allow(fd!);
      case 'pasidAlloc':
        return this.pasidAlloc(fd!);
      case 'pasidFree':
        return this.pasidFree(fd!);
      case 'hwptAlloc':
        return this.hwptAlloc(fd!);
      case 'bind':
        return this.bind();
      case 'unbind':
        return devs === 0 ? { k: 'open' } : { k: 'unbind', dev: this.boundDev(0.85) };
      case 'attach':
        return this.attach();
      case 'detach':
        return this.detach();
      case 'inspect':
        return { k: 'inspect', fd: fd! };
      case 'translate':
        return this.translate();
      case 'dma':
        return this.dma();
      case 'accessCreate':
        return { k: 'accessCreate', fd: fd!, ioas: this.ioasId(fd!), react: this.rng.pick<React | undefined>([undefined, 'unpin', 'unpin', 'unpin-map', 'unpin-unmap', 'unpin-copy', 'none']) };
      case 'pin':
        return this.pin(fd!, 'pin');
      case 'unpin':
        return this.pin(fd!, 'unpin');
      case 'snapshot':
        return { k: 'snapshot' };
      case 'faultAlloc':
        return { k: 'faultAlloc', fd: fd! };
      case 'faultRead': {
        // The FD whose queues hold requests, usually.
        const busyFd = this.m.fds.findIndex((f) => !f.closed && [...f.objs.values()].some((o) => o instanceof MFault && o.queued.length > 0));
        if (busyFd >= 0 && this.rng.chance(0.7)) return { k: 'faultRead', fd: busyFd, id: this.faultId(busyFd), max: this.rng.chance(0.5) ? undefined : this.rng.range(1, 3) };
        if (!this.objsOf(fd!).some((o) => o instanceof MFault) && this.rng.chance(0.7)) return { k: 'faultAlloc', fd: fd! };
        return { k: 'faultRead', fd: fd!, id: this.faultId(fd!), max: this.rng.chance(0.5) ? undefined : this.rng.range(1, 3) };
      }
      case 'faultWrite': {
        const busyFd = this.m.fds.findIndex((f) => !f.closed && [...f.objs.values()].some((o) => o instanceof MFault && o.pending.size > 0));
        return this.faultWrite(busyFd >= 0 && this.rng.chance(0.7) ? busyFd : fd!);
      }
      case 'faultClose':
        return { k: 'faultClose', fd: fd!, id: this.faultId(fd!) };
      case 'responses':
        return devs === 0 ? { k: 'open' } : { k: 'responses', dev: this.rng.int(devs) };
      case 'handle':
        return { k: 'handle' };
      case 'release':
        return { k: 'release', slot: this.m.slots.size > 0 && this.rng.chance(0.85) ? this.rng.pick([...this.m.slots]) : this.rng.range(0, 3) };
      case 'setDirty':
      case 'dirtyBitmap': {
        // No tracking HWPT in this FD yet: usually make one first (on a dirty-capable device).
        const tracking = this.objsOf(fd!).some((o) => o instanceof MHwpt && o.dirtyTracking);
        if (!tracking && this.rng.chance(0.8)) return this.hwptAlloc(fd!, true);
        if (kind === 'setDirty') return { k: 'setDirty', fd: fd!, hwpt: this.dirtyHwptId(fd!), enable: this.rng.chance(0.75) };
        return this.dirtyBitmap(fd!);
      }
    }
  }

  /** Mostly a FAULT object of `fd`, else a stray ID. */
  private faultId(fd: number): number {
    const qs = this.objsOf(fd).filter((o): o is MFault => o instanceof MFault);
    // Queues holding requests first, so that reads and answers have something to work on.
    const busy = qs.filter((q) => q.queued.length > 0 || q.pending.size > 0);
    if (busy.length > 0 && this.rng.chance(0.8)) return this.rng.pick(busy).id;
    return qs.length > 0 && this.rng.chance(0.9) ? this.rng.pick(qs).id : this.strayId(fd);
  }

  /** Answers: mostly pending cookies with a valid code, sometimes an unknown cookie or a bad code. */
  private faultWrite(fd: number): Op {
    const rng = this.rng;
    const id = this.faultId(fd);
    const q = this.m.fds[fd]!.objs.get(id);
    const pending = q instanceof MFault ? [...q.pending.keys()] : [];
    const responses: { cookie: number; code: 'success' | 'invalid' | 0 | 1 | 'maybe' }[] = [];
    for (let n = rng.range(1, 3); n > 0; n--) {
      const cookie = pending.length > 0 && rng.chance(0.85) ? rng.pick(pending) : rng.range(0, 40);
      responses.push({ cookie, code: rng.chance(0.05) ? 'maybe' : rng.pick(['success', 'invalid', 0, 1] as const) });
    }
    return { k: 'faultWrite', fd, id, responses };
  }

  /** Mostly a HWPT allocated with dirty tracking, sometimes another HWPT or a stray ID. */
  private dirtyHwptId(fd: number): number {
    const hwpts = this.objsOf(fd).filter((o): o is MHwpt => o instanceof MHwpt);
    const tracking = hwpts.filter((h) => h.dirtyTracking);
    if (tracking.length > 0 && this.rng.chance(0.85)) return this.rng.pick(tracking).id;
    return hwpts.length > 0 && this.rng.chance(0.5) ? this.rng.pick(hwpts).id : this.strayId(fd);
  }

  /** A bitmap read of a small range (at most 128 bits) around the HWPT's mappings. */
  private dirtyBitmap(fd: number): Op {
    const rng = this.rng;
    const hwpt = this.dirtyHwptId(fd);
    const h = this.m.fds[fd]!.objs.get(hwpt);
    const areas = h instanceof MHwpt ? h.ioas.areas : [];
    const pageSize = rng.pick([K, K, K, 2n * K, M2, 0n, 3n * K]);
    const unit = pageSize > 0n ? pageSize : K;
    const base = areas.length > 0 && rng.chance(0.8) ? rng.pick(areas).iova : this.hotIova();
    const iova = rng.chance(0.9) ? base - (base % unit) - BigInt(rng.int(3)) * unit : base + 1n;
    const length = rng.chance(0.05) ? 0n : unit * BigInt(rng.range(1, 128));
    return { k: 'dirtyBitmap', fd, hwpt, iova: iova < 0n ? 0n : iova, length, pageSize, noClear: rng.chance(0.3) ? true : undefined };
  }

  /** pin: mostly whole pages of an area of the access's IOAS; unpin: mostly an existing pin. */
  private pin(fd: number, k: 'pin' | 'unpin'): Op {
    const rng = this.rng;
    const accesses = this.objsOf(fd).filter((o): o is MAccess => o instanceof MAccess);
    const acc = accesses.length > 0 && rng.chance(0.92) ? rng.pick(accesses) : undefined;
    const access = acc?.id ?? this.strayId(fd);
    if (k === 'unpin' && acc && acc.pins.length > 0 && rng.chance(0.8)) {
      const p = rng.pick(acc.pins);
      return { k, fd, access, iova: p.start, length: p.last - p.start + 1n };
    }
    const areas = acc?.ioas.areas ?? [];
    if (areas.length > 0 && rng.chance(0.85)) {
      const a = rng.pick(areas);
      const pages = (a.last - a.iova + 1n) / K;
      const first = pages > 1n ? BigInt(rng.int(Number(pages > 16n ? 16n : pages))) : 0n;
      const n = rng.chance(0.1) ? pages + 1n : BigInt(rng.range(1, 4));
      return { k, fd, access, iova: a.iova + first * K, length: n * K };
    }
    return { k, fd, access, iova: this.hotIova(rng.chance(0.1)), length: rng.chance(0.05) ? 0n : this.pages(4) };
  }

  private addDevice(): Op {
    const rng = this.rng;
    const bus = rng.pick([0, 0, 1, 3, 0xff]);
    const dev = rng.int(32);
    const fn = rng.int(8);
    const hex = (v: number, w: number): string => v.toString(16).padStart(w, '0');
    let bdf = `${rng.chance(0.5) ? '0000:' : ''}${hex(bus, 2)}:${hex(dev, 2)}.${fn}`;
    if (rng.chance(0.03)) bdf = rng.pick(['00:20.0', 'zz:00.0', '00:00.8', '']);
    const pasidBits = rng.chance(0.25) ? 0 : rng.chance(0.3) ? rng.range(1, this.m.cfg.pasidBits) : undefined;
    const reserved = rng.chance(0.3) ? [{ ...Gen.MSI }] : undefined;
    return { k: 'addDevice', bdf, pasidBits, reserved, dirty: rng.chance(0.4) ? true : undefined, pri: rng.chance(0.4) ? true : undefined };
  }

  private map(fd: number): Op {
    const rng = this.rng;
    const ioas = this.ioasId(fd);
    const areas = this.areasOf(fd, ioas);
    const auto = rng.chance(0.25);
    const p = this.perms();
    const cls = rng.weighted({ small: 62, adjacent: areas.length > 0 ? 14 : 0, overlap: areas.length > 0 ? 5 : 0, medium: 6, huge: 3, odd: 6, edge: 4 });
    let iova: bigint;
    let length: bigint;
    let phys: bigint;
    switch (cls) {
      case 'small':
        iova = this.hotIova();
        length = this.pages(16);
        phys = this.phys();
        break;
      case 'adjacent': {
        const a = rng.pick(areas);
        length = this.pages(8);
        iova = rng.chance(0.6) ? a.last + 1n : a.iova - length;
        phys = rng.chance(0.5) ? a.phys + (a.last - a.iova + 1n) : this.phys();
        break;
      }
      case 'overlap': {
        const a = rng.pick(areas);
        iova = a.iova + BigInt(rng.range(-2, 2)) * K;
        length = this.pages(4);
        phys = this.phys();
        break;
      }
      case 'medium': // 2 MiB leaves: IOVA and phys 2 MiB aligned
        iova = (this.hotIova() / M2) * M2 + BigInt(rng.int(4)) * M2;
        length = BigInt(rng.range(1, 3)) * M2 + (rng.chance(0.3) ? this.pages(3) : 0n);
        // Mostly RAM: 2 MiB leaves backed by it are otherwise rare in DMA.
        phys = this.phys(M2, 0.7) + (rng.chance(0.15) ? K : 0n);
        break;
      case 'huge': // 1 GiB leaves
        iova = BigInt(rng.range(1, 4)) * G1 + (rng.chance(0.2) ? M2 : 0n);
        length = BigInt(rng.range(1, 2)) * G1 + (rng.chance(0.3) ? M2 : 0n);
        phys = this.phys(G1) + (iova % G1);
        break;
      case 'odd': // byte-granular: only an IOAS without a domain (alignment 1) takes it
        iova = this.hotIova(true);
        length = BigInt(rng.range(1, 3 * 4096));
        phys = this.phys() + BigInt(rng.int(4096));
        break;
      default: {
        const e = rng.int(7);
        iova = [0n, U64_MAX, U64_MAX - K + 1n, this.hotIova(), U64_MAX + 1n - K, 1n << 63n, this.hotIova()][e]!;
        length = [0n, K, K, U64_MAX, 2n * K, 1n << 63n, (1n << 62n)][e]!;
        phys = rng.pick([U64_MAX - K + 1n, (1n << 52n) - K, this.phys()]);
        break;
      }
    }
    return { k: 'map', fd, ioas, iova: auto ? undefined : iova, length, phys, ...p };
  }

  private unmap(fd: number): Op {
    const rng = this.rng;
    const ioas = this.ioasId(fd);
    const areas = this.areasOf(fd, ioas);
    const cls = rng.weighted({ exact: areas.length ? 40 : 0, multi: areas.length > 1 ? 10 : 0, partial: areas.length ? 10 : 0, around: areas.length ? 8 : 0, all: 6, random: 10, edge: 4 });
    const len = (a: Area): bigint => a.last - a.iova + 1n;
    switch (cls) {
      case 'exact': {
        const a = rng.pick(areas);
        return { k: 'unmap', fd, ioas, iova: a.iova, length: len(a) };
      }
      case 'multi': {
        const i = rng.int(areas.length - 1);
        const j = rng.range(i + 1, Math.min(areas.length - 1, i + 4));
        return { k: 'unmap', fd, ioas, iova: areas[i]!.iova, length: areas[j]!.last - areas[i]!.iova + 1n };
      }
      case 'partial': {
        const a = rng.pick(areas);
        if (len(a) > K && rng.chance(0.5)) return { k: 'unmap', fd, ioas, iova: a.iova, length: len(a) - K };
        return { k: 'unmap', fd, ioas, iova: a.iova + (len(a) > K ? K : 0n), length: K };
      }
      case 'around': {
        const a = rng.pick(areas);
        const pad = BigInt(rng.range(1, 4)) * K;
        return { k: 'unmap', fd, ioas, iova: a.iova >= pad ? a.iova - pad : 0n, length: len(a) + 2n * pad };
      }
      case 'all':
        return { k: 'unmap', fd, ioas, iova: 0n, length: U64_MAX };
      case 'random':
        return { k: 'unmap', fd, ioas, iova: this.hotIova(), length: this.pages(32) };
      default: {
        const e = rng.int(5);
        return { k: 'unmap', fd, ioas, iova: [0n, U64_MAX, U64_MAX - K + 1n, 1n, this.hotIova()][e]!, length: [0n, K, 2n * K, U64_MAX, U64_MAX - 1n][e]! };
      }
    }
  }

  private copy(fd: number): Op {
    const rng = this.rng;
    const withAreas = this.ioasesOf(fd).filter((x) => x.areas.length > 0);
    const src = withAreas.length > 0 && rng.chance(0.9) ? rng.pick(withAreas).id : this.ioasId(fd);
    const dst = rng.chance(0.3) ? src : this.ioasId(fd);
    const areas = this.areasOf(fd, src);
    const p = this.perms();
    let srcIova: bigint;
    let length: bigint;
    if (areas.length > 0 && rng.chance(0.9)) {
      const i = rng.int(areas.length);
      const a = areas[i]!;
      const pages = (a.last - a.iova + 1n) / K;
      const skip = pages > 1n && rng.chance(0.4) ? BigInt(rng.int(Number(pages > 64n ? 64n : pages))) * K : 0n;
      srcIova = a.iova + skip;
      const left = a.last - srcIova + 1n;
      // Mostly within the area; sometimes past its end, into a neighbour or a hole.
      length = rng.chance(0.8) ? (left > 16n * K && rng.chance(0.7) ? this.pages(16) : left) : left + this.pages(4);
      if (left % K !== 0n || rng.chance(0.05)) length = left; // byte-granular areas
    } else {
      srcIova = this.hotIova();
      length = rng.chance(0.1) ? 0n : this.pages(8);
    }
    let dstIova: bigint | undefined = rng.chance(0.4) ? undefined : this.hotIova();
    // Keep large copies cheap: a fixed destination keeps the source's 1 GiB congruence.
    if (dstIova !== undefined && length > 64n * M2) dstIova = BigInt(rng.range(1, 6)) * G1 + (srcIova % G1);
    return { k: 'copy', fd, dst, src, srcIova, length, dstIova, ...p };
  }

  private allow(fd: number): Op {
    const rng = this.rng;
    const n = rng.chance(0.25) ? 0 : rng.range(1, 3);
    const ranges: Range[] = [];
    for (let i = 0; i < n; i++) {
      const start = rng.chance(0.1) ? 1n << BigInt(this.m.cfg.addressWidth) : this.hotIova();
      const last = rng.chance(0.05) ? start : start + this.pages(64) - 1n;
      ranges.push({ start, last: last > U64_MAX ? U64_MAX : last });
    }
    return { k: 'allow', fd, ioas: this.ioasId(fd), ranges };
  }

  private pasidAlloc(fd: number): Op {
    const rng = this.rng;
    if (rng.chance(0.7)) return { k: 'pasidAlloc', fd };
    const taken = [...this.m.pasidOwner.keys()];
    const limit = 2 ** this.m.cfg.pasidBits;
    const pasid = taken.length > 0 && rng.chance(0.3) ? rng.pick(taken) : rng.pick([rng.range(1, Math.min(limit - 1, 40)), limit - 1, limit, 0]);
    return { k: 'pasidAlloc', fd, pasid };
  }

  private pasidFree(fd: number): Op {
    const rng = this.rng;
    const own = this.m.pasids(fd);
    const all = [...this.m.pasidOwner.keys()];
    const pasid = own.length > 0 && rng.chance(0.7) ? rng.pick(own) : all.length > 0 && rng.chance(0.5) ? rng.pick(all) : rng.range(0, 40);
    return { k: 'pasidFree', fd, pasid };
  }

  private hwptAlloc(fd: number, dirty = false): Op {
    const rng = this.rng;
    const all = this.objsOf(fd).filter((o): o is MDevObj => o instanceof MDevObj);
    const capable = all.filter((o) => o.dev.dirty);
    const devObjs = dirty && capable.length > 0 ? capable : all;
    const devId = devObjs.length > 0 && rng.chance(0.9) ? rng.pick(devObjs).id : this.strayId(fd);
    return {
      k: 'hwptAlloc', fd, devId, ptId: this.ioasId(fd),
      pasid: rng.chance(0.5) ? true : rng.chance(0.5) ? false : undefined,
      nestParent: rng.chance(0.2) ? true : undefined,
      dirtyTracking: dirty || rng.chance(0.3) ? true : undefined,
      faultId: rng.chance(this.objsOf(fd).some((o) => o instanceof MFault) ? 0.6 : 0.1) ? this.faultId(fd) : undefined,
    };
  }

  private boundDev(p: number): number {
    const bound = this.m.devices.flatMap((d, i) => (d.fd ? [i] : []));
    return bound.length > 0 && this.rng.chance(p) ? this.rng.pick(bound) : this.rng.int(this.m.devices.length);
  }

  private bind(): Op {
    const rng = this.rng;
    if (this.m.devices.length === 0) return { k: 'open' };
    const unbound = this.m.devices.flatMap((d, i) => (d.fd ? [] : [i]));
    const dev = unbound.length > 0 && rng.chance(0.85) ? rng.pick(unbound) : rng.int(this.m.devices.length);
    const fd = this.anyFd();
    return fd === undefined ? { k: 'open' } : { k: 'bind', dev, fd };
  }

  private attach(): Op {
    const rng = this.rng;
    if (this.m.devices.length === 0) return { k: 'open' };
    const dev = this.boundDev(0.95);
    const d = this.m.devices[dev]!;
    const fdIndex = d.fd ? this.m.fds.indexOf(d.fd) : -1;
    let pt = 1;
    if (fdIndex >= 0) {
      const objs = this.objsOf(fdIndex).filter((o) => !(o instanceof MDevObj));
      // Dirty-tracking HWPTs get devices often, so that writes reach them.
      const tracking = d.dirty ? objs.filter((o) => o instanceof MHwpt && o.dirtyTracking) : [];
      // ...and PRI devices HWPTs with a fault queue, so that their faults raise page requests.
      const faulting = d.pri ? objs.filter((o) => o instanceof MHwpt && o.fault) : [];
      if (faulting.length > 0 && rng.chance(0.5)) pt = rng.pick(faulting).id;
      else pt = tracking.length > 0 && rng.chance(0.5) ? rng.pick(tracking).id : objs.length > 0 && rng.chance(0.9) ? rng.pick(objs).id : this.strayId(fdIndex);
    }
    return { k: 'attach', dev, pt, pasid: this.pasidFor(d, fdIndex) };
  }

  /** undefined (the RID) or a PASID: usually one of the device's FD, sometimes a foreign or bad one. */
  private pasidFor(d: MDevice, fdIndex: number): number | undefined {
    const rng = this.rng;
    if (rng.chance(0.45)) return undefined;
    const own = fdIndex >= 0 ? this.m.pasids(fdIndex) : [];
    if (own.length > 0 && rng.chance(0.75)) return rng.pick(own);
    const all = [...this.m.pasidOwner.keys()];
    if (all.length > 0 && rng.chance(0.5)) return rng.pick(all);
    return rng.pick([0, 1, 2 ** d.pasidBits, 2 ** 20, rng.range(1, 40)]);
  }

  private detach(): Op {
    if (this.m.devices.length === 0) return { k: 'open' };
    const dev = this.boundDev(0.95);
    const d = this.m.devices[dev]!;
    const attached = [...d.att.keys()];
    const rng = this.rng;
    let pasid: number | undefined;
    if (attached.length > 0 && rng.chance(0.8)) {
      const p = rng.pick(attached);
      pasid = p === NO_PASID && rng.chance(0.5) ? undefined : p;
    } else {
      pasid = rng.pick([undefined, 0, rng.range(1, 40), 2 ** 20]);
    }
    return { k: 'detach', dev, pasid };
  }

  translate(): Op {
    const via: TranslateVia = this.m.slots.size > 0 && this.rng.chance(0.3) ? 'worker' : this.rng.pick(['call', 'into', 'batch']);
    const n = this.rng.range(1, this.opts.maxReqs ?? 8);
    const reqs: Req[] = [];
    for (let i = 0; i < n; i++) reqs.push(this.req());
    return { k: 'translate', via, reqs };
  }

  /**
   * A DMA op. Requester as for translations (mostly attached devices and PASIDs, sometimes bad
   * ones, 4 % not even u32). The IOVA mostly in an area of that attachment (preferring areas
   * backed by RAM): where its output is RAM, just before where a RAM window starts or ends in its
   * output (across adjoining windows, out of RAM), anywhere in it at odd offsets, just before its
   * end (the transfer runs on into whatever follows), just before a 2 MiB boundary (across leaves,
   * 2 MiB ones too), or before its start; else near 2^53, 2^64, the input width, a hot window, or random. Lengths from 1 byte to
   * 64 KiB. Number IOVAs half the time when exact, and a few that are no address.
   */
  dma(): Op {
    const rng = this.rng;
    const m = this.m;
    const via = m.slots.size > 0 && rng.chance(0.3) ? 'worker' : 'call';
    const write = rng.chance(0.5);
    let len = rng.chance(0.01) ? 0 : this.dmaLength();
    let rid: number;
    let pasid: number;
    let iova: bigint;
    // A recent transfer again, often the same span: its leaves are IOTLB hits now (one run).
    const recent = this.recentDma.length > 0 && rng.chance(0.3) ? rng.pick(this.recentDma) : undefined;
    if (recent) {
      [rid, pasid, iova] = recent;
      if (rng.chance(0.5)) len = recent[3];
    } else {
      // Mostly an attachment whose IOAS maps guest RAM somewhere, so that bytes move.
      const backed = m.devices.flatMap((d) => [...d.att].filter(([, h]) => h.ioas.areas.some((a) => this.inRam(a))).map(([p]) => [d.rid, p] as const));
      [rid, pasid] = backed.length > 0 && rng.chance(0.7) ? rng.pick(backed) : this.freshReq();
      const h = m.devices.find((d) => d.rid === rid)?.att.get(pasid);
      iova = this.dmaIova(h?.ioas.areas ?? [], len);
      if (this.recentDma.length < 32) this.recentDma.push([rid, pasid, iova, len]);
      else this.recentDma[rng.int(32)] = [rid, pasid, iova, len];
    }
    if (rng.chance(0.04)) {
      if (rng.chance(0.5)) rid = rng.pick([-1, 2 ** 32, 1.5, 2 ** 16]);
      else pasid = rng.pick([-1, 2 ** 32, 0.5]);
    }
    let arg: bigint | number = iova;
    if (rng.chance(0.5) && BigInt(Number(iova)) === iova) arg = Number(iova);
    if (rng.chance(0.02)) arg = rng.pick([-4096, 4096.5, 2 ** 64, -1n, 1n << 64n, (1n << 64n) + 4096n]);
    return { k: 'dma', via, write, rid, pasid, iova: arg, length: len, seed: rng.int(2 ** 31) };
  }

  /** Recent DMA requesters, IOVAs and lengths, used again later (by then maybe unmapped, remapped, detached). */
  private readonly recentDma: [rid: number, pasid: number, iova: bigint, length: number][] = [];

  /** 1 B to 64 KiB: within a page, a few pages, whole pages. */
  private dmaLength(): number {
    const rng = this.rng;
    const c = rng.int(10);
    if (c < 2) return rng.range(1, 16);
    if (c < 5) return rng.range(1, 4096);
    if (c < 9) return rng.range(4097, 65536);
    return rng.range(1, 16) * 4096;
  }

  /** Does some of the area's output lie in guest RAM? */
  private inRam(a: Area): boolean {
    return (this.m.cfg.ram ?? []).some((w) => a.phys <= w.base + BigInt(w.bytes) - 1n && w.base <= a.phys + (a.last - a.iova));
  }

  private dmaIova(areas: Area[], length: number): bigint {
    const rng = this.rng;
    const ram = this.m.cfg.ram ?? [];
    let iova: bigint;
    if (areas.length > 0 && rng.chance(0.85)) {
      const backed = areas.filter((a) => this.inRam(a));
      // Large areas (2 MiB and 1 GiB leaves) backed by RAM are rare: picked first when there are some.
      const large = backed.filter((x) => x.last - x.iova >= M2);
      const a = large.length > 0 && rng.chance(0.4) ? rng.pick(large) : backed.length > 0 && rng.chance(0.8) ? rng.pick(backed) : rng.pick(areas);
      const size = a.last - a.iova + 1n;
      const n = BigInt(length);
      switch (rng.weighted({ ram: 30, edge: 15, any: 10, odd: 10, end: 15, m2: 15, before: 5 })) {
        case 'edge': { // across where a RAM window starts or ends inside the area's output
          const edges = ram.flatMap((w) => [w.base, w.base + BigInt(w.bytes)]).filter((e) => e > a.phys && e < a.phys + size);
          const e = edges.length > 0 ? rng.pick(edges) : a.phys + size / 2n;
          iova = a.iova + (e - a.phys) - BigInt(rng.range(1, Math.max(1, Math.min(length, 8192))));
          break;
        }
        case 'ram': { // where the area's output is RAM (when it is)
          const hits = ram.flatMap((w) => {
            const lo = a.phys > w.base ? a.phys : w.base;
            const hi = a.phys + size < w.base + BigInt(w.bytes) ? a.phys + size : w.base + BigInt(w.bytes);
            return lo < hi ? [{ lo, hi }] : [];
          });
          const r = hits.length > 0 ? rng.pick(hits) : { lo: a.phys, hi: a.phys + size };
          iova = a.iova + (r.lo - a.phys) + rng.bits(40) % (r.hi - r.lo);
          break;
        }
        case 'any': // anywhere, any offset
          iova = a.iova + rng.bits(40) % size;
          break;
        case 'odd': // a page of the first 64, at an odd offset
          iova = a.iova + (BigInt(rng.int(64)) * K) % size + BigInt(rng.int(4096));
          break;
        case 'end': // ends past the area
          iova = a.last + 1n - (n > 1n ? BigInt(rng.range(1, Math.min(length, 8192))) : 1n);
          break;
        case 'm2': { // across a 2 MiB boundary inside (or at the end of) the area
          const b = ((a.iova + rng.bits(40) % size) / M2 + 1n) * M2;
          iova = b - BigInt(rng.range(1, Math.max(1, Math.min(length, 8192))));
          break;
        }
        default: // starts before the area
          iova = a.iova - BigInt(rng.range(1, 64));
      }
    } else {
      const aw = BigInt(this.m.cfg.addressWidth);
      const before = (top: bigint): bigint => top - BigInt(rng.range(1, 3 * 4096));
      iova = rng.pick([before(1n << 53n), before(1n << 64n), before(1n << aw), this.hotIova(true), rng.bits(64), 0n]);
    }
    return iova < 0n ? 0n : iova > U64_MAX ? U64_MAX : iova;
  }

  /** Recent requests, re-asked later: a stale IOTLB entry or context shows up as a divergence. */
  private readonly recent: Req[] = [];

  private req(): Req {
    const rng = this.rng;
    if (this.recent.length > 0 && rng.chance(0.35)) {
      const [rid, pasid, iova] = rng.pick(this.recent);
      return [rid, pasid, iova, rng.pick([1, 2, 3, 4, 0])];
    }
    const r = this.freshReq();
    if (this.recent.length < 64) this.recent.push(r);
    else this.recent[rng.int(64)] = r;
    return r;
  }

  private freshReq(): Req {
    const rng = this.rng;
    const m = this.m;
    const attached = m.devices.filter((d) => d.att.size > 0);
    let d: MDevice | undefined;
    let rid: number;
    const r = rng.int(100);
    if (attached.length > 0 && r < 80) d = rng.pick(attached);
    else if (m.devices.length > 0 && r < 93) d = rng.pick(m.devices);
    if (d) rid = d.rid;
    else rid = rng.pick([0x7777, 0xffff, 0, 2 ** 16, 2 ** 32 - 1]);
    let pasid = NO_PASID;
    if (d && d.att.size > 0 && rng.chance(0.8)) pasid = rng.pick([...d.att.keys()]);
    else if (rng.chance(0.5)) pasid = rng.pick([1, 2, d ? 2 ** d.pasidBits : 1, 2 ** 20, 2 ** 20 - 1, rng.range(1, 40)]);
    const h = d?.att.get(pasid);
    const areas = h?.ioas.areas ?? [];
    let iova: bigint;
    // Through a HWPT with a fault queue, a PRI device's faults raise page requests: fault often.
    if (areas.length > 0 && rng.chance(h?.fault && d?.pri ? 0.4 : 0.85)) {
      const a = rng.pick(areas);
      const len = a.last - a.iova + 1n;
      const c = rng.int(6);
      iova = [a.iova, a.last, a.iova - 1n, a.last + 1n, a.iova + (rng.bits(40) % len), a.iova + (BigInt(rng.int(1024)) * K) % len][c]!;
      if (iova < 0n) iova = 0n;
      if (iova > U64_MAX) iova = U64_MAX;
    } else {
      const aw = BigInt(m.cfg.addressWidth);
      iova = rng.pick([0n, (1n << aw) - 1n, 1n << aw, U64_MAX, this.hotIova(), rng.bits(64)]);
    }
    // Through a tracking HWPT mostly writes, so that leaves get dirty between bitmap reads.
    const access = h?.dirtyEnabled && rng.chance(0.6) ? rng.pick([2, 3]) : rng.pick([1, 1, 1, 2, 2, 3, 3, 4, 5, 8, 9, 0, 16]);
    return [rid, pasid, iova, access];
  }
}
