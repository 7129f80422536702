/**
 * The plain-JS baseline: assembly/translate.ts (with context.ts, walk.ts, fmt/engine.ts, the fill
 * policy of iotlb.ts and ptwalk.ts's neededCaps) written in the fastest JS we know, over a
 * Uint32Array of the engine's own memory. 32-bit arithmetic only, no BigInt: 64-bit values are
 * (lo, hi) word pairs. Same IOTLB (sets, hash, entries, generation and rights check), same miss
 * path (epoch, device -> PASID -> domain -> walk, redone if a context change overlapped it ->
 * D bit under dirty tracking -> in-place fill, key published atomically and withdrawn if a
 * generation moved), same result records and slot counters as the Wasm, so results compare word
 * for word. Extended domains (user-managed tables) are not mirrored: the
 * bench never creates them.
 *
 * Differences forced by JS, not by choice: a table entry is read as two u32 loads (JS has no
 * 64-bit atomic load without BigInt), so unlike the Wasm it could tear under a racing map; the
 * bench never races. Fault logging of the per-call API is not mirrored (the bench has no faults).
 * Call `refresh()` after the memory grows (as the TS layer's Core.sync).
 *
 * Code shape, for TurboFan: module-level functions taking the memory view `m` and the slot `s` as
 * parameters (so, once inlined, both stay in registers instead of being reloaded from closure
 * contexts after every typed-array store), and Atomics.load/store exactly where the Wasm has
 * atomics (they order the generation re-checks; V8 compiles them as loads/stores).
 * @module
 */
import * as abi from '../../assembly/abi';
import { TranslationOut, decodeInto } from '../../src/dma/translation';

export interface JsCore {
  /** translateBatch over `n` request records at byte offset `req`; results at `res`. */
  translateBatch(req: number, res: number, n: number): number;
  /** The per-call export: result record in this slot; returns info. */
  translate(rid: number, pasid: number, lo: number, hi: number, access: number): number;
  /** The per-call public API shape (Translator.translateInto): number IOVA in, decoded result out. */
  translateInto(out: TranslationOut, rid: number, pasid: number, iova: number, access: number): TranslationOut;
  /** Re-reads the memory after growth. */
  refresh(): void;
}

const TWO_32 = 4294967296;

// Word offsets inside records (byte offsets / 4); esbuild folds them to literals.
const DOM_ROOT = abi.DOM_ROOT >>> 2;
const DOM_LEVELS = abi.DOM_LEVELS >>> 2;
const DOM_GEN = abi.DOM_GEN >>> 2;
const DOM_FLAGS = abi.DOM_FLAGS >>> 2;
const DOM_INVSEQ = abi.DOM_INVSEQ >>> 2;
const DOM_WORDS = abi.DOM_SIZE >>> 2;
const DEV_FLAGS = abi.DEV_FLAGS >>> 2;
const DEV_RID_DOMAIN = abi.DEV_RID_DOMAIN >>> 2;
const DEV_PASID_DIR = abi.DEV_PASID_DIR >>> 2;
const DEV_PASID_BITS = abi.DEV_PASID_BITS >>> 2;
const DEV_WORDS = abi.DEV_SIZE >>> 2;
const TLB_VPN_LO = abi.TLB_VPN_LO >>> 2;
const TLB_KEY_HI = abi.TLB_KEY_HI >>> 2;
const TLB_PASID = abi.TLB_PASID >>> 2;
const TLB_DOMAIN = abi.TLB_DOMAIN >>> 2;
const TLB_GEN = abi.TLB_GEN >>> 2;
const TLB_INFO = abi.TLB_INFO >>> 2;
const TLB_PHYS_LO = abi.TLB_PHYS_LO >>> 2;
const TLB_PHYS_HI = TLB_PHYS_LO + 1;
const TLB_ENTRY_WORDS = abi.TLB_ENTRY_SIZE >>> 2;
/** log2 of a set's size in words (a set is TLB_WAYS entries). */
const TLB_SET_WORDS_LG2 = 31 - Math.clz32(abi.TLB_SET_SIZE >>> 2);
const REQ_WORDS = abi.REQ_SIZE >>> 2;
const RES_WORDS = abi.RES_SIZE >>> 2;
const RES_PHYS_LO = abi.RES_PHYS_LO >>> 2;
const RES_INFO = abi.RES_INFO >>> 2;
const PAGE_OFFSET_MASK = abi.PAGE_SIZE - 1;
/** Address bits 31:12 of an entry's low word; bits 51:32 sit in the low 20 bits of its high word. */
const ADDR_LO_MASK = ~PAGE_OFFSET_MASK >>> 0;
const ADDR_HI_MASK = (1 << (abi.PTE_ADDR_BITS + abi.PTE_ADDR_SHIFT - 32)) - 1;
const PERM_BITS = abi.PTE_R | abi.PTE_W | abi.PTE_X;
const NOT_OK = 0x80000000;

/** One translator slot's pointers (word indices), and the walk's outputs. */
class Slot {
  readonly ctrlCtxGen: number;
  readonly ctrlEpoch: number;
  readonly devRoot: number;
  readonly domains: number;
  readonly slot: number;
  readonly iotlb: number;
  readonly setMask: number;
  readonly hits: number;
  readonly misses: number;
  readonly faults: number;
  readonly reasons: number;
  readonly result: number;
  /** Level of the last entry `walk` looked at (walk.ts's `walkLevel`). */
  walkLevel = 0;
  /** Word index of the leaf entry `walk` returned (walk.ts's `walkSlot`). */
  walkSlot = 0;
  /** The walk's leaf entry as (lo, hi); 0,0 = none. */
  leafLo = 0;
  leafHi = 0;
  /** iotlb.ts `victimBit`: which way the next eviction takes. */
  victimBit = 0;

  constructor(m: Uint32Array, slotIndex: number) {
    const ctrl = abi.CTRL_BASE >>> 2;
    this.ctrlCtxGen = ctrl + (abi.CTRL_CTX_GEN >>> 2);
    this.ctrlEpoch = ctrl + (abi.CTRL_EPOCH >>> 2);
    this.devRoot = m[ctrl + (abi.CTRL_DEV_ROOT >>> 2)]! >>> 2;
    this.domains = m[ctrl + (abi.CTRL_DOMAINS >>> 2)]! >>> 2;
    this.slot = (m[ctrl + (abi.CTRL_SLOTS >>> 2)]! + slotIndex * m[ctrl + (abi.CTRL_SLOT_SIZE >>> 2)]!) >>> 2;
    this.iotlb = this.slot + (abi.SLOT_IOTLB >>> 2);
    this.setMask = m[ctrl + (abi.CTRL_IOTLB_SETS >>> 2)]! - 1;
    this.hits = this.slot + (abi.SLOT_HITS >>> 2);
    this.misses = this.slot + (abi.SLOT_MISSES >>> 2);
    this.faults = this.slot + (abi.SLOT_FAULTS >>> 2);
    this.reasons = this.slot + (abi.SLOT_REASONS >>> 2);
    this.result = this.slot + (abi.SLOT_RESULT >>> 2);
  }
}

/** Adds 1 to the u64 counter at word `w`. */
function bump(m: Uint32Array, w: number): void {
  const v = m[w]! + 1;
  m[w] = v;
  if (v > 0xffffffff) m[w + 1]!++;
}

/** ptwalk.ts `neededCaps`: the request's R/W/X, in the privileged half when Priv is set. */
function neededCaps(access: number): number {
  return (access & 7) << ((access >>> 3) * 3);
}

/** fmt/engine.ts `entryCaps`: R serves reads and execution, W serves writes, either privilege. */
function entryCaps(perm: number): number {
  return (perm & abi.PTE_R ? abi.CAP_RU | abi.CAP_XU | abi.CAP_RS | abi.CAP_XS : 0) | (perm & abi.PTE_W ? abi.CAP_WU | abi.CAP_WS : 0);
}

function faultInfo(reason: number, level: number): number {
  return (reason << abi.INFO_REASON_SHIFT) | (level << abi.INFO_LEVEL_SHIFT);
}

function valid(rid: number, pasid: number, access: number): boolean {
  return rid >>> abi.RID_BITS === 0 && pasid >>> abi.PASID_BITS === 0 && (access & ~abi.ACCESS_MASK) === 0;
}

/** Word index of the IOTLB set of (rid, pasid, vpnLo): translate.ts `setOf`. */
function setOf(s: Slot, rid: number, pasid: number, vpnLo: number): number {
  const h = (vpnLo ^ Math.imul(pasid | (rid << abi.PASID_BITS), 0x9e3779b1)) >>> 0;
  return s.iotlb + (((h ^ (h >>> 16)) & s.setMask) << TLB_SET_WORDS_LG2);
}

/** The hit path: info of a hit (phys stored at word `out`), or 0 on a miss. */
function lookup(m: Uint32Array, s: Slot, rid: number, pasid: number, lo: number, hi: number, need: number, out: number): number {
  const vpnLo = ((lo >>> abi.PAGE_SHIFT) | (hi << (32 - abi.PAGE_SHIFT))) >>> 0;
  // Page numbers from 2^45 would spill into the key's RID bits: slow path (beyond-width).
  if (hi >>> (abi.PAGE_SHIFT + abi.TLB_RID_SHIFT) !== 0) return 0;
  const keyHi = ((hi >>> abi.PAGE_SHIFT) | (rid << abi.TLB_RID_SHIFT) | abi.TLB_VALID) >>> 0;
  let e = setOf(s, rid, pasid, vpnLo);
  for (let way = 0; way < 2; way++, e += TLB_ENTRY_WORDS) {
    if (m[e + TLB_VPN_LO] !== vpnLo || m[e + TLB_KEY_HI] !== keyHi || m[e + TLB_PASID] !== pasid) continue;
    const gen = Atomics.load(m, s.domains + m[e + TLB_DOMAIN]! * DOM_WORDS + DOM_GEN);
    const info = m[e + TLB_INFO]!;
    if (gen !== m[e + TLB_GEN] || ((info >>> abi.INFO_CAP_SHIFT) & need) !== need) return 0;
    // The entry's phys is page aligned, so adding the page offset never carries into the high word.
    m[out + RES_PHYS_LO] = m[e + TLB_PHYS_LO]! + (lo & PAGE_OFFSET_MASK);
    m[out + RES_PHYS_LO + 1] = m[e + TLB_PHYS_HI]!;
    return info;
  }
  return 0;
}

/** context.ts `pasidDomain`, from the device entry's word index. */
function pasidDomain(m: Uint32Array, dev: number, pasid: number): number {
  const dir = Atomics.load(m, dev + DEV_PASID_DIR);
  if (dir === 0) return 0;
  const leaf = (Atomics.load(m, (dir >>> 2) + (pasid >>> abi.PASID_LEAF_BITS)) & ~abi.PASID_DIR_COUNT_MASK) >>> 0;
  if (leaf === 0) return 0;
  return Atomics.load(m, (leaf >>> 2) + (pasid & (abi.PASID_LEAF_ENTRIES - 1)));
}

/** The domain index of (rid, pasid), or a fault info word with bit 31 set. */
function contextDomain(m: Uint32Array, s: Slot, rid: number, pasid: number): number {
  const page = Atomics.load(m, s.devRoot + (rid >>> 8));
  if (page === 0) return (NOT_OK | faultInfo(abi.FAULT_NO_DEVICE, 0)) >>> 0;
  const dev = (page >>> 2) + (rid & 255) * DEV_WORDS;
  if (!(Atomics.load(m, dev + DEV_FLAGS) & abi.DEV_PRESENT)) return (NOT_OK | faultInfo(abi.FAULT_NO_DEVICE, 0)) >>> 0;
  let dom: number;
  if (pasid === abi.NO_PASID) {
    dom = Atomics.load(m, dev + DEV_RID_DOMAIN);
  } else {
    // JS shift counts are taken mod 32, as Wasm's i32.shr_u.
    if (pasid >>> m[dev + DEV_PASID_BITS]! !== 0) return (NOT_OK | faultInfo(abi.FAULT_PASID_INVALID, 0)) >>> 0;
    dom = pasidDomain(m, dev, pasid);
  }
  return dom === 0 ? (NOT_OK | faultInfo(abi.FAULT_NOT_ATTACHED, 0)) >>> 0 : dom;
}

/** walk.ts: sets s.leafLo/s.leafHi (0,0 when nothing) and s.walkLevel. */
function walk(m: Uint32Array, s: Slot, root: number, levels: number, lo: number, hi: number): void {
  let table = root >>> 2;
  let level = levels - 1;
  for (;;) {
    const shift = abi.PAGE_SHIFT + level * abi.TABLE_INDEX_BITS;
    const index = (shift < 32 ? (lo >>> shift) | (hi << (32 - shift)) : hi >>> (shift - 32)) & (abi.TABLE_ENTRIES - 1);
    const at = table + index * 2;
    const eLo = m[at]!;
    if ((eLo & (abi.PTE_R | abi.PTE_W)) === 0) break;
    if (level === 0 || (eLo & abi.PTE_PS) !== 0) {
      s.walkLevel = level;
      s.walkSlot = at;
      s.leafLo = eLo;
      s.leafHi = m[at + 1]!;
      return;
    }
    table = (eLo & ADDR_LO_MASK) >>> 2; // usize truncation of entryAddr, as in Wasm
    level--;
  }
  s.walkLevel = level;
  s.leafLo = 0;
  s.leafHi = 0;
}

/** iotlb.ts `victim`: the way a fill of key (vpnLo, keyHi, pasid) overwrites, in place. */
function victim(m: Uint32Array, s: Slot, set: number, vpnLo: number, keyHi: number, pasid: number): number {
  const other = set + TLB_ENTRY_WORDS;
  if (m[set + TLB_VPN_LO] === vpnLo && m[set + TLB_KEY_HI] === keyHi && m[set + TLB_PASID] === pasid) return set;
  if (m[other + TLB_VPN_LO] === vpnLo && m[other + TLB_KEY_HI] === keyHi && m[other + TLB_PASID] === pasid) return other;
  if (!(m[set + TLB_KEY_HI]! & abi.TLB_VALID)) return set;
  if (!(m[other + TLB_KEY_HI]! & abi.TLB_VALID)) return other;
  s.victimBit ^= 1;
  return set + s.victimBit * TLB_ENTRY_WORDS;
}

/** translate.ts `missOnce`: one attempt of the miss path (epoch announced). Stores phys at word `out`, returns info. */
function missOnce(m: Uint32Array, s: Slot, rid: number, pasid: number, lo: number, hi: number, access: number, out: number): number {
  const ctxGen = Atomics.load(m, s.ctrlCtxGen);
  const dom = contextDomain(m, s, rid, pasid);
  if (dom & NOT_OK) return dom & 0x7fffffff;
  const d = s.domains + dom * DOM_WORDS;
  const gen = Atomics.load(m, d + DOM_GEN);
  const seq = Atomics.load(m, d + DOM_INVSEQ);
  const flags = Atomics.load(m, d + DOM_FLAGS);
  // Extended domains (user-managed tables, nesting, page requests) miss through nested.ts in the
  // Wasm; the bench never creates them, so the baselines only make the same test.
  if (flags & abi.DOM_EXT) throw new Error('js baseline: extended (user-managed) domains are not mirrored');
  const need = neededCaps(access);
  const levels = m[d + DOM_LEVELS]!;
  const width = abi.PAGE_SHIFT + levels * abi.TABLE_INDEX_BITS; // 39, 48 or 57: beyond the low word
  if (hi >>> (width - 32) !== 0) return faultInfo(abi.FAULT_BEYOND_WIDTH, levels - 1);
  // Root 0: the domain is being freed (its context already changed; miss() walks again).
  const root = Atomics.load(m, d + DOM_ROOT);
  if (root === 0) return faultInfo(abi.FAULT_NOT_ATTACHED, 0);
  walk(m, s, root, levels, lo, hi);
  const level = s.walkLevel;
  const leafLo = s.leafLo;
  const leafHi = s.leafHi;
  if (leafLo === 0 && leafHi === 0) return faultInfo(abi.FAULT_NOT_PRESENT, level);
  const perm = leafLo & PERM_BITS;
  const caps = entryCaps(perm);
  if ((caps & need) !== need) return faultInfo(abi.FAULT_PERMISSION, level);
  const shift = abi.PAGE_SHIFT + level * abi.TABLE_INDEX_BITS; // <= 30: the offset fits the low word
  const sum = ((leafLo & ADDR_LO_MASK) >>> 0) + (lo & ((1 << shift) - 1));
  const physLo = sum >>> 0;
  const physHi = (leafHi & ADDR_HI_MASK) + (sum > 0xffffffff ? 1 : 0);
  const info = abi.INFO_OK | (perm << abi.INFO_PERM_SHIFT) | (shift << abi.INFO_SIZE_SHIFT) | (caps << abi.INFO_CAP_SHIFT);
  m[out + RES_PHYS_LO] = physLo;
  m[out + RES_PHYS_LO + 1] = physHi;
  // Dirty tracking: a write marks the leaf dirty; a clean leaf is cached without write rights.
  // PTE_D is in the entry's low word, so a 32-bit compare-exchange sets it (the Wasm compares all
  // 64 bits; the bench never turns dirty tracking on).
  let fillInfo = info;
  if (flags & abi.DOM_DIRTY && !(leafLo & abi.PTE_D)) {
    if (access & abi.ACCESS_WRITE) Atomics.compareExchange(m, s.walkSlot, leafLo, (leafLo | abi.PTE_D) >>> 0);
    else fillInfo = info & ~((abi.CAP_WU | abi.CAP_WS) << abi.INFO_CAP_SHIFT);
  }
  fill(m, s, rid, pasid, lo, hi, dom, d, gen, seq, ctxGen, fillInfo, physLo, physHi);
  return info;
}

/**
 * iotlb.ts `fill`: writes the fields, publishes the key atomically, and withdraws it if the
 * domain generation, its invalidation sequence or CTRL_CTX_GEN moved during the walk.
 */
function fill(m: Uint32Array, s: Slot, rid: number, pasid: number, lo: number, hi: number, dom: number, d: number,
  gen: number, seq: number, ctxGen: number, info: number, physLo: number, physHi: number): void {
  if (hi >>> (abi.PAGE_SHIFT + abi.TLB_RID_SHIFT) !== 0) return; // page numbers from 2^45 do not fit a key
  const vpnLo = ((lo >>> abi.PAGE_SHIFT) | (hi << (32 - abi.PAGE_SHIFT))) >>> 0;
  const keyHi = ((hi >>> abi.PAGE_SHIFT) | (rid << abi.TLB_RID_SHIFT) | abi.TLB_VALID) >>> 0;
  const e = victim(m, s, setOf(s, rid, pasid, vpnLo), vpnLo, keyHi, pasid);
  m[e + TLB_VPN_LO] = vpnLo;
  m[e + TLB_PASID] = pasid;
  m[e + TLB_DOMAIN] = dom;
  m[e + TLB_GEN] = gen;
  m[e + TLB_INFO] = info;
  m[e + TLB_PHYS_LO] = physLo & ADDR_LO_MASK;
  m[e + TLB_PHYS_HI] = physHi;
  // iotlb.ts `fill` for engine tables (not scanned): re-check the counters, then a plain store.
  const moved = Atomics.load(m, d + DOM_GEN) !== gen || Atomics.load(m, d + DOM_INVSEQ) !== seq || Atomics.load(m, s.ctrlCtxGen) !== ctxGen;
  m[e + TLB_KEY_HI] = moved ? 0 : keyHi;
}

/** translate.ts `miss`: a walk that overlapped a context change is done again against the new context. */
function miss(m: Uint32Array, s: Slot, rid: number, pasid: number, lo: number, hi: number, access: number, out: number): number {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const ctxGen = Atomics.load(m, s.ctrlCtxGen);
    const info = missOnce(m, s, rid, pasid, lo, hi, access, out);
    if (Atomics.load(m, s.ctrlCtxGen) === ctxGen) return info;
  }
  m[out + RES_PHYS_LO] = 0;
  m[out + RES_PHYS_LO + 1] = 0;
  return faultInfo(abi.FAULT_NOT_ATTACHED, 0);
}

/** Everything but a hit: bad requests, misses and faults, with their counters. */
function slowPath(m: Uint32Array, s: Slot, rid: number, pasid: number, lo: number, hi: number, access: number, out: number): number {
  let info: number;
  if (valid(rid, pasid, access)) {
    bump(m, s.misses);
    info = miss(m, s, rid, pasid, lo, hi, access, out);
  } else {
    info = faultInfo(abi.FAULT_BAD_REQUEST, 0);
  }
  if (!(info & abi.INFO_OK)) {
    bump(m, s.faults);
    m[s.reasons + ((info >>> abi.INFO_REASON_SHIFT) & 15)]!++;
    // takeFaultAddr(): 0 unless an extended walk set it, and engine-managed walks never do.
    m[out + RES_PHYS_LO] = 0;
    m[out + RES_PHYS_LO + 1] = 0;
  }
  m[out + RES_INFO] = info;
  return info;
}

/** translate.ts `hit`: the info of a hit (result stored), or 0. */
function hit(m: Uint32Array, s: Slot, rid: number, pasid: number, lo: number, hi: number, access: number, out: number): number {
  if (!valid(rid, pasid, access)) return 0;
  const info = lookup(m, s, rid, pasid, lo, hi, neededCaps(access), out);
  if (info !== 0) {
    bump(m, s.hits);
    m[out + RES_INFO] = info;
  }
  return info;
}

function translateOne(m: Uint32Array, s: Slot, rid: number, pasid: number, lo: number, hi: number, access: number, out: number): number {
  return hit(m, s, rid, pasid, lo, hi, access, out) || slowPath(m, s, rid, pasid, lo, hi, access, out);
}

/** The per-call export: the result record is the slot's. */
function translate(m: Uint32Array, s: Slot, rid: number, pasid: number, lo: number, hi: number, access: number): number {
  const out = s.result;
  const hitInfo = hit(m, s, rid, pasid, lo, hi, access, out);
  if (hitInfo !== 0) return hitInfo;
  Atomics.store(m, s.slot, Atomics.load(m, s.ctrlEpoch)); // enter: only the slow path reads tables
  const info = slowPath(m, s, rid, pasid, lo, hi, access, out);
  Atomics.store(m, s.slot, 0);
  return info;
}

function translateBatch(m: Uint32Array, s: Slot, req: number, res: number, n: number): number {
  let faults = 0;
  Atomics.store(m, s.slot, Atomics.load(m, s.ctrlEpoch));
  for (let i = 0, r = req >>> 2, out = res >>> 2; i < n; i++, r += REQ_WORDS, out += RES_WORDS) {
    const ridAccess = m[r]!;
    const info = translateOne(m, s, ridAccess & 0xffff, m[r + 1]!, m[r + 2]!, m[r + 3]!, ridAccess >>> abi.REQ_ACCESS_SHIFT, out);
    faults += ~info & abi.INFO_OK;
  }
  Atomics.store(m, s.slot, 0);
  return faults;
}

/** Creates a JS translator bound to translator slot `slotIndex` of the engine in `memory`. */
export function createJsCore(memory: WebAssembly.Memory, slotIndex: number): JsCore {
  let m = new Uint32Array(memory.buffer);
  const s = new Slot(m, slotIndex);
  return {
    translateBatch: (req, res, n) => translateBatch(m, s, req, res, n),
    translate: (rid, pasid, lo, hi, access) => translate(m, s, rid, pasid, lo, hi, access),
    translateInto(out: TranslationOut, rid: number, pasid: number, iova: number, access: number): TranslationOut {
      // As Translator.translateInto for a number IOVA: split, validate, translate, decode.
      const lo = iova >>> 0;
      const hi = (iova / TWO_32) >>> 0;
      if (lo + hi * TWO_32 !== iova || (rid >>> 0) !== rid || (pasid >>> 0) !== pasid || (access >>> 0) !== access) {
        return decodeInto(out, abi.FAULT_BAD_REQUEST << abi.INFO_REASON_SHIFT, 0, 0);
      }
      const info = translate(m, s, rid, pasid, lo, hi, access);
      return decodeInto(out, info, m[s.result]!, m[s.result + 1]!);
    },
    refresh(): void {
      if (m.byteLength !== memory.buffer.byteLength) m = new Uint32Array(memory.buffer);
    },
  };
}
