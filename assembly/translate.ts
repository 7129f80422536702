// The DMA path: (rid, pasid, iova, access) -> output address or fault, for any thread.
//
// Order (as QEMU's vtd_do_iommu_translate): IOTLB hit -> return; else device context -> PASID
// context -> domain -> walk -> IOTLB fill -> return. One result path, one fault path.
//
// IOTLB: per translator slot, 2-way set associative, keyed by (rid, pasid, 4 KiB page). An entry
// holds the domain it was filled from and that domain's generation then; it hits only while the
// generation is unchanged, so unmap/detach/replace/destroy invalidate by bumping one counter.
// Fill race: the miss path reads CTRL_CTX_GEN before the context, and the domain's generation and
// invalidation sequence before the walk; iotlb.ts `fill` re-reads all three after publishing the
// entry and withdraws it if any moved: a control call overlapped this walk (the result itself is
// allowed: the call had not returned). A context change during the walk redoes it (miss()).
//
// Rights: a hit tests the entry's INFO_CAP_* rights against the request's R/W/X in its privilege
// (neededCaps), so one entry serves any request kind its leaf allows (U/S, SUM, XD, D rules are
// folded in at fill time). Domains flagged DOM_EXT (user-managed tables, nesting, page requests)
// miss through nested.ts and fill the same IOTLB, so their hits take exactly this path.

import {
  PAGE_SHIFT, RID_BITS, PASID_BITS, ACCESS_MASK, ACCESS_WRITE, NO_PASID, RES_SIZE, RES_PHYS_LO,
  RES_INFO, INFO_OK, INFO_PERM_SHIFT, INFO_SIZE_SHIFT, INFO_SIZE_MASK, INFO_REASON_SHIFT, INFO_LEVEL_SHIFT,
  REQ_SIZE, REQ_RID_ACCESS, REQ_ACCESS_SHIFT, REQ_PASID, REQ_IOVA_LO, REQ_IOVA_HI,
  FAULT_BAD_REQUEST, FAULT_NO_DEVICE, FAULT_NOT_ATTACHED, FAULT_PASID_INVALID, FAULT_BEYOND_WIDTH,
  FAULT_NOT_PRESENT, FAULT_PERMISSION, DEV_FLAGS, DEV_PRESENT, DEV_RID_DOMAIN, DEV_PASID_BITS,
  DOM_SIZE, DOM_ROOT, DOM_LEVELS, DOM_GEN, CTRL_EPOCH, CTRL_CTX_GEN, SLOT_EPOCH, SLOT_HITS,
  SLOT_MISSES, SLOT_FAULTS, SLOT_RESULT, SLOT_REASONS, TLB_ENTRY_SIZE, TLB_VPN_LO, TLB_KEY_HI,
  TLB_RID_SHIFT, TLB_VALID, TLB_PASID, TLB_DOMAIN, TLB_GEN, TLB_INFO, TLB_PHYS_LO, INFO_CAP_SHIFT,
  DOM_FLAGS, DOM_EXT, DOM_DIRTY, PTE_D, CAP_WU, CAP_WS, DOM_INVSEQ, CTRL_SHOOTDOWN,
} from './abi';
import { callCacheFill } from './callcache';
import { ctrl, slot, domains, domainCount } from './env';
import { deviceEntry, pasidDomain } from './context';
import { domainPtr } from './domain';
import { walk, walkLevel, walkSlot } from './walk';
import { entryAddr, entryPerm, entryCaps, levelShift } from './fmt/engine';
import { neededCaps } from './ptwalk';
import { extMiss, takeFaultAddr } from './nested';
import { setOf, fill } from './iotlb';

const PAGE_MASK: u64 = (<u64>1 << PAGE_SHIFT) - 1;


// @ts-ignore: decorator
@inline function faultInfo(reason: u32, level: u32): u32 {
  return (reason << INFO_REASON_SHIFT) | (level << INFO_LEVEL_SHIFT);
}

// @ts-ignore: decorator
@inline function bump(offset: usize): void {
  store<u64>(slot + offset, load<u64>(slot + offset) + 1);
}

/** The IOTLB hit path: info of a hit (phys stored at `out`), or 0 on a miss. */
// @ts-ignore: decorator
@inline function lookup(rid: u32, pasid: u32, iova: u64, need: u32, out: usize): u32 {
  const vpn = iova >> PAGE_SHIFT;
  const vpnLo = <u32>vpn;
  // Page numbers from 2^45 (IOVAs from 2^57) would spill into the RID bits of the key and match
  // another requester's entry; no domain maps them, so they take the slow path (beyond-width).
  if (<u32>(vpn >> 32) >> TLB_RID_SHIFT) return 0;
  const keyHi = <u32>(vpn >> 32) | (rid << TLB_RID_SHIFT) | TLB_VALID;
  let e = setOf(rid, pasid, vpnLo);
  for (let way = 0; way < 2; way++, e += TLB_ENTRY_SIZE) {
    if (load<u32>(e, TLB_VPN_LO) != vpnLo || load<u32>(e, TLB_KEY_HI) != keyHi || load<u32>(e, TLB_PASID) != pasid) continue;
    const gen = atomic.load<u32>(domains + <usize>load<u32>(e, TLB_DOMAIN) * DOM_SIZE, DOM_GEN);
    const info = load<u32>(e, TLB_INFO);
    if (gen != load<u32>(e, TLB_GEN) || ((info >> INFO_CAP_SHIFT) & need) != need) return 0;
    store<u64>(out, load<u64>(e, TLB_PHYS_LO) + (iova & PAGE_MASK), RES_PHYS_LO);
    return info;
  }
  return 0;
}

/** Resolves the domain index of (rid, pasid), or a fault info word with bit 31 set. */
function contextDomain(rid: u32, pasid: u32): u32 {
  const dev = deviceEntry(rid);
  if (dev == 0 || !(atomic.load<u32>(dev, DEV_FLAGS) & DEV_PRESENT)) return 0x80000000 | faultInfo(FAULT_NO_DEVICE, 0);
  let dom: u32;
  if (pasid == NO_PASID) {
    dom = atomic.load<u32>(dev, DEV_RID_DOMAIN);
  } else {
    if (pasid >> load<u32>(dev, DEV_PASID_BITS)) return 0x80000000 | faultInfo(FAULT_PASID_INVALID, 0);
    dom = pasidDomain(dev, pasid);
  }
  // An index beyond the domain table (garbage in a context entry) is a fault, never an access.
  return dom == 0 || dom >= domainCount ? 0x80000000 | faultInfo(FAULT_NOT_ATTACHED, 0) : dom;
}

/**
 * The miss path; the caller has announced an epoch. Stores phys at `out`, returns info.
 *
 * A walk that overlapped a context change (detach/replace/destroy/close) may have used a domain
 * the context no longer names — one being freed (root 0) or already reused by another HWPT, even
 * another FD's. The owner changes a context (and bumps CTRL_CTX_GEN) before it frees the domain,
 * so such a walk always sees CTRL_CTX_GEN move; it is then done again against the new context.
 */
function miss(rid: u32, pasid: u32, iova: u64, access: u32, out: usize): u32 {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const ctxGen = atomic.load<u32>(ctrl, CTRL_CTX_GEN);
    const info = missOnce(rid, pasid, iova, access, out);
    if (atomic.load<u32>(ctrl, CTRL_CTX_GEN) == ctxGen) return info;
  }
  // Contexts changing faster than a walk for 1000 walks in a row: report the request as blocked.
  store<u64>(out, 0, RES_PHYS_LO);
  return faultInfo(FAULT_NOT_ATTACHED, 0);
}

function missOnce(rid: u32, pasid: u32, iova: u64, access: u32, out: usize): u32 {
  const ctxGen = atomic.load<u32>(ctrl, CTRL_CTX_GEN);
  const dom = contextDomain(rid, pasid);
  if (dom & 0x80000000) return dom & 0x7fffffff;
  const d = domainPtr(dom);
  // The generation is read before the flags: a flag change (dirty tracking on) bumps it after the
  // store, so a fill made under the old flags fails its re-check below.
  const gen = atomic.load<u32>(d, DOM_GEN);
  const seq = atomic.load<u32>(d, DOM_INVSEQ);
  const flags = atomic.load<u32>(d, DOM_FLAGS);
  // User-managed tables, nesting and page requests take the extended walker (nested.ts).
  if (flags & DOM_EXT) return extMiss(rid, pasid, iova, access, out, dom, d, ctxGen);
  const need = neededCaps(access);
  const levels = load<u32>(d, DOM_LEVELS);
  if (iova >> levelShift(levels) != 0) return faultInfo(FAULT_BEYOND_WIDTH, levels - 1);
  // Root 0: the domain is being freed (its context already changed; miss() walks again).
  const root = <usize>atomic.load<u32>(d, DOM_ROOT);
  if (root == 0) return faultInfo(FAULT_NOT_ATTACHED, 0);
  const leaf = walk(root, levels, iova);
  const level = walkLevel;
  if (leaf == 0) return faultInfo(FAULT_NOT_PRESENT, level);
  const perm = entryPerm(leaf);
  const caps = entryCaps(perm);
  if ((caps & need) != need) return faultInfo(FAULT_PERMISSION, level);
  const shift = levelShift(level);
  const phys = entryAddr(leaf) + (iova & ((<u64>1 << shift) - 1));
  const info = INFO_OK | (perm << INFO_PERM_SHIFT) | (shift << INFO_SIZE_SHIFT) | (caps << INFO_CAP_SHIFT);
  store<u64>(out, phys, RES_PHYS_LO);
  // Dirty tracking: a write marks the leaf dirty (unless it changed under us: then it was being
  // unmapped, and the racing result is allowed); a clean leaf is cached without write rights, so
  // the first write after a read-and-clear misses and marks it again.
  let fillInfo = info;
  if ((flags & DOM_DIRTY) && !(leaf & <u64>PTE_D)) {
    if (access & ACCESS_WRITE) atomic.cmpxchg<u64>(walkSlot, leaf, leaf | <u64>PTE_D);
    else fillInfo = info & ~((CAP_WU | CAP_WS) << INFO_CAP_SHIFT);
  }

  fill(rid, pasid, iova, dom, d, gen, seq, ctxGen, fillInfo, phys, false);
  return info;
}

// @ts-ignore: decorator
@inline function valid(rid: u32, pasid: u32, access: u32): bool {
  return (rid >> RID_BITS) == 0 && (pasid >> PASID_BITS) == 0 && (access & ~ACCESS_MASK) == 0;
}

/** Everything but a hit: bad requests, misses and faults, with their counters. */
function slowPath(rid: u32, pasid: u32, iova: u64, access: u32, out: usize): u32 {
  let info: u32;
  if (valid(rid, pasid, access)) {
    bump(SLOT_MISSES);
    info = miss(rid, pasid, iova, access, out);
  } else {
    info = faultInfo(FAULT_BAD_REQUEST, 0);
  }
  if (!(info & INFO_OK)) {
    bump(SLOT_FAULTS);
    const counter = slot + SLOT_REASONS + (<usize>((info >> INFO_REASON_SHIFT) & 15) << 2);
    store<u32>(counter, load<u32>(counter) + 1);
    store<u64>(out, takeFaultAddr(), RES_PHYS_LO);
  }
  store<u32>(out, info, RES_INFO);
  return info;
}

/** The hit path, inlined into both entry points: the info of a hit (result stored), or 0. */
// @ts-ignore: decorator
@inline function hit(rid: u32, pasid: u32, iova: u64, access: u32, out: usize): u32 {
  if (!valid(rid, pasid, access)) return 0;
  const info = lookup(rid, pasid, iova, neededCaps(access), out);
  if (info != 0) {
    bump(SLOT_HITS);
    store<u32>(out, info, RES_INFO);
  }
  return info;
}

/** Announces that this thread may read table pages until `leave`. */
// @ts-ignore: decorator
@inline function enter(): void {
  atomic.store<u32>(slot, atomic.load<u32>(ctrl, CTRL_EPOCH), SLOT_EPOCH);
}

// @ts-ignore: decorator
@inline function leave(): void {
  atomic.store<u32>(slot, 0, SLOT_EPOCH);
}

/** One per-call request: a hit, or else the slow path (the only one reading table pages). */
// @ts-ignore: decorator
@inline function answer(rid: u32, pasid: u32, iova: u64, access: u32, out: usize): u32 {
  let info = hit(rid, pasid, iova, access, out);
  if (info == 0) {
    enter();
    info = slowPath(rid, pasid, iova, access, out);
    leave();
  }
  return info;
}

/**
 * Per-call translation; the answer (info, output or fault address) is in this slot's result
 * record. A success is also recorded in the slot's call cache (callcache.ts), which the caller's
 * JS answers from next time; the return value is that entry (its index in 32-bit words, so JS
 * reads this answer where it reads a hit), or -1 when nothing was recorded (a fault, or a request
 * the cache has no key for).
 */
export function translate(rid: u32, pasid: u32, iovaLo: u32, iovaHi: u32, access: u32): i32 {
  const out = slot + SLOT_RESULT;
  const iova = (<u64>iovaHi << 32) | <u64>iovaLo;
  const count = atomic.load<u32>(ctrl, CTRL_SHOOTDOWN); // before the translation: see callcache.ts
  const info = answer(rid, pasid, iova, access, out);
  return info & INFO_OK ? callCacheFill(rid, pasid, iova, access, info, load<u64>(out, RES_PHYS_LO), count) : -1;
}

/**
 * Per-call translation of a span: the leaf holding `iova` as `translate` answers it (into this
 * slot's result record, not the call cache), then the leaves after it while each is an IOTLB hit
 * whose output continues the run. Returns how many of the `length` bytes from `iova` that run
 * covers (at least the rest of the first leaf, capped at `length`), or 0 when the first leaf
 * faulted (its fault is in the result record).
 *
 * Why: a transfer spanning many pages (a 64 KiB DMA, 16 leaves) costs one call here instead of one
 * per leaf. A later leaf that misses, lacks the rights (a clean page's first write under dirty
 * tracking) or leaves the run ends it, untranslated and uncounted: the caller starts its next
 * call there, where that leaf is the first and takes the full path (walk, fill, fault). Each leaf
 * the run took is counted as a hit, as one `translate` per leaf would count it.
 */
export function translateRun(rid: u32, pasid: u32, iovaLo: u32, iovaHi: u32, access: u32, length: u32): u32 {
  const out = slot + SLOT_RESULT;
  const iova = (<u64>iovaHi << 32) | <u64>iovaLo;
  const info = answer(rid, pasid, iova, access, out);
  if (!(info & INFO_OK)) return 0;
  const first = load<u64>(out, RES_PHYS_LO);
  const need = neededCaps(access);
  const leafMask = (<u64>1 << ((info >> INFO_SIZE_SHIFT) & INFO_SIZE_MASK)) - 1;
  let run = (leafMask & ~iova) + 1; // the rest of the first leaf
  while (run < <u64>length) {
    const next = iova + run;
    if (next < iova) break; // past 2^64
    const leaf = lookup(rid, pasid, next, need, out);
    if (leaf == 0 || load<u64>(out, RES_PHYS_LO) != first + run) break;
    bump(SLOT_HITS);
    run += ((<u64>1 << ((leaf >> INFO_SIZE_SHIFT) & INFO_SIZE_MASK)) - 1 & ~next) + 1;
  }
  store<u64>(out, first, RES_PHYS_LO); // the first leaf's address, which lookups above overwrote
  return run < <u64>length ? <u32>run : length;
}

/** Translates `n` request records at `req` into result records at `res`; returns the faults. */
export function translateBatch(req: usize, res: usize, n: u32): u32 {
  let faults: u32 = 0;
  enter();
  for (let i: u32 = 0; i < n; i++) {
    const r = req + <usize>i * REQ_SIZE;
    const ridAccess = load<u32>(r, REQ_RID_ACCESS);
    const iova = (<u64>load<u32>(r, REQ_IOVA_HI) << 32) | <u64>load<u32>(r, REQ_IOVA_LO);
    const rid = ridAccess & 0xffff;
    const pasid = load<u32>(r, REQ_PASID);
    const access = ridAccess >> REQ_ACCESS_SHIFT;
    const out = res + <usize>i * RES_SIZE;
    let info = hit(rid, pasid, iova, access, out);
    if (info == 0) info = slowPath(rid, pasid, iova, access, out);
    faults += ~info & INFO_OK;
  }
  leave();
  return faults;
}
