/**
 * The memory half of a restore's checks (the object half is verify.ts): a snapshot's bytes may have
 * been crafted, so nothing the engine reads without checking at run time is taken on trust.
 *
 * Every page of the pool below its top is claimed at most once, by exactly one of: a device bus
 * page, a PASID directory or leaf page, a table page of one live engine domain (reached from its
 * root), the free list, the limbo ring, or a freed buffer run — so no table page is reachable from
 * two domains (two FDs), no free page is also in use, and every pointer the core follows stays
 * inside the pool. Then:
 * - devices: present contexts belong to restored devices; every non-empty PASID entry is an
 *   attachment of that device (whose PASID its FD owns), with directory counts matching;
 * - engine domains: fields as domainInit leaves them, entries well formed (live-entry counts, no
 *   stray bits, leaves only where the format allows, spare tables mapping nothing), DOM_PAGES the
 *   live pages reached and DOM_SPARE the spare ones, and the leaves exactly the areas of the HWPT's
 *   IOAS (the invariant unmap relies on);
 * - user-managed domains: fields as userDomainInit checks them, matching their HWPT;
 * - counters: pages in use, free pages, limbo records (epochs not ahead of the engine's), the
 *   owner's page-request ring.
 * @throws EINVAL (via `bad`).
 * @module
 */
import * as abi from '../../assembly/abi';
import type { DeviceFd } from '../iommufd/device';
import type { Engine } from '../iommufd/fd-state';
import type { FdState } from '../iommufd/fd-state';
import { HwptPaging } from '../iommufd/hwpt';
import { HwptUser } from '../iommufd/hwpt-user';
import { bad } from './json';

const PAGE = abi.PAGE_SIZE;
const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

/** Pool page ownership: each page below the top is claimed at most once. */
class PageClaims {
  private readonly owner: Uint8Array;
  claimed = 0;

  constructor(
    private readonly base: number,
    private readonly top: number,
  ) {
    this.owner = new Uint8Array((top - base) / PAGE);
  }

  claim(addr: number, what: string): void {
    if (addr % PAGE !== 0 || addr < this.base || addr >= this.top) bad(`image: ${what} at ${hex(addr)} is not a page of the pool`);
    const i = (addr - this.base) / PAGE;
    if (this.owner[i]) bad(`image: ${what} at ${hex(addr)} is also used by something else`);
    this.owner[i] = 1;
    this.claimed++;
  }
}

/** One leaf of an engine table: [iova, iova + size) -> phys with R/W/X `perm`. */
interface Leaf {
  iova: bigint;
  size: bigint;
  phys: bigint;
  perm: number;
}

/** Address bits 51:32 of an entry, in its high word (the address is bits 51:12). */
const ADDR_HI_MASK = 2 ** (abi.PTE_ADDR_SHIFT + abi.PTE_ADDR_BITS - 32) - 1;
const COUNT_MASK = 2 ** abi.PTE_COUNT_BITS - 1;
/** Bits a leaf may carry besides its address: R, W (never X: the engine maps none), PS, A, D. */
const LEAF_BITS = abi.PTE_R | abi.PTE_W | abi.PTE_PS | abi.PTE_A | abi.PTE_D;
const USER_FLAGS = abi.DOM_HWAD | abi.DOM_SUM | abi.DOM_SVPBMT | abi.DOM_SVNAPOT | abi.DOM_SVRSW60T59B | abi.DOM_PRI;

export function checkMemory(engine: Engine, states: readonly FdState[]): void {
  const core = engine.core;
  core.sync();
  const u32 = core.u32;
  const l = engine.layout;
  const top = core.ctrl(abi.CTRL_POOL_TOP);
  const pages = new PageClaims(l.poolBase, top);
  let used = 0; // pages CTRL_PAGES_USED must count

  // ---- Device contexts and PASID tables --------------------------------------------------------
  for (let bus = 0; bus < 256; bus++) {
    const page = u32[(l.devRoot >>> 2) + bus]!;
    if (page === 0) continue;
    pages.claim(page, `device bus ${bus} page`);
    used++;
    for (let devfn = 0; devfn < 256; devfn++) {
      const rid = (bus << 8) | devfn;
      const e = (page + devfn * abi.DEV_SIZE) >>> 2;
      const flags = u32[e + abi.DEV_FLAGS / 4]!;
      const dir = u32[e + abi.DEV_PASID_DIR / 4]!;
      const dev = engine.devices.get(rid);
      if (flags & ~(abi.DEV_PRESENT | abi.DEV_PRI)) bad(`image: device context ${hex(rid)} has unknown flags`);
      if (!(flags & abi.DEV_PRESENT)) {
        if (dev || u32[e + abi.DEV_RID_DOMAIN / 4] !== 0 || dir !== 0) bad(`image: absent device context ${hex(rid)} is in use`);
        continue;
      }
      if (!dev) bad(`image: device context ${hex(rid)} is present but no device has it`);
      if (dir !== 0) used += checkPasidTable(u32, pages, dev, dir);
    }
  }

  // ---- Domains ---------------------------------------------------------------------------------
  let spares = 0; // CTRL_SPARE_PAGES must count them
  const hwpts = new Map<number, HwptPaging | HwptUser>();
  for (const state of states) {
    for (const o of state.table.objects()) if (o instanceof HwptPaging || o instanceof HwptUser) hwpts.set(o.domain, o);
  }
  for (let i = 1; i < l.domainCount; i++) {
    const d = (l.domains + i * abi.DOM_SIZE) >>> 2;
    const word = (offset: number): number => u32[d + offset / 4]!;
    const flags = word(abi.DOM_FLAGS);
    const hwpt = hwpts.get(i);
    if (!(flags & abi.DOM_LIVE)) {
      if (flags !== 0 || word(abi.DOM_ROOT) !== 0 || word(abi.DOM_PAGES) !== 0 || word(abi.DOM_SPARE) !== 0) bad(`image: free domain ${i} holds a table`);
      continue;
    }
    if (hwpt instanceof HwptUser) {
      checkUserDomain(i, word, hwpt);
      continue;
    }
    if (!(hwpt instanceof HwptPaging)) bad(`image: live domain ${i} has no HWPT`);
    if (flags & ~(abi.DOM_LIVE | abi.DOM_EXT | abi.DOM_PRI | abi.DOM_DIRTY) || Boolean(flags & abi.DOM_EXT) !== Boolean(flags & abi.DOM_PRI)
      || word(abi.DOM_FORMAT) !== abi.FMT_ENGINE || word(abi.DOM_PARENT) !== 0 || word(abi.DOM_LEVELS) !== engine.levels) {
      bad(`image: engine domain ${i} is malformed`);
    }
    const leaves: Leaf[] = [];
    const root = word(abi.DOM_ROOT);
    pages.claim(root, `domain ${i} root table`);
    const found: TablePages = { live: 1, spare: 0 };
    walkTable(u32, pages, i, root, engine.levels - 1, 0n, leaves, found);
    if (word(abi.DOM_PAGES) !== found.live) bad(`image: domain ${i} counts ${word(abi.DOM_PAGES)} table pages, its tables have ${found.live}`);
    if (word(abi.DOM_SPARE) !== found.spare) bad(`image: domain ${i} counts ${word(abi.DOM_SPARE)} spare table pages, it has ${found.spare}`);
    used += found.live + found.spare;
    spares += found.spare;
    checkLeavesMatchAreas(i, leaves, hwpt);
  }

  if (core.ctrl(abi.CTRL_SPARE_PAGES) !== spares) bad(`image: ${core.ctrl(abi.CTRL_SPARE_PAGES)} spare table pages counted, ${spares} found`);

  // ---- Free space --------------------------------------------------------------------------------
  let free = 0;
  for (let p = core.ctrl(abi.CTRL_FREE_HEAD); p !== 0; p = u32[p >>> 2]!) {
    pages.claim(p, 'free page');
    free++;
  }
  // Clean pages are handed out as tables without zeroing: each must be zero but for its link word.
  for (let p = core.ctrl(abi.CTRL_CLEAN_HEAD); p !== 0; p = u32[p >>> 2]!) {
    pages.claim(p, 'clean free page');
    if (!zeroFrom(u32, p, 1)) bad(`image: clean free page ${hex(p)} is not zero`);
    free++;
  }
  if (free !== core.ctrl(abi.CTRL_FREE_COUNT)) bad(`image: the free list has ${free} pages, its count says ${core.ctrl(abi.CTRL_FREE_COUNT)}`);
  const head = core.ctrl(abi.CTRL_LIMBO_HEAD);
  const tail = core.ctrl(abi.CTRL_LIMBO_TAIL);
  const epoch = core.ctrl(abi.CTRL_EPOCH);
  if (((tail - head) >>> 0) > l.limboCap) bad('image: the limbo ring holds more than its capacity');
  for (let k = head; k !== tail; k = (k + 1) >>> 0) {
    const rec = (l.limbo + (k & (l.limboCap - 1)) * 8) >>> 2;
    const page = u32[rec]! & ~abi.LIMBO_CLEAN;
    pages.claim(page, 'page in limbo');
    if (u32[rec]! & abi.LIMBO_CLEAN && !zeroFrom(u32, page, 0)) bad(`image: clean page ${hex(page)} in limbo is not zero`);
    if (u32[rec + 1]! > epoch) bad('image: a page in limbo waits for an epoch the engine has not reached');
  }
  let prevEnd = -1;
  for (let run = core.ctrl(abi.CTRL_BUF_FREE); run !== 0; run = u32[run >>> 2]!) {
    const n = u32[(run >>> 2) + 1]!;
    if (run <= prevEnd || n === 0 || n > (top - l.poolBase) / PAGE) bad(`image: freed buffer run at ${hex(run)} is out of order or empty`);
    for (let k = 0; k < n; k++) pages.claim(run + k * PAGE, 'freed buffer page');
    prevEnd = run + n * PAGE;
    if (prevEnd === top) bad('image: a freed buffer run ends at the pool top (it would have been given back)');
  }
  // Pages claimed by nothing are leaked (never reachable): harmless, but counted as in use.
  const unclaimed = (top - l.poolBase) / PAGE - pages.claimed;
  if (core.ctrl(abi.CTRL_PAGES_USED) !== used + unclaimed) bad(`image: ${core.ctrl(abi.CTRL_PAGES_USED)} pages counted in use, ${used + unclaimed} found`);

  // ---- The owner's page-request ring (worker slots are zeroed on load) -------------------------
  const slot = l.slots >>> 2;
  if (((u32[slot + abi.SLOT_PRQ_TAIL / 4]! - u32[slot + abi.SLOT_PRQ_HEAD / 4]!) >>> 0) > abi.PRQ_ENTRIES) bad('image: the page-request ring holds more than its capacity');
}

/** True when the words of the page at `page` are zero from word `from` on. */
function zeroFrom(u32: Uint32Array, page: number, from: number): boolean {
  for (let w = (page >>> 2) + from, end = (page + PAGE) >>> 2; w < end; w++) if (u32[w] !== 0) return false;
  return true;
}

/** Checks the PASID directory `dir` of `dev`; returns the pages it uses (directory and leaves). */
function checkPasidTable(u32: Uint32Array, pages: PageClaims, dev: DeviceFd, dir: number): number {
  pages.claim(dir, `device ${dev.bdf} PASID directory`);
  const attached = dev.exportState().attached;
  let n = 1;
  for (let i = 0; i < abi.PASID_LEAF_ENTRIES; i++) {
    const word = u32[(dir >>> 2) + i]!;
    const leaf = word & ~abi.PASID_DIR_COUNT_MASK;
    const count = word & abi.PASID_DIR_COUNT_MASK;
    if (leaf === 0) {
      if (count !== 0) bad(`image: device ${dev.bdf} PASID directory entry ${i} counts PASIDs without a table`);
      continue;
    }
    pages.claim(leaf, `device ${dev.bdf} PASID table`);
    n++;
    let live = 0;
    for (let j = 0; j < abi.PASID_LEAF_ENTRIES; j++) {
      const domain = u32[(leaf >>> 2) + j]!;
      if (domain === 0) continue;
      live++;
      const pasid = (i << abi.PASID_LEAF_BITS) | j;
      // Only the device's own attachments (checked against its FD's PASIDs on load) may translate.
      if (attached.get(pasid)?.domain !== domain) bad(`image: device ${dev.bdf} PASID ${pasid} points at domain ${domain}, which is not its attachment`);
    }
    if (live === 0 || live !== count) bad(`image: device ${dev.bdf} PASID directory entry ${i} counts ${count}, its table has ${live}`);
  }
  return n;
}

/** Table pages found below a table: live ones and spare ones (assembly/spare.ts). */
interface TablePages {
  live: number;
  spare: number;
}

/**
 * Walks the engine table at `table` (level `level`, covering from `base`), claiming every child
 * table page, collecting the leaves in IOVA order and adding the pages below it to `found`. Each
 * table pointer counts the live entries of its table (leaves and pointers counting more than 0); a
 * pointer counting 0 is a spare table, which may hold only empty entries and spare tables.
 * @returns the live entries of this table. Entries are read as u32 halves (numbers, not bigints:
 * this runs on every restore).
 */
function walkTable(u32: Uint32Array, pages: PageClaims, dom: number, table: number, level: number, base: bigint, leaves: Leaf[], found: TablePages): number {
  let live = 0;
  const shift = abi.PAGE_SHIFT + level * abi.TABLE_INDEX_BITS;
  for (let i = 0; i < abi.TABLE_ENTRIES; i++) {
    const lo = u32[(table >>> 2) + 2 * i]!;
    const hi = u32[(table >>> 2) + 2 * i + 1]!;
    if (lo === 0 && hi === 0) continue;
    const at = `domain ${dom} entry ${i} of the level-${level} table at ${hex(table)}`;
    const rw = lo & (abi.PTE_R | abi.PTE_W);
    if (rw === 0) bad(`image: ${at} is empty but not zero`);
    const addrLo = lo & ~(PAGE - 1);
    const addrHi = hi & ADDR_HI_MASK;
    const count = (hi >>> (abi.PTE_COUNT_SHIFT - 32)) & COUNT_MASK;
    const lowBits = lo & (PAGE - 1);
    if (level === 0 || lo & abi.PTE_PS) {
      if (level > abi.MAX_LEAF_LEVEL || (lowBits & ~LEAF_BITS) !== 0 || (level === 0 && lo & abi.PTE_PS) || (hi & ~ADDR_HI_MASK) !== 0) bad(`image: ${at} is a malformed leaf`);
      const phys = addrHi * 2 ** 32 + (addrLo >>> 0);
      if (phys % 2 ** shift !== 0) bad(`image: ${at} maps a misaligned output`);
      leaves.push({ iova: base + (BigInt(i) << BigInt(shift)), size: 1n << BigInt(shift), phys: BigInt(phys), perm: rw });
      live++;
      continue;
    }
    if (lowBits !== (abi.PTE_R | abi.PTE_W) || addrHi !== 0 || (hi & ~(ADDR_HI_MASK | (COUNT_MASK << (abi.PTE_COUNT_SHIFT - 32)))) !== 0) bad(`image: ${at} is a malformed table pointer`);
    const child = addrLo >>> 0;
    pages.claim(child, `domain ${dom} table`);
    const below = leaves.length;
    const entries = walkTable(u32, pages, dom, child, level - 1, base + (BigInt(i) << BigInt(shift)), leaves, found);
    if (entries !== count) bad(`image: ${at} counts ${count} live entries, its table has ${entries}`);
    if (count === 0 && leaves.length !== below) bad(`image: ${at} is a spare table that maps something`);
    if (count === 0) found.spare++;
    else {
      found.live++;
      live++;
    }
  }
  return live;
}

/** The leaves of engine domain `dom` must be exactly the areas of its HWPT's IOAS. */
function checkLeavesMatchAreas(dom: number, leaves: readonly Leaf[], hwpt: HwptPaging): void {
  let k = 0;
  for (const a of hwpt.ioas.iopt.areas) {
    const perm = (a.read ? abi.PTE_R : 0) | (a.write ? abi.PTE_W : 0);
    for (let at = a.iova; at <= a.last; ) {
      const leaf = leaves[k++];
      if (!leaf || leaf.iova !== at || at + leaf.size - 1n > a.last || leaf.phys !== a.phys + (at - a.iova) || leaf.perm !== perm) {
        bad(`image: domain ${dom} does not map IOAS ${hwpt.ioas.id}'s area [${hex(a.iova)}, ${hex(a.last)}] as it should`);
      }
      at += leaf.size;
    }
  }
  if (k !== leaves.length) bad(`image: domain ${dom} maps ${hex(leaves[k]!.iova)}, which no area of IOAS ${hwpt.ioas.id} covers`);
}

/** A user-managed domain's descriptor as userDomainInit writes it, for HWPT `hwpt`. */
function checkUserDomain(dom: number, word: (offset: number) => number, hwpt: HwptUser): void {
  const flags = word(abi.DOM_FLAGS);
  const fmt = word(abi.DOM_FORMAT);
  const levels = word(abi.DOM_LEVELS);
  const root = (BigInt(word(abi.DOM_UROOT_HI)) << 32n) | BigInt(word(abi.DOM_UROOT_LO));
  const levelsOk = fmt === abi.FMT_X86_64 ? levels === 4 || levels === 5 : (fmt === abi.FMT_RISCV_S || fmt === abi.FMT_RISCV_G) && levels >= 3 && levels <= 5;
  const paBits = word(abi.DOM_PABITS);
  if (!(flags & abi.DOM_USER) || !(flags & abi.DOM_EXT) || (flags & ~(abi.DOM_LIVE | abi.DOM_EXT | abi.DOM_USER | USER_FLAGS)) !== 0 || !levelsOk
    || word(abi.DOM_ROOT) !== 0 || word(abi.DOM_PAGES) !== 0 || word(abi.DOM_SPARE) !== 0 || paBits < 12 || paBits > 56 || root !== hwpt.root
    || word(abi.DOM_PARENT) !== (hwpt.parent?.domain ?? 0) || Boolean(flags & abi.DOM_PRI) !== (hwpt.faultQueue !== undefined)) {
    bad(`image: user-managed domain ${dom} does not match HWPT ${hwpt.id}`);
  }
}
