/**
 * Control-path test helpers in the kernel selftest's pattern (iommufd_utils.h): every command has
 * `ok.X(...)`, which asserts success and returns the result, and `err.X(errno, ...)`, which asserts
 * an IommuError with that errno AND that nothing observable changed (a `snapshot` before and after).
 * Every control method of the public classes has a command here (test/commands.test.ts checks it).
 * Topology fixtures (`TOPOLOGIES`, `ioasFixture`) play the selftest's FIXTURE_VARIANTs.
 */
import { expect } from 'vitest';
import { Access, Iommu, IommuError, NO_PASID, TranslationOut, FAULT_REASONS } from '../src/index';
import type {
  CopyArgs, DeviceFd, DeviceOptions, Errno, FaultQueueFd, HwptAllocArgs, HwptUserArgs, InvalidateEntry, IoasAccess, IommuFd,
  IommuOptions, IoRange, MapArgs, MapBatch, UnmapBatch, PageResponseArgs, TranslatorHandle, UnmapCallback,
} from '../src/index';
import { fdState } from '../src/iommufd/fd-state';
import type { Ioas } from '../src/iommufd/ioas';
import { captureGraph } from '../src/snapshot/save';
import { engineOf, fdView, poolState, setFailCountdown } from './testing';

/** The selftest's sizes, adapted: our domains' smallest page is 4 KiB, so its MP becomes P. */
export const P = 4096n;
export const MP = P;
export const APSTART = 1n << 24n;
export const BUF = 16n * P;
export const U64MAX = (1n << 64n) - 1n;
/** Backing (guest-physical) address of the test "buffer": 2 GiB aligned, like a huge-page buffer. */
export const PHYS = 1n << 31n;

/** Small engines: tests make many of them. */
const ENGINE_DEFAULTS: IommuOptions = { iotlbEntries: 256, translators: 2, maxDomains: 256, maxMemoryBytes: 64 * 2 ** 20 };

// ---- Worlds: everything one engine's tests can observe ------------------------------------------

/** An engine with the FDs and devices made through these helpers, and the IOVAs snapshots probe. */
interface World {
  iommu: Iommu;
  fds: IommuFd[];
  devs: DeviceFd[];
  probes: Set<bigint>;
}

const worlds = new WeakMap<object, World>();

function defaultProbes(): Set<bigint> {
  const probes = new Set<bigint>();
  for (let i = 0n; i < 72n; i++) probes.add(i * P).add(APSTART + i * P);
  for (const extra of [200n * P, 600n * P - 1n, PHYS, (1n << 39n) - P, (1n << 48n) - P]) probes.add(extra);
  return probes;
}

function worldOf(subject: object): World | undefined {
  return worlds.get(subject);
}

function requireWorld(subject: object): World {
  return worldOf(subject) ?? expect.fail('expected an Iommu, FD or device made through the test helpers');
}

/** An engine with one device attached to one IOAS through its auto HWPT, and that HWPT's domain index. */
export interface DomainRig {
  iommu: Iommu;
  fd: IommuFd;
  dev: DeviceFd;
  ioas: number;
  domain: number;
}

/** A small {@link DomainRig}: `maxMemoryBytes` (default 64 MiB), the FD's page limit `pages` (default none). */
export function domainRig(opts: { maxMemoryBytes?: number; pages?: number } = {}): DomainRig {
  const iommu = Iommu.createSync({ maxMemoryBytes: opts.maxMemoryBytes ?? 64 * 2 ** 20, translators: 2, iotlbEntries: 16, maxDomains: 4, pasidBits: 4 });
  const fd = iommu.open(opts.pages === undefined ? undefined : { limits: { pages: opts.pages } });
  const ioas = fd.ioasAlloc();
  const dev = iommu.addDevice({ bdf: '00:02.0' });
  dev.bind(fd);
  const hwpt = dev.attach(ioas);
  const view = fdView(fd).objects.find((o) => o.id === hwpt);
  if (view?.type !== 'hwpt-paging') throw new Error('expected a HWPT_PAGING');
  return { iommu, fd, dev, ioas, domain: view.domain };
}

/** A new engine (small defaults, overridable) whose FDs and devices the snapshots will cover. */
export function makeIommu(opts: IommuOptions = {}): Iommu {
  // An engine in an emulator's memory is bounded by its region, not by maxMemoryBytes.
  const { maxMemoryBytes: _max, ...inRegion } = ENGINE_DEFAULTS;
  const iommu = Iommu.createSync({ ...(opts.memory ? inRegion : ENGINE_DEFAULTS), ...opts });
  worlds.set(iommu, { iommu, fds: [], devs: [], probes: defaultProbes() });
  return iommu;
}

function track<T extends object>(world: World, list: T[], obj: T): T {
  list.push(obj);
  worlds.set(obj, world);
  return obj;
}

/** The IOAS object behind `ioasId` (internal, for the test op below). */
function ioasObject(fd: IommuFd, ioasId: number): Ioas {
  const state = fdState(fd) ?? expect.fail('not an IommuFd');
  return state.table.get<Ioas>('test', ioasId, 'ioas');
}

/** The mappings (areas) of an IOAS as plain data (the selftest's IOMMU_TEST_OP_MD_CHECK_MAP, inverted). */
export function mappings(fd: IommuFd, ioasId: number): { iova: bigint; last: bigint; phys: bigint; read: boolean; write: boolean }[] {
  const view = fdView(fd).objects.find((o) => o.id === ioasId);
  return view?.type === 'ioas' ? view.areas : expect.fail(`no IOAS ${ioasId}`);
}

/** The owner used for reserved ranges added by the tests (IOMMU_TEST_OP_ADD_RESERVED: owner NULL). */
const TEST_RESERVATION = {};

/** Arms fault injection: the `n`th fallible step of the engine from now fails with ENOMEM (0 disarms). */
export function failNth(fd: IommuFd, n: number): void {
  setFailCountdown(requireWorld(fd).iommu, n);
}

/**
 * The fail_nth pattern (iommufd_fail_nth.c): runs `call` with its 1st, 2nd, ... fallible engine
 * step failing until it succeeds; every failed run must be ENOMEM and leave the state unchanged.
 * @returns the successful result and how many failure points were met
 */
export function failEachStep<T>(fd: IommuFd, call: () => T): { result: T; failurePoints: number } {
  for (let n = 1; n < 1000; n++) {
    const before = snapshot(fd);
    failNth(fd, n);
    let result: T;
    try {
      result = call();
    } catch (e) {
      expect(e, `failure point ${n}`).toBeInstanceOf(IommuError);
      expect((e as IommuError).errno, (e as IommuError).message).toBe('ENOMEM');
      expect(snapshot(fd), `state changed by the failure at step ${n}`).toEqual(before);
      continue;
    } finally {
      failNth(fd, 0);
    }
    return { result, failurePoints: n - 1 };
  }
  return expect.fail('failEachStep: the call never succeeded');
}

// ---- Snapshots ------------------------------------------------------------------------------------

const scratch = new TranslationOut();

/**
 * Translations of every probe -- and of both ends, the middle and the next page of every IOAS area
 * -- through every device's RID and every PASID in use, as text.
 */
function translations(w: Observed, fds: ReturnType<typeof fdSnapshot>[]): string[] {
  const pasids = new Set<number>([NO_PASID]);
  for (const fd of fds) for (const p of fd.pasids) pasids.add(p);
  for (const dev of w.devs) for (const p of dev.attachments().keys()) pasids.add(p);
  const probes = new Set(w.probes);
  for (const fd of fds) {
    for (const o of fd.internal.objects) {
      if (o.type === 'ioas') for (const a of o.areas) for (const x of [a.iova, a.last, (a.iova + a.last) / 2n, a.last + 1n]) probes.add(x);
    }
  }
  const out: string[] = [];
  for (const dev of w.devs) {
    for (const pasid of pasids) {
      for (const iova of probes) {
        // Access 0 (QEMU's IOMMU_NONE): report the leaf's permissions instead of checking them.
        const r = w.iommu.translateInto(scratch, dev.rid, pasid, iova, 0);
        const what = r.ok ? `${r.physHi.toString(16)}:${r.physLo.toString(16)}/${r.sizeLg2}/${r.perm}` : FAULT_REASONS[r.reason];
        out.push(`${dev.bdf}#${pasid}@${iova.toString(16)} ${what}`);
      }
    }
  }
  return out;
}

/** An FD through its public calls, plus the internals (users counts, reserved and next IDs, areas). */
function fdSnapshot(fd: IommuFd) {
  const ioasIds = fd.objects().filter((o) => o.type === 'ioas').map((o) => o.id);
  return {
    objects: fd.objects(),
    pasids: fd.pasids(),
    ranges: fd.closed ? [] : ioasIds.map((id) => fd.ioasIovaRanges(id)),
    internal: fdView(fd),
  };
}

/**
 * The object graph `Iommu.snapshot()` saves (src/snapshot/save.ts: every object type with its
 * state -- user/nested HWPTs and their parents, dirty-tracking enables, access pins, fault-queue
 * requests and cookies, page responses, reserved ranges and alignments), minus the allocators'
 * bookkeeping: a failed creation frees its reserved ID and domain slot again, which leaves the
 * next ID and domain the same but may reorder the free lists (`fdView.nextId` checks the IDs).
 */
function graphOf(w: Observed) {
  const { domains: _domains, ...graph } = captureGraph(engineOf(w.iommu));
  return { ...graph, fds: graph.fds.map(({ next: _next, freed: _freed, ...fd }) => fd) };
}

/** What `observe` looks at: an engine, the FDs and devices to report, and IOVAs to translate. */
export interface Observed {
  iommu: Iommu;
  fds: readonly IommuFd[];
  devs: readonly DeviceFd[];
  probes: Iterable<bigint>;
}

/**
 * Everything observable about an engine, the one state capture of the tests (err.*, fail_nth, the
 * bad-input matrix): page-pool and domain counters (`testing.poolState`, minus the pool top and
 * memory size, which only grow, and the spare tables, a cache of emptied tables that a failed map
 * may leave larger: assembly/spare.ts); per FD its objects, PASIDs and IOVA ranges plus `testing.fdView`'s
 * internals (areas, allowed lists, users counts, the next ID); per device its device ID and
 * attachments; the saved object graph (`graphOf`); and translations (`translations`). The fault
 * log is drained, so observing leaves no trace in it.
 */
export function observe(w: Observed) {
  const { poolTop: _top, memoryBytes: _bytes, sparePages: _spare, ...pool } = poolState(w.iommu);
  const fds = w.fds.map(fdSnapshot);
  const state = {
    pool,
    fds,
    devices: w.devs.map((d) => ({ bdf: d.bdf, devId: d.devId, attachments: [...d.attachments()].sort((a, b) => a[0] - b[0]) })),
    graph: graphOf(w),
    translations: translations(w, fds),
  };
  w.iommu.faults.drain();
  return state;
}

/** `observe` for the engine of `subject` (an Iommu, FD, device, access or fault FD made through the helpers). */
export function snapshot(subject: object) {
  return observe(requireWorld(subject));
}

// ---- ok / err ---------------------------------------------------------------------------------------

/** Runs `fn`, returning what it threw (undefined if it returned). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** Asserts `fn` throws an IommuError with `errno` (no state check: for engine creation and sweeps). */
/** The errno `fn` throws, or 'success'; anything but an IommuError is rethrown. */
export function errnoOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e.errno;
    throw e;
  }
  return 'success';
}

export function expectErrno(errno: Errno, fn: () => unknown): IommuError {
  const e = thrown(fn);
  expect(e, `expected ${errno}, got ${e === undefined ? 'success' : String(e)}`).toBeInstanceOf(IommuError);
  expect((e as IommuError).errno, (e as IommuError).message).toBe(errno);
  expect((e as IommuError).code).toBeGreaterThan(0);
  return e as IommuError;
}

/** The commands, each taking its subject (engine, FD or device) first. */
const commands = {
  open: (iommu: Iommu) => track(requireWorld(iommu), requireWorld(iommu).fds, iommu.open()),
  addDevice: (iommu: Iommu, opts: DeviceOptions) => track(requireWorld(iommu), requireWorld(iommu).devs, iommu.addDevice(opts)),
  close: (fd: IommuFd) => fd.close(),
  ioasAlloc: (fd: IommuFd) => fd.ioasAlloc(),
  ioasMap: (fd: IommuFd, ioas: number, args: MapArgs) => fd.ioasMap(ioas, args),
  ioasUnmap: (fd: IommuFd, ioas: number, iova: bigint | number, length: bigint | number) => fd.ioasUnmap(ioas, iova, length),
  ioasMapBatch: (fd: IommuFd, ioas: number, batch: MapBatch) => fd.ioasMapBatch(ioas, batch),
  ioasUnmapBatch: (fd: IommuFd, ioas: number, batch: UnmapBatch) => fd.ioasUnmapBatch(ioas, batch),
  ioasCopy: (fd: IommuFd, args: CopyArgs) => fd.ioasCopy(args),
  ioasIovaRanges: (fd: IommuFd, ioas: number) => fd.ioasIovaRanges(ioas),
  ioasAllowIovas: (fd: IommuFd, ioas: number, ranges: IoRange[]) => fd.ioasAllowIovas(ioas, ranges),
  pasidAlloc: (fd: IommuFd, opts?: { pasid?: number }) => fd.pasidAlloc(opts),
  pasidFree: (fd: IommuFd, pasid: number) => fd.pasidFree(pasid),
  hwptAlloc: (fd: IommuFd, args: HwptAllocArgs | HwptUserArgs) => fd.hwptAlloc(args),
  hwptInvalidate: (fd: IommuFd, hwpt: number, entries: InvalidateEntry[]) => fd.hwptInvalidate(hwpt, entries),
  hwptSetDirtyTracking: (fd: IommuFd, hwpt: number, enable: boolean) => fd.hwptSetDirtyTracking(hwpt, enable),
  hwptGetDirtyBitmap: (fd: IommuFd, hwpt: number, args: Parameters<IommuFd['hwptGetDirtyBitmap']>[1]) => fd.hwptGetDirtyBitmap(hwpt, args),
  accessCreate: (fd: IommuFd, ioas: number, opts?: { onUnmap?: UnmapCallback }) => {
    const access = fd.accessCreate(ioas, opts);
    worlds.set(access, requireWorld(fd));
    return access;
  },
  accessRead: (access: IoasAccess, iova: bigint | number, dst: Uint8Array) => access.read(iova, dst),
  accessWrite: (access: IoasAccess, iova: bigint | number, src: Uint8Array) => access.write(iova, src),
  accessPin: (access: IoasAccess, iova: bigint | number, length: bigint | number) => access.pin(iova, length),
  accessUnpin: (access: IoasAccess, iova: bigint | number, length: bigint | number) => access.unpin(iova, length),
  faultQueueAlloc: (fd: IommuFd) => {
    const queue = fd.faultQueueAlloc();
    worlds.set(queue.fd, requireWorld(fd));
    return queue;
  },
  faultRead: (faultFd: FaultQueueFd, max?: number) => faultFd.read(max),
  faultPoll: (faultFd: FaultQueueFd) => faultFd.poll(),
  faultWrite: (faultFd: FaultQueueFd, responses: PageResponseArgs[]) => faultFd.write(responses),
  faultClose: (faultFd: FaultQueueFd) => faultFd.close(),
  destroy: (fd: IommuFd, id: number) => fd.destroy(id),
  bind: (dev: DeviceFd, fd: IommuFd) => dev.bind(fd),
  attach: (dev: DeviceFd, ptId: number, opts?: { pasid?: number }) => dev.attach(ptId, opts),
  detach: (dev: DeviceFd, opts?: { pasid?: number }) => dev.detach(opts),
  unbind: (dev: DeviceFd) => dev.unbind(),
  batch: (iommu: Iommu, capacity: number) => iommu.batch(capacity),
  translatorHandle: (iommu: Iommu, opts?: { batchCapacity?: number }) => iommu.translatorHandle(opts),
  translatorRelease: (iommu: Iommu, handle: TranslatorHandle) => iommu.translatorRelease(handle),
  snapshot: (iommu: Iommu) => iommu.snapshot(),
  /** Test op (IOMMU_TEST_OP_ADD_RESERVED): reserves `[start, start+length)` in an IOAS. */
  addReserved: (fd: IommuFd, ioas: number, start: bigint, length: bigint) =>
    ioasObject(fd, ioas).iopt.addReserved('addReserved', TEST_RESERVATION, [{ start, last: start + length - 1n }]),
};

type Commands = typeof commands;

/** The names of the commands (test/commands.test.ts matches them against the public classes). */
export const COMMANDS: readonly string[] = Object.keys(commands);

/** `ok.X(...args)`: runs command X, fails the test unless it succeeds, returns its result. */
export const ok = Object.fromEntries(
  Object.entries(commands).map(([name, fn]) => [name, (...args: unknown[]) => {
    try {
      return (fn as (...a: unknown[]) => unknown)(...args);
    } catch (e) {
      if (e instanceof IommuError) expect.fail(`${name}: expected success, got ${e.message}`);
      throw e;
    }
  }]),
) as Commands;

/** `err.X(errno, ...args)`: command X must fail with `errno` and leave every engine it touches unchanged. */
export const err = Object.fromEntries(
  Object.entries(commands).map(([name, fn]) => [name, (errno: Errno, ...args: unknown[]) => {
    const touched = [...new Set(args.map((a) => (typeof a === 'object' && a !== null ? worldOf(a) : undefined)))]
      .filter((w): w is World => w !== undefined);
    if (touched.length === 0) expect.fail(`err.${name}: no argument was made through the helpers`);
    const before = touched.map((w) => snapshot(w.iommu));
    const e = expectErrno(errno, () => (fn as (...a: unknown[]) => unknown)(...args));
    expect(touched.map((w) => snapshot(w.iommu)), `${name} failed with ${errno} but changed the state`).toEqual(before);
    return e;
  }]),
) as { [K in keyof Commands]: (errno: Errno, ...args: Parameters<Commands[K]>) => IommuError };

// ---- Translation checks --------------------------------------------------------------------------

/** Asserts that `iova` of (rid, pasid) translates to `phys` with leaf permissions `perm`. */
export function expectMapped(iommu: Iommu, dev: DeviceFd, iova: bigint, phys: bigint, opts: { pasid?: number; perm?: number } = {}): void {
  const t = iommu.translate(dev.rid, opts.pasid ?? NO_PASID, iova, 0);
  expect(t, `translation of ${iova.toString(16)}`).toMatchObject({ ok: true, phys, perm: opts.perm ?? (Access.Read | Access.Write) });
}

/** Asserts that `iova` of (rid, pasid) faults with `reason`. */
export function expectFault(iommu: Iommu, dev: DeviceFd, iova: bigint, reason: string, pasid: number = NO_PASID): void {
  const t = iommu.translate(dev.rid, pasid, iova, Access.Read);
  expect(t.ok, `translation of ${iova.toString(16)} should fault`).toBe(false);
  expect(t.fault?.reason).toBe(reason);
}

// ---- Topologies (the selftest's fixture variants) -------------------------------------------------

export interface Topology {
  name: string;
  /** addDevice options of each mock device, minus the BDF. */
  devices: Omit<DeviceOptions, 'bdf'>[];
}

export const NO_DEVICE: Topology = { name: 'no device', devices: [] };
export const ONE_DEVICE: Topology = { name: 'one device', devices: [{}] };
export const TWO_DEVICES: Topology = { name: 'two devices', devices: [{}, {}] };
/** iommufd_device_pasid's `no_pasid` variant: a PASID-capable device and one without PASIDs. */
export const PASID_AND_NO_PASID: Topology = { name: 'PASID + non-PASID device', devices: [{ pasidBits: 20 }, { pasidBits: 0 }] };
export const TOPOLOGIES = [NO_DEVICE, ONE_DEVICE, TWO_DEVICES, PASID_AND_NO_PASID];

/** BDF of the `i`th test device (00:01.0, 00:02.0, ...). */
export function bdf(i: number): string {
  return `0000:00:${(i + 1).toString(16).padStart(2, '0')}.0`;
}

/** The selftest's iommufd_ioas fixture: an FD, one IOAS, and each mock device bound and attached to it. */
export interface IoasFixture {
  iommu: Iommu;
  fd: IommuFd;
  ioas: number;
  devs: DeviceFd[];
  devIds: number[];
  /** The (auto) HWPT each device got by attaching to the IOAS. */
  hwptIds: number[];
  /** Where mappings go: 0 without a device, APSTART with one (the selftest's `base`). */
  base: bigint;
}

export function ioasFixture(topology: Topology): IoasFixture {
  const iommu = makeIommu();
  const fd = ok.open(iommu);
  const ioas = ok.ioasAlloc(fd);
  const devs = topology.devices.map((d, i) => ok.addDevice(iommu, { bdf: bdf(i), ...d }));
  const devIds = devs.map((d) => ok.bind(d, fd));
  const hwptIds = devs.map((d) => ok.attach(d, ioas));
  return { iommu, fd, ioas, devs, devIds, hwptIds, base: devs.length > 0 ? APSTART : 0n };
}

/** Asserts what every device of `f` sees at `iova` through its RID: output address `phys` (RW), or a fault reason. */
export function expectSeenByAll(f: IoasFixture, iova: bigint, expected: bigint | string): void {
  for (const dev of f.devs) {
    if (typeof expected === 'bigint') expectMapped(f.iommu, dev, iova, expected);
    else expectFault(f.iommu, dev, iova, expected);
  }
}
