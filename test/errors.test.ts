// The bad-input matrix (after noble-hashes' errors.test.ts): every public method × wrong values —
// NaN, ±Infinity, negatives, fractions, values ≥ 2^64, unsafe integers, strings/objects/null/
// symbols where numbers go, unaligned and zero lengths, iova+length overflow, IDs from another FD,
// destroyed IDs, wrong object types, a closed FD, absurd counts — each must throw an IommuError
// with its documented errno (TSDoc @throws, src/base/args.ts: wrong type/NaN/fraction/negative = EINVAL,
// ≥ 2^64 = EOVERFLOW, closed FD = EBADF) and leave every observable state as it was. The DMA path
// (translate, translateInto, batch, dmaRead/dmaWrite) never throws: bad values are a fault value.
import { describe, expect, test } from 'vitest';
import { Access, ERRNO, FAULT_REASONS, Iommu, IommuError, NO_PASID, TranslationOut, type DeviceFd, type Errno, type IommuFd } from '../src/index';
import * as testing from './testing';
import { observe } from './helpers';

const K = 4096n;
const U64_MAX = (1n << 64n) - 1n;

/** A wrong value for a slot, described, and the errno it must give. */
type Bad = [desc: string, value: unknown, errno: Errno];

/** Wrong values for an address, length or other u64 slot (src/base/args.ts u64). */
const BAD_U64: Bad[] = [
  ['NaN', Number.NaN, 'EINVAL'], ['Infinity', Infinity, 'EINVAL'], ['-Infinity', -Infinity, 'EINVAL'],
  ['-1', -1, 'EINVAL'], ['-1n', -1n, 'EINVAL'], ['-(2^64)', -(2n ** 64n), 'EINVAL'], ['0.5', 0.5, 'EINVAL'], ['4096.5', 4096.5, 'EINVAL'],
  ['unsafe 2^53', 2 ** 53, 'EINVAL'], ['string', '4096', 'EINVAL'], ['object', {}, 'EINVAL'], ['array', [4096], 'EINVAL'],
  ['null', null, 'EINVAL'], ['true', true, 'EINVAL'], ['symbol', Symbol('x'), 'EINVAL'], ['function', () => 4096, 'EINVAL'],
  ['2^64 bigint', 2n ** 64n, 'EOVERFLOW'], ['2^100 bigint', 2n ** 100n, 'EOVERFLOW'], ['2^64 number', 2 ** 64, 'EOVERFLOW'], ['1e300', 1e300, 'EOVERFLOW'],
];
/** The same for a required slot: undefined too. */
const BAD_U64_REQUIRED: Bad[] = [...BAD_U64, ['undefined', undefined, 'EINVAL']];

/** Wrong object IDs: wrong types are EINVAL, integers that name nothing ENOENT (iommufd). */
const BAD_ID_TYPE: Bad[] = [
  ['NaN', Number.NaN, 'EINVAL'], ['Infinity', Infinity, 'EINVAL'], ['1.5', 1.5, 'EINVAL'], ['string', '1', 'EINVAL'],
  ['bigint', 1n, 'EINVAL'], ['null', null, 'EINVAL'], ['object', {}, 'EINVAL'], ['undefined', undefined, 'EINVAL'], ['symbol', Symbol('id'), 'EINVAL'],
];
const UNKNOWN_IDS: [string, number][] = [['0', 0], ['-1', -1], ['2^31', 2 ** 31], ['2^53', 2 ** 53], ['99', 99]];

/** Not an options object, and an unknown key. */
const BAD_OPTIONS: Bad[] = [
  ['number', 5, 'EINVAL'], ['string', 'x', 'EINVAL'], ['null', null, 'EINVAL'], ['array', [], 'EINVAL'], ['true', true, 'EINVAL'],
  ['unknown key', { bogus: 1 }, 'EOPNOTSUPP'],
];
const BAD_FLAG: Bad[] = [['1', 1, 'EINVAL'], ["'true'", 'true', 'EINVAL'], ['null', null, 'EINVAL'], ['object', {}, 'EINVAL']];
/** Wrong PASID values (integers in a range). */
const BAD_PASID: Bad[] = [
  ['-1', -1, 'EINVAL'], ['1.5', 1.5, 'EINVAL'], ['NaN', Number.NaN, 'EINVAL'], ['Infinity', Infinity, 'EINVAL'], ['string', '1', 'EINVAL'],
  ['null', null, 'EINVAL'], ['2^20', 2 ** 20, 'EINVAL'], ['2^32', 2 ** 32, 'EINVAL'], ['2^64n', 2n ** 64n, 'EINVAL'],
];
/** Wrong counts (capacities, option sizes). */
const BAD_COUNT: Bad[] = [
  ['0', 0, 'EINVAL'], ['-1', -1, 'EINVAL'], ['1.5', 1.5, 'EINVAL'], ['NaN', Number.NaN, 'EINVAL'], ['Infinity', Infinity, 'EINVAL'],
  ['string', '8', 'EINVAL'], ['null', null, 'EINVAL'], ['2^21', 2 ** 21, 'EINVAL'], ['2^53', 2 ** 53, 'EINVAL'],
];

/** The fixture every case runs against (fresh per case, so a case cannot leak into another). */
interface F {
  iommu: Iommu;
  a: IommuFd;
  b: IommuFd;
  closed: IommuFd;
  ioas: number;
  ioas2: number;
  hwpt: number;
  devId: number;
  destroyed: number;
  /** An ID that exists in B only. */
  bOnly: number;
  bIoas: number;
  dev: DeviceFd;
  devB: DeviceFd;
  noPasidDev: DeviceFd;
  unbound: DeviceFd;
  pasid: number;
  freePasid: number;
  pasidB: number;
  otherFd: IommuFd;
  devs: DeviceFd[];
}

let other: Iommu | undefined;

function fixture(): F {
  const iommu = Iommu.createSync({ translators: 2, iotlbEntries: 64, pasidBits: 8, maxMemoryBytes: 16 * 2 ** 20 });
  const a = iommu.open();
  const b = iommu.open();
  const closed = iommu.open();
  closed.ioasAlloc();
  closed.close();
  const ioas = a.ioasAlloc();
  const dev = iommu.addDevice({ bdf: '00:01.0', reservedRegions: [{ start: 0xfee0_0000n, last: 0xfeef_ffffn }] });
  const devId = dev.bind(a);
  const hwpt = a.hwptAlloc({ devId, ptId: ioas, pasid: true });
  dev.attach(hwpt);
  a.ioasMap(ioas, { iova: 0x10_0000, length: 4n * K, phys: 0x20_0000 });
  a.ioasMap(ioas, { iova: 0x20_0000, length: K, phys: 0x30_0000, write: false });
  const ioas2 = a.ioasAlloc();
  const pasid = a.pasidAlloc();
  dev.attach(hwpt, { pasid });
  const freePasid = a.pasidAlloc();
  const bIoas = b.ioasAlloc();
  for (let i = 0; i < 8; i++) b.ioasAlloc();
  const bOnly = 9; // B holds 1..9, A holds 1..5 (6 destroyed)
  const devB = iommu.addDevice({ bdf: '00:02.0' });
  devB.bind(b);
  const pasidB = b.pasidAlloc();
  const noPasidDev = iommu.addDevice({ bdf: '00:04.0', pasidBits: 0 });
  noPasidDev.bind(a);
  const destroyed = a.ioasAlloc(); // the highest ID of A, so nothing reuses it
  a.destroy(destroyed);
  const unbound = iommu.addDevice({ bdf: '00:03.0' });
  other ??= Iommu.createSync({ translators: 2, iotlbEntries: 16, maxMemoryBytes: 8 * 2 ** 20 });
  return {
    iommu, a, b, closed, ioas, ioas2, hwpt, devId, destroyed, bOnly, bIoas, dev, devB, noPasidDev, unbound, pasid, freePasid, pasidB,
    otherFd: other.open(), devs: [dev, devB, noPasidDev, unbound],
  };
}

/** Everything observable (helpers.ts `observe`), probing a few IOVAs inside and around the mappings. */
function snapshot(f: F) {
  return observe({ iommu: f.iommu, fds: [f.a, f.b, f.closed], devs: f.devs, probes: [0x10_0000n, 0x10_3fffn, 0x20_0000n, 0x40_0000n] });
}

type Case = [label: string, call: (f: F) => unknown, errno: Errno];
const cases: Case[] = [];
const add = (label: string, errno: Errno, call: (f: F) => unknown): void => void cases.push([label, call, errno]);

// ---- address/length slots ---------------------------------------------------------------------
const mapArgs = (f: F, over: Record<string, unknown>): unknown => f.a.ioasMap(f.ioas, { iova: 0x80_0000, length: K, phys: 0x50_0000, ...over } as never);
for (const [d, v, e] of BAD_U64) add(`ioasMap iova ${d}`, e, (f) => mapArgs(f, { iova: v }));
for (const [d, v, e] of BAD_U64_REQUIRED) add(`ioasMap length ${d}`, e, (f) => mapArgs(f, { length: v }));
for (const [d, v, e] of BAD_U64_REQUIRED) add(`ioasMap phys ${d}`, e, (f) => mapArgs(f, { phys: v }));
for (const [d, v, e] of BAD_U64_REQUIRED) add(`ioasUnmap iova ${d}`, e, (f) => f.a.ioasUnmap(f.ioas, v as bigint, K));
for (const [d, v, e] of BAD_U64_REQUIRED) add(`ioasUnmap length ${d}`, e, (f) => f.a.ioasUnmap(f.ioas, 0x10_0000, v as bigint));
const copyArgs = (f: F, over: Record<string, unknown>): unknown =>
  f.a.ioasCopy({ dstIoas: f.ioas2, srcIoas: f.ioas, srcIova: 0x10_0000, length: K, dstIova: 0x90_0000, ...over } as never);
for (const [d, v, e] of BAD_U64_REQUIRED) add(`ioasCopy srcIova ${d}`, e, (f) => copyArgs(f, { srcIova: v }));
for (const [d, v, e] of BAD_U64_REQUIRED) add(`ioasCopy length ${d}`, e, (f) => copyArgs(f, { length: v }));
for (const [d, v, e] of BAD_U64) add(`ioasCopy dstIova ${d}`, e, (f) => copyArgs(f, { dstIova: v }));
for (const [d, v, e] of BAD_U64_REQUIRED) add(`ioasAllowIovas start ${d}`, e, (f) => f.a.ioasAllowIovas(f.ioas, [{ start: v as bigint, last: 0x100_0000n }]));
for (const [d, v, e] of BAD_U64_REQUIRED) add(`ioasAllowIovas last ${d}`, e, (f) => f.a.ioasAllowIovas(f.ioas, [{ start: 0x100_0000n, last: v as bigint }]));
for (const [d, v, e] of BAD_U64_REQUIRED) add(`addDevice reservedRegions start ${d}`, e, (f) => f.iommu.addDevice({ bdf: '00:09.0', reservedRegions: [{ start: v as bigint, last: 0x1000n }] }));
for (const [d, v, e] of BAD_U64_REQUIRED) add(`addDevice reservedRegions last ${d}`, e, (f) => f.iommu.addDevice({ bdf: '00:09.0', reservedRegions: [{ start: 0n, last: v as bigint }] }));

// ---- semantic address errors (the IOAS has a domain: alignment 4 KiB) ------------------------------
add('ioasMap zero length', 'EINVAL', (f) => mapArgs(f, { length: 0 }));
add('ioasMap unaligned length', 'EINVAL', (f) => mapArgs(f, { length: 100 }));
add('ioasMap unaligned iova', 'EINVAL', (f) => mapArgs(f, { iova: 0x80_0001 }));
add('ioasMap unaligned phys', 'EINVAL', (f) => mapArgs(f, { phys: 0x50_0010 }));
add('ioasMap auto, unaligned phys', 'EINVAL', (f) => mapArgs(f, { iova: undefined, phys: 0x50_0010 }));
add('ioasMap iova + length wraps', 'EOVERFLOW', (f) => mapArgs(f, { iova: U64_MAX - K + 1n, length: 2n * K }));
add('ioasMap phys + length wraps', 'EOVERFLOW', (f) => mapArgs(f, { phys: U64_MAX - K + 1n, length: 2n * K }));
add('ioasMap iova = 2^64-1', 'EOVERFLOW', (f) => mapArgs(f, { iova: U64_MAX }));
add('ioasMap length = 2^64-1', 'EOVERFLOW', (f) => mapArgs(f, { length: U64_MAX }));
add('ioasMap auto, length ≥ 2^63', 'EOVERFLOW', (f) => mapArgs(f, { iova: undefined, length: 1n << 63n }));
add('ioasMap beyond the address width (reserved)', 'EINVAL', (f) => mapArgs(f, { iova: 1n << 48n }));
add('ioasMap on a device reserved region', 'EINVAL', (f) => mapArgs(f, { iova: 0xfee0_0000 }));
add('ioasMap overlapping', 'EEXIST', (f) => mapArgs(f, { iova: 0x10_3000, length: 2n * K }));
add('ioasMap output beyond 52 bits', 'ERANGE', (f) => mapArgs(f, { phys: 1n << 52n }));
add('ioasMap no permission', 'EINVAL', (f) => mapArgs(f, { read: false, write: false }));
add('ioasUnmap zero length', 'EINVAL', (f) => f.a.ioasUnmap(f.ioas, 0x10_0000, 0));
add('ioasUnmap iova + length wraps', 'EOVERFLOW', (f) => f.a.ioasUnmap(f.ioas, U64_MAX - K + 1n, 2n * K));
add('ioasUnmap iova = 2^64-1', 'EOVERFLOW', (f) => f.a.ioasUnmap(f.ioas, U64_MAX, 1));
add('ioasUnmap length = 2^64-1 from 1', 'EOVERFLOW', (f) => f.a.ioasUnmap(f.ioas, 1, U64_MAX));
add('ioasUnmap partial', 'ENOENT', (f) => f.a.ioasUnmap(f.ioas, 0x10_1000, K));
add('ioasUnmap nothing there', 'ENOENT', (f) => f.a.ioasUnmap(f.ioas, 0x70_0000, K));
add('ioasCopy zero length', 'EINVAL', (f) => copyArgs(f, { length: 0 }));
add('ioasCopy src + length wraps', 'EOVERFLOW', (f) => copyArgs(f, { srcIova: U64_MAX - K + 1n, length: 2n * K }));
add('ioasCopy source hole', 'ENOENT', (f) => copyArgs(f, { length: 8n * K }));
add('ioasCopy writable from read-only', 'EPERM', (f) => copyArgs(f, { srcIova: 0x20_0000 }));
add('ioasCopy no permission', 'EINVAL', (f) => copyArgs(f, { read: false, write: false }));
add('ioasAllowIovas start = last', 'EINVAL', (f) => f.a.ioasAllowIovas(f.ioas, [{ start: 0x1000n, last: 0x1000n }]));
add('ioasAllowIovas start > last', 'EINVAL', (f) => f.a.ioasAllowIovas(f.ioas, [{ start: 0x2000n, last: 0x1000n }]));
add('ioasAllowIovas overlapping', 'EINVAL', (f) => f.a.ioasAllowIovas(f.ioas, [{ start: 0x1000n, last: 0x3000n }, { start: 0x3000n, last: 0x4000n }]));
add('ioasAllowIovas on reserved', 'EADDRINUSE', (f) => f.a.ioasAllowIovas(f.ioas, [{ start: 0xfe00_0000n, last: 0xfeff_ffffn }]));
for (const [d, v] of [['not an array', 5], ['object', {}], ['null', null], ['string', 'x']] as const) {
  add(`ioasAllowIovas ranges ${d}`, 'EINVAL', (f) => f.a.ioasAllowIovas(f.ioas, v as never));
}
for (const [d, v, e] of BAD_OPTIONS) add(`ioasAllowIovas range entry ${d}`, e, (f) => f.a.ioasAllowIovas(f.ioas, [v as never]));

// ---- IDs ---------------------------------------------------------------------------------------
type IdSlot = [name: string, call: (f: F, id: unknown) => unknown, missing: Errno, wrongType: Errno | undefined];
const idSlots: IdSlot[] = [
  ['ioasMap ioasId', (f, id) => f.a.ioasMap(id as number, { iova: 0x80_0000, length: K, phys: 0x50_0000 }), 'ENOENT', 'ENOENT'],
  ['ioasUnmap ioasId', (f, id) => f.a.ioasUnmap(id as number, 0x10_0000, 4n * K), 'ENOENT', 'ENOENT'],
  ['ioasIovaRanges ioasId', (f, id) => f.a.ioasIovaRanges(id as number), 'ENOENT', 'ENOENT'],
  ['ioasAllowIovas ioasId', (f, id) => f.a.ioasAllowIovas(id as number, []), 'ENOENT', 'ENOENT'],
  ['ioasCopy srcIoas', (f, id) => f.a.ioasCopy({ dstIoas: f.ioas2, srcIoas: id as number, srcIova: 0x10_0000, length: K }), 'ENOENT', 'ENOENT'],
  ['ioasCopy dstIoas', (f, id) => f.a.ioasCopy({ dstIoas: id as number, srcIoas: f.ioas, srcIova: 0x10_0000, length: K }), 'ENOENT', 'ENOENT'],
  ['hwptAlloc devId', (f, id) => f.a.hwptAlloc({ devId: id as number, ptId: f.ioas }), 'ENOENT', 'ENOENT'],
  // iommufd: a pt_id that names nothing, or the wrong type, is EINVAL for HWPT_ALLOC.
  ['hwptAlloc ptId', (f, id) => f.a.hwptAlloc({ devId: f.devId, ptId: id as number }), 'EINVAL', 'EINVAL'],
  ['destroy id', (f, id) => f.a.destroy(id as number), 'ENOENT', undefined],
  ['attach ptId', (f, id) => f.dev.attach(id as number), 'ENOENT', 'EINVAL'],
  ['accessCreate ioasId', (f, id) => f.a.accessCreate(id as number), 'ENOENT', 'ENOENT'],
];
for (const [name, call, missing, wrongType] of idSlots) {
  for (const [d, v, e] of BAD_ID_TYPE) add(`${name} ${d}`, e, (f) => call(f, v));
  for (const [d, v] of UNKNOWN_IDS) add(`${name} unknown ${d}`, missing, (f) => call(f, v));
  add(`${name} destroyed ID`, missing, (f) => call(f, f.destroyed));
  add(`${name} ID of another FD`, missing, (f) => call(f, f.bOnly));
  // The device object (ID devId) is never an IOAS or a HWPT.
  if (wrongType) add(`${name} wrong object type`, wrongType, (f) => call(f, name.startsWith('hwptAlloc devId') ? f.ioas : f.devId));
}
add('destroy a bound device', 'EBUSY', (f) => f.a.destroy(f.devId));
add('destroy an attached HWPT', 'EBUSY', (f) => f.a.destroy(f.hwpt));
add('destroy an IOAS with a HWPT', 'EBUSY', (f) => f.a.destroy(f.ioas));

// ---- options and flags -------------------------------------------------------------------------
for (const [d, v, e] of BAD_OPTIONS) {
  add(`ioasMap args ${d}`, e, (f) => f.a.ioasMap(f.ioas, v as never));
  add(`ioasCopy args ${d}`, e, (f) => f.a.ioasCopy(v as never));
  add(`pasidAlloc opts ${d}`, e, (f) => f.a.pasidAlloc(v as never));
  add(`hwptAlloc args ${d}`, e, (f) => f.a.hwptAlloc(v as never));
  add(`attach opts ${d}`, e, (f) => f.dev.attach(f.hwpt, v as never));
  add(`detach opts ${d}`, e, (f) => f.dev.detach(v as never));
  add(`addDevice opts ${d}`, e, (f) => f.iommu.addDevice(v as never));
  add(`accessCreate opts ${d}`, e, (f) => f.a.accessCreate(f.ioas, v as never));
  add(`Iommu.createSync opts ${d}`, e, () => Iommu.createSync(v as never));
  add(`translatorHandle opts ${d}`, e, (f) => f.iommu.translatorHandle(v as never));
}
for (const [d, v, e] of BAD_FLAG) {
  add(`ioasMap read ${d}`, e, (f) => mapArgs(f, { read: v }));
  add(`ioasMap write ${d}`, e, (f) => mapArgs(f, { write: v }));
  add(`ioasCopy write ${d}`, e, (f) => copyArgs(f, { write: v }));
  add(`hwptAlloc pasid ${d}`, e, (f) => f.a.hwptAlloc({ devId: f.devId, ptId: f.ioas, pasid: v as boolean }));
  add(`hwptAlloc nestParent ${d}`, e, (f) => f.a.hwptAlloc({ devId: f.devId, ptId: f.ioas, nestParent: v as boolean }));
  add(`addDevice pri ${d}`, e, (f) => f.iommu.addDevice({ bdf: '00:09.0', pri: v as boolean }));
  add(`Iommu.createSync shared ${d}`, e, () => Iommu.createSync({ shared: v as boolean }));
}
add('hwptAlloc dirtyTracking', 'EOPNOTSUPP', (f) => f.a.hwptAlloc({ devId: f.devId, ptId: f.ioas, dirtyTracking: true }));
add('accessCreate onUnmap not a function', 'EINVAL', (f) => f.a.accessCreate(f.ioas, { onUnmap: 5 as never }));

// ---- PASIDs ------------------------------------------------------------------------------------
for (const [d, v, e] of BAD_PASID) {
  add(`pasidAlloc pasid ${d}`, e, (f) => f.a.pasidAlloc({ pasid: v as number }));
  add(`pasidFree ${d}`, d.startsWith('2^20') ? 'ENOENT' : e, (f) => f.a.pasidFree(v as number));
  add(`attach pasid ${d}`, e, (f) => f.dev.attach(f.hwpt, { pasid: v as number }));
  add(`detach pasid ${d}`, e, (f) => f.dev.detach({ pasid: v as number }));
}
add('pasidAlloc pasid 0 (NO_PASID)', 'EINVAL', (f) => f.a.pasidAlloc({ pasid: 0 }));
add('pasidAlloc pasid beyond the IOMMU width', 'EINVAL', (f) => f.a.pasidAlloc({ pasid: 256 }));
add("pasidAlloc another FD's PASID", 'EEXIST', (f) => f.a.pasidAlloc({ pasid: f.pasidB }));
add("pasidFree another FD's PASID", 'ENOENT', (f) => f.a.pasidFree(f.pasidB));
add('pasidFree an unallocated PASID', 'ENOENT', (f) => f.a.pasidFree(77));
add('pasidFree an attached PASID', 'EBUSY', (f) => f.a.pasidFree(f.pasid));
add('attach an unallocated PASID', 'EPERM', (f) => f.dev.attach(f.hwpt, { pasid: 77 }));
add("attach another FD's PASID (the seed's EPERM)", 'EPERM', (f) => f.dev.attach(f.hwpt, { pasid: f.pasidB }));
add('attach a PASID of a device without PASIDs', 'EINVAL', (f) => f.noPasidDev.attach(f.hwpt, { pasid: f.freePasid }));
add('attach a PASID to an IOAS', 'EINVAL', (f) => f.dev.attach(f.ioas, { pasid: f.freePasid }));
add('attach RID to a non-PASID HWPT with PASIDs attached', 'EINVAL', (f) => f.dev.attach(f.ioas2));

// ---- devices and FDs ---------------------------------------------------------------------------
for (const [d, v] of [['number', 5], ['malformed', 'zz:00.0'], ['function 8', '00:00.8'], ['device 32', '00:20.0'], ['segment 1', '0001:00:01.0'], ['empty', ''], ['undefined', undefined]] as const) {
  add(`addDevice bdf ${d}`, 'EINVAL', (f) => f.iommu.addDevice({ bdf: v as string }));
}
for (const [d, v, e] of [...BAD_PASID.filter(([x]) => x !== '2^20' && x !== '2^32' && x !== '2^64n'), ['beyond the IOMMU', 9, 'EINVAL']] as Bad[]) {
  add(`addDevice pasidBits ${d}`, e, (f) => f.iommu.addDevice({ bdf: '00:09.0', pasidBits: v as number }));
}
add('addDevice reservedRegions not an array', 'EINVAL', (f) => f.iommu.addDevice({ bdf: '00:09.0', reservedRegions: 5 as never }));
add('addDevice reservedRegions start > last', 'EINVAL', (f) => f.iommu.addDevice({ bdf: '00:09.0', reservedRegions: [{ start: 5n, last: 4n }] }));
add('addDevice duplicate RID', 'EEXIST', (f) => f.iommu.addDevice({ bdf: '0000:00:01.0' }));
for (const [d, v] of [['number', 5], ['object', {}], ['null', null], ['an Iommu', 'iommu']] as const) {
  add(`bind ${d}`, 'EINVAL', (f) => f.unbound.bind((v === 'iommu' ? f.iommu : v) as never));
}
add('bind a closed FD', 'EBADF', (f) => f.unbound.bind(f.closed));
add("bind another Iommu's FD", 'EINVAL', (f) => f.unbound.bind(f.otherFd));
add('bind twice', 'EINVAL', (f) => f.dev.bind(f.b));
add('unbind an unbound device', 'EINVAL', (f) => f.unbound.unbind());
add('attach an unbound device', 'EINVAL', (f) => f.unbound.attach(1));
add('detach an unbound device', 'EINVAL', (f) => f.unbound.detach());

// ---- a closed FD: EBADF for every call, whatever the arguments ----------------------------------
const onClosed: [string, (fd: IommuFd, f: F) => unknown][] = [
  ['ioasAlloc', (fd) => fd.ioasAlloc()],
  ['ioasMap', (fd) => fd.ioasMap(1, { iova: 0x1000, length: K, phys: 0 })],
  ['ioasMap with bad args', (fd) => fd.ioasMap(Number.NaN, 5 as never)],
  ['ioasUnmap', (fd) => fd.ioasUnmap(1, 0, U64_MAX)],
  ['ioasUnmap with bad args', (fd) => fd.ioasUnmap('x' as never, -1, Number.NaN)],
  ['ioasCopy', (fd) => fd.ioasCopy({ dstIoas: 1, srcIoas: 1, srcIova: 0, length: K })],
  ['ioasCopy with bad args', (fd) => fd.ioasCopy(null as never)],
  ['ioasIovaRanges', (fd) => fd.ioasIovaRanges(1)],
  ['ioasAllowIovas', (fd) => fd.ioasAllowIovas(1, [])],
  ['ioasAllowIovas with bad args', (fd) => fd.ioasAllowIovas(1, 5 as never)],
  ['pasidAlloc', (fd) => fd.pasidAlloc()],
  ['pasidAlloc with bad args', (fd) => fd.pasidAlloc({ bogus: 1 } as never)],
  ['pasidFree', (fd) => fd.pasidFree(1)],
  ['hwptAlloc', (fd) => fd.hwptAlloc({ devId: 1, ptId: 1 })],
  ['hwptAlloc with bad args', (fd) => fd.hwptAlloc(5 as never)],
  ['destroy', (fd) => fd.destroy(1)],
  ['accessCreate', (fd) => fd.accessCreate(1)],
  ['accessCreate with bad args', (fd) => fd.accessCreate(1, 5 as never)],
  ['faultQueueAlloc', (fd) => fd.faultQueueAlloc()],
  ['hwptInvalidate', (fd) => fd.hwptInvalidate(1, [])],
];
for (const [name, call] of onClosed) add(`closed FD: ${name}`, 'EBADF', (f) => call(f.closed, f));

// ---- counts and engine options -----------------------------------------------------------------
for (const [d, v, e] of BAD_COUNT) {
  add(`batch capacity ${d}`, e, (f) => f.iommu.batch(v as number));
  add(`translatorHandle batchCapacity ${d}`, e, (f) => f.iommu.translatorHandle({ batchCapacity: v as number }));
}
add('batch capacity 2^20 in a 16 MiB engine', 'ENOMEM', (f) => f.iommu.batch(2 ** 20));
for (const [d, v] of [['none', undefined], ['object', {}], ['number', 5], ['another engine', 'other']] as const) {
  add(`translatorRelease ${d}`, 'EINVAL', (f) => f.iommu.translatorRelease((v === 'other' ? other!.translatorHandle() : v) as never));
}
const badCreate: [string, object, Errno][] = [
  ['addressWidth 40', { addressWidth: 40 }, 'EINVAL'], ['addressWidth NaN', { addressWidth: Number.NaN }, 'EINVAL'],
  ['pasidBits 21', { pasidBits: 21 }, 'EINVAL'], ['pasidBits -1', { pasidBits: -1 }, 'EINVAL'],
  ['iotlbEntries 3', { iotlbEntries: 3 }, 'EINVAL'], ['iotlbEntries 2^21', { iotlbEntries: 2 ** 21 }, 'EINVAL'],
  ['maxMemoryBytes 1000', { maxMemoryBytes: 1000 }, 'EINVAL'], ['maxMemoryBytes 2^33', { maxMemoryBytes: 2 ** 33 }, 'EINVAL'],
  ['maxMemoryBytes too small for the layout', { maxMemoryBytes: 2 ** 20, translators: 64 }, 'EINVAL'],
  ['translators 0', { translators: 0 }, 'EINVAL'], ['translators 10^6', { translators: 1e6 }, 'EINVAL'],
  ['maxDomains 2^21', { maxDomains: 2 ** 21 }, 'EINVAL'], ['maxDomains 1', { maxDomains: 1 }, 'EINVAL'],
  ['ram.bytes unaligned', { ram: { base: 0, bytes: 100 } }, 'EINVAL'], ['ram.base unaligned', { ram: { base: 1, bytes: 4096 } }, 'EINVAL'],
  ['ram.base NaN', { ram: { base: Number.NaN, bytes: 4096 } }, 'EINVAL'], ['ram unknown key', { ram: { base: 0, bytes: 4096, x: 1 } }, 'EOPNOTSUPP'],
];
for (const [d, o, e] of badCreate) add(`Iommu.createSync ${d}`, e, () => Iommu.createSync(o as never));

describe('bad-input matrix: every public method × wrong values', () => {
  test('the matrix is large', () => {
    expect(cases.length).toBeGreaterThan(500);
  });

  test.each(cases)('%s', (_label, call, errno) => {
    const f = fixture();
    const before = snapshot(f);
    let thrown: unknown;
    try {
      call(f);
    } catch (e) {
      thrown = e;
    }
    expect(thrown, 'expected an IommuError').toBeInstanceOf(IommuError);
    const err = thrown as IommuError;
    expect(err.errno, err.message).toBe(errno);
    expect(err.code).toBe(ERRNO[errno]);
    expect(err.message).toMatch(new RegExp(`: ${errno} \\(`));
    expect(snapshot(f)).toEqual(before);
    expect(testing.guardViolations(f.iommu)).toEqual([]);
  });
});

describe('the DMA path never throws: bad values are a bad-request fault', () => {
  const badScalar: [string, unknown][] = [
    ['NaN', Number.NaN], ['Infinity', Infinity], ['-Infinity', -Infinity], ['-1', -1], ['1.5', 1.5], ['string', '1'], ['object', {}],
    ['null', null], ['undefined', undefined], ['bigint', 1n], ['symbol', Symbol('x')], ['2^32', 2 ** 32], ['2^64', 2 ** 64], ['array', [1]],
    ['throwing valueOf', { valueOf() { throw new Error('valueOf called'); } }],
  ];
  const badIova: [string, unknown][] = [
    ['NaN', Number.NaN], ['Infinity', Infinity], ['-1', -1], ['-1n', -1n], ['1.5', 1.5], ['string', '4096'], ['object', {}], ['null', null],
    ['undefined', undefined], ['2^64 bigint', 2n ** 64n], ['2^64 number', 2 ** 64], ['symbol', Symbol('x')],
    ['throwing valueOf', { valueOf() { throw new Error('valueOf called'); } }],
  ];
  type Slot = 'rid' | 'pasid' | 'iova' | 'access';
  const rows: [Slot, string, unknown][] = [
    ...(['rid', 'pasid', 'access'] as const).flatMap((s) => badScalar.map(([d, v]): [Slot, string, unknown] => [s, d, v])),
    ...badIova.map(([d, v]): [Slot, string, unknown] => ['iova', d, v]),
    ['rid', '2^16', 2 ** 16], ['pasid', '2^20', 2 ** 20], ['access', '16', 16], ['access', '0xff', 0xff],
  ];

  test.each(rows)('%s = %s', (slot, _d, v) => {
    const f = fixture();
    const before = snapshot(f);
    const args = { rid: f.dev.rid, pasid: NO_PASID, iova: 0x10_0000 as unknown, access: Access.Read as unknown };
    (args as Record<string, unknown>)[slot] = v;
    const call = [args.rid, args.pasid, args.iova, args.access] as unknown as [number, number, number, number];
    // The same request is fine with the slot restored: the fault comes from the bad value.
    expect(f.iommu.translate(f.dev.rid, NO_PASID, 0x10_0000, Access.Read).ok).toBe(true);
    f.iommu.faults.drain();

    const t = f.iommu.translate(...call);
    expect(t.ok).toBe(false);
    expect(t.fault?.reason).toBe('bad-request');
    const out = f.iommu.translateInto(new TranslationOut(), ...call);
    expect(out.ok).toBe(false);
    expect(out.reason).toBe(ioasidReason('bad-request'));
    const logged = f.iommu.faults.drain();
    expect(logged.map((r) => r.reason)).toEqual(['bad-request', 'bad-request']);

    const batch = f.iommu.batch(4);
    batch.set(0, f.dev.rid, NO_PASID, 0x10_0000, Access.Read);
    batch.set(1, ...call);
    expect(batch.run(2)).toBe(1);
    expect(batch.ok(0)).toBe(true);
    expect(batch.ok(1)).toBe(false);
    expect(batch.reason(1)).toBe(ioasidReason('bad-request'));
    if (slot !== 'access') { // DMA picks its own access bits
      const dst = new Uint8Array(16);
      expect(f.iommu.dmaRead(call[0], call[1], call[2], dst).fault?.reason).toBe('bad-request');
      expect(f.iommu.dmaWrite(call[0], call[1], call[2], dst).fault?.reason).toBe('bad-request');
      expect(dst).toEqual(new Uint8Array(16));
    }
    f.iommu.faults.drain();
    batch.release(); // a live batch is engine state (snapshots free its pages on restore)
    // Everything is as it was (the pool may have grown for the batch).
    const { pool: p1, ...rest1 } = before;
    const { pool: p2, ...rest2 } = snapshot(f);
    expect(rest2).toEqual(rest1);
    expect(p2.liveDomains).toBe(p1.liveDomains);
    expect(testing.guardViolations(f.iommu)).toEqual([]);
  });
});

function ioasidReason(name: string): number {
  return (FAULT_REASONS as readonly string[]).indexOf(name);
}
