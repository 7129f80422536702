// The DMA trace format of `ioasid replay` — FORMAT is its definition, printed by --help — and the
// parser of one line into a record. No engine state here (replayer.mjs applies the records).
import { Access, NO_PASID } from '../../dist/index.js';

export const FORMAT = `Trace format (text, one record per line; '#' starts a comment; blank lines are ignored;
fields are separated by spaces or tabs). Setup lines build the machine, DMA lines are replayed
through it; both apply in file order, so a map or unmap between DMA lines takes effect there.

  space NAME                      select the I/O address space NAME (created on first use; an
                                  IOAS of the trace's ioasid FD). Before any space line: 'default'
  map IOVA LENGTH PHYS [r|w|rw]   map [IOVA, IOVA+LENGTH) to PHYS in the current space (default rw)
  unmap IOVA LENGTH               unmap the mappings inside [IOVA, IOVA+LENGTH) of the current space
  device DEV [PASID]              add device DEV (on first use) to the IOMMU, bind it to the FD, and
                                  attach its RID, or PASID (allocated by the FD on first use), to
                                  the current space; attaching again replaces
  RID PASID IOVA ACCESS           one DMA request

  DEV, RID   requester ID: a PCI BDF (03:00.0 or 0000:03:00.0) or hex (0x300)
  PASID      decimal (or 0x hex) below 2^32, or '-' for none (0 means none too, as Linux's
             IOMMU_NO_PASID)
  IOVA, LENGTH, PHYS   hex, 0x optional, up to 64 bits (map and unmap follow iommufd's rules:
             4 KiB alignment once a device is attached; unmap removes whole mappings only)
  ACCESS     r, w, rw or x (execute; letters combine: rx, rwx; p adds privileged)

Example:
  map 0x100000 0x200000 0x80000000 rw
  device 03:00.0
  03:00.0 - 0x100040 w          # translated to 0x80000040
  0x300 - 0x400000 r            # faults not-present
  space process-1
  map 0x7f0000000000 0x1000 0x90000000
  device 03:00.0 5
  03:00.0 5 0x7f0000000010 r    # translated through PASID 5`;

/** A malformed line (the replay adds the file and line number). */
export class TraceError extends Error {}

/** ACCESS letters → the DMA path's access bits. */
const ACCESS_BITS = { r: Access.Read, w: Access.Write, x: Access.Exec, p: Access.Priv };

const BDF = /^(?:([0-9a-f]{4}):)?([0-9a-f]{2}):([01][0-9a-f])\.([0-7])$/i;
const HEX = /^(?:0x)?([0-9a-f]{1,16})$/i;
const KEYWORDS = new Set(['space', 'map', 'unmap', 'device']);

const hex2 = (n) => n.toString(16).padStart(2, '0');

/** The PCI address of a requester ID: `0000:bb:dd.f`. */
export const bdfOf = (rid) => `0000:${hex2(rid >> 8)}:${hex2((rid >> 3) & 31)}.${rid & 7}`;

/** A requester ID from a BDF or hex. */
export function parseRid(text) {
  const m = BDF.exec(text);
  if (m) {
    if (m[1] !== undefined && parseInt(m[1], 16) !== 0) throw new TraceError(`${text}: only PCI segment 0000 is behind the IOMMU`);
    return (parseInt(m[2], 16) << 8) | (parseInt(m[3], 16) << 3) | Number(m[4]);
  }
  const h = HEX.exec(text);
  const rid = h ? parseInt(h[1], 16) : NaN;
  if (!(rid <= 0xffff)) throw new TraceError(`expected a requester ID (BDF like 03:00.0, or hex up to 0xffff), got '${text}'`);
  return rid;
}

/** A hex address or length of up to 64 bits as a bigint. */
export function parseHex(text, what) {
  const h = HEX.exec(text ?? '');
  if (!h) throw new TraceError(`${what}: expected hex (up to 16 digits, 0x optional), got '${text ?? ''}'`);
  return BigInt(`0x${h[1]}`);
}

export function parsePasid(text) {
  if (text === '-') return NO_PASID;
  const value = /^\d+$/.test(text) ? Number(text) : /^0x[0-9a-f]{1,8}$/i.test(text) ? parseInt(text, 16) : NaN;
  if (!(value <= 0xffffffff)) throw new TraceError(`PASID: expected a number below 2^32 or '-', got '${text}'`);
  return value;
}

export function parseAccess(text) {
  let bits = 0;
  for (const c of text.toLowerCase()) {
    const bit = ACCESS_BITS[c];
    if (bit === undefined || bits & bit) { bits = 0; break; }
    bits |= bit;
  }
  if (!(bits & 7)) throw new TraceError(`ACCESS: expected r, w, rw or x (letters r w x p, each once), got '${text}'`);
  return bits;
}

function parsePermission(text) {
  if (text === undefined || text === 'rw') return { read: true, write: true };
  if (text === 'r') return { read: true, write: false };
  if (text === 'w') return { read: false, write: true };
  throw new TraceError(`map permission: expected r, w or rw, got '${text}'`);
}

function arity(fields, min, max, form) {
  if (fields.length - 1 < min || fields.length - 1 > max) throw new TraceError(`expected '${form}', got '${fields.join(' ')}'`);
}

/** Field values seen before (a trace has few distinct RIDs, PASIDs and accesses), per parser. */
function cached(parse) {
  const seen = new Map();
  return (text) => {
    let value = seen.get(text);
    if (value === undefined) {
      value = parse(text);
      if (seen.size >= 4096) seen.clear();
      seen.set(text, value);
    }
    return value;
  };
}
const ridOf = cached(parseRid);
const pasidOf = cached(parsePasid);
const accessOf = cached(parseAccess);

/** The DMA record parseLine returns, reused from line to line (copy what you keep). */
const dma = { kind: 'dma', rid: 0, pasid: 0, iovaLo: 0, iovaHi: 0, access: 0 };
const fieldStart = new Int32Array(5);
const fieldEnd = new Int32Array(5);

/**
 * The fast path for DMA lines: fields found and the IOVA parsed with charCodeAt, no regular
 * expressions. @returns the record, or undefined when the line needs the general parser (a setup
 * line, a comment, anything unusual — which then also reports what is wrong).
 */
function parseDmaLine(line) {
  let fields = 0;
  let i = 0;
  const n = line.length;
  for (;;) {
    let c = line.charCodeAt(i);
    while (i < n && (c === 32 || c === 9 || c === 13)) c = line.charCodeAt(++i);
    if (i >= n || c === 35 /* # */) break;
    if (fields === 4) return undefined;
    fieldStart[fields] = i;
    while (i < n && c !== 32 && c !== 9 && c !== 13 && c !== 35) c = line.charCodeAt(++i);
    fieldEnd[fields++] = i;
  }
  if (fields !== 4) return undefined;
  let at = fieldStart[2];
  const end = fieldEnd[2];
  if (end - at > 2 && line.charCodeAt(at) === 48 && (line.charCodeAt(at + 1) | 32) === 120) at += 2; // 0x
  if (end - at > 16 || end === at) return undefined;
  let lo = 0;
  let hi = 0;
  for (; at < end; at++) {
    const c = line.charCodeAt(at) | 32; // lower case for letters
    const digit = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (digit < 0) return undefined;
    hi = (hi * 16 + (lo >>> 28)) >>> 0;
    lo = ((lo << 4) | digit) >>> 0;
  }
  const first = line.slice(fieldStart[0], fieldEnd[0]);
  if (KEYWORDS.has(first)) return undefined;
  dma.rid = ridOf(first);
  dma.pasid = pasidOf(line.slice(fieldStart[1], fieldEnd[1]));
  dma.iovaLo = lo;
  dma.iovaHi = hi;
  dma.access = accessOf(line.slice(fieldStart[3], fieldEnd[3]));
  return dma;
}

/**
 * One trace line → a record, or null for a blank or comment line:
 * { kind: 'dma', rid, pasid, iovaLo, iovaHi, access } (one object, reused: copy what you keep) |
 * { kind: 'space', name } | { kind: 'map', iova, length, phys, read, write } |
 * { kind: 'unmap', iova, length } | { kind: 'device', rid, pasid }.
 * @throws TraceError on a malformed line.
 */
export function parseLine(line) {
  const fast = parseDmaLine(line);
  if (fast) return fast;
  const hash = line.indexOf('#');
  const fields = (hash < 0 ? line : line.slice(0, hash)).trim().split(/\s+/);
  if (fields[0] === '') return null;
  const [first] = fields;
  if (!KEYWORDS.has(first)) {
    if (fields.length !== 4) throw new TraceError(`expected 'RID PASID IOVA ACCESS' or a setup line (space, map, unmap, device), got '${fields.join(' ')}'`);
    parseHex(fields[2], 'IOVA'); // the fast path refused the line: this says why
    throw new TraceError(`unexpected DMA line '${fields.join(' ')}'`);
  }
  switch (first) {
    case 'space':
      arity(fields, 1, 1, 'space NAME');
      return { kind: 'space', name: fields[1] };
    case 'map':
      arity(fields, 3, 4, 'map IOVA LENGTH PHYS [r|w|rw]');
      return { kind: 'map', iova: parseHex(fields[1], 'IOVA'), length: parseHex(fields[2], 'LENGTH'), phys: parseHex(fields[3], 'PHYS'), ...parsePermission(fields[4]) };
    case 'unmap':
      arity(fields, 2, 2, 'unmap IOVA LENGTH');
      return { kind: 'unmap', iova: parseHex(fields[1], 'IOVA'), length: parseHex(fields[2], 'LENGTH') };
    default: // device
      arity(fields, 1, 2, 'device DEV [PASID]');
      return { kind: 'device', rid: parseRid(fields[1]), pasid: fields[2] === undefined ? NO_PASID : parsePasid(fields[2]) };
  }
}
