// A tiny emulated machine in AssemblyScript, compiled separately from ioasid (build.mjs): it owns
// its WebAssembly.Memory — guest RAM, and a region it lends to ioasid — and has one DMA-capable
// device. The guest programs x86-64 page tables (Intel SDM Vol. 3A §4.5) in its own RAM for the
// device; the device translates every page of a transfer through the IOMMU (the imported
// `translate`, ioasid's) and copies within this memory. ioasid walks the guest's tables where they
// are and sets their A/D bits there: nothing is copied between the two modules.
//
// Memory map (this module's memory, byte offsets):
//   [0, 1 MiB)        the module's own data (stack, statics)
//   [1 MiB, 2 MiB)    guest RAM, guest-physical [0x8000_0000, 0x8010_0000)
//   [2 MiB, 5 MiB)    the region lent to ioasid (all of its state)

const RAM_OFFSET: u32 = 1 << 20;
const RAM_BYTES: u32 = 1 << 20;
const RAM_BASE: u64 = 0x8000_0000;
const REGION_OFFSET: u32 = 2 << 20;
const REGION_BYTES: u32 = 3 << 20;
const PAGE: u32 = 4096;
/** x86-64 entry bits: present, writable, user. */
const P_RW_US: u64 = 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/** The IOMMU: output address of `iova` for requester `rid` and `access` (1 read, 2 write), or -1. */
// @ts-ignore: decorator
@external("host", "translate")
declare function translate(rid: u32, iovaLo: u32, iovaHi: u32, access: u32): f64;

export function ramOffset(): u32 { return RAM_OFFSET; }
export function ramBytes(): u32 { return RAM_BYTES; }
export function ramBase(): u64 { return RAM_BASE; }
export function regionOffset(): u32 { return REGION_OFFSET; }
export function regionBytes(): u32 { return REGION_BYTES; }

/** Next free guest page for tables (a bump allocator over the top half of RAM). */
let nextTable: u64 = RAM_BASE + (RAM_BYTES >> 1);

// @ts-ignore: decorator
@inline function at(gpa: u64): usize {
  return <usize>(RAM_OFFSET + <u32>(gpa - RAM_BASE));
}

function newTable(): u64 {
  const t = nextTable;
  nextTable += PAGE;
  memory.fill(at(t), 0, PAGE);
  return t;
}

/** The guest's root table (allocated on first use). */
let root: u64 = 0;

/**
 * The guest maps IOVA [iova, iova + pages * 4 KiB) to its RAM pages [firstPage, +pages) for the
 * device, writing 4-level x86-64 tables into its RAM; returns the root's guest-physical address.
 */
export function guestMap(iova: u64, pages: u32, firstPage: u32): u64 {
  if (root == 0) root = newTable();
  for (let i: u32 = 0; i < pages; i++) {
    const va = iova + (<u64>i << 12);
    let table = root;
    for (let level: i32 = 3; level > 0; level--) {
      const entry = at(table + (((va >> (12 + 9 * <u64>level)) & 511) << 3));
      let e = load<u64>(entry);
      if ((e & 1) == 0) {
        e = newTable() | P_RW_US;
        store<u64>(entry, e);
      }
      table = e & ADDR_MASK;
    }
    store<u64>(at(table + (((va >> 12) & 511) << 3)), (RAM_BASE + (<u64>(firstPage + i) << 12)) | P_RW_US);
  }
  return root;
}

/** The entry the guest's tables use for `iova` at `level` (to show the A/D bits ioasid set). */
export function guestEntry(iova: u64, level: i32): u64 {
  let table = root;
  let e: u64 = 0;
  for (let l: i32 = 3; l >= level; l--) {
    e = load<u64>(at(table + (((iova >> (12 + 9 * <u64>l)) & 511) << 3)));
    table = e & ADDR_MASK;
  }
  return e;
}

/**
 * The device writes `length` bytes of a pattern starting with `seed` at `iova`, page by page,
 * each page translated by the IOMMU; returns the bytes written before the first fault.
 */
export function deviceWrite(rid: u32, iova: u64, length: u32, seed: u32): u32 {
  let done: u32 = 0;
  while (done < length) {
    const va = iova + done;
    const phys = translate(rid, <u32>va, <u32>(va >> 32), 2);
    if (phys < 0) return done;
    const off = <u64>phys - RAM_BASE;
    const room = PAGE - (<u32>va & (PAGE - 1));
    const chunk = min(room, length - done);
    if (<u64>phys < RAM_BASE || off + chunk > RAM_BYTES) return done;
    for (let b: u32 = 0; b < chunk; b++) store<u8>(RAM_OFFSET + <u32>off + b, <u8>(seed + done + b));
    done += chunk;
  }
  return done;
}

/** Sum of guest RAM bytes [gpa, gpa + length) (what the guest sees). */
export function guestSum(gpa: u64, length: u32): u32 {
  let sum: u32 = 0;
  for (let b: u32 = 0; b < length; b++) sum += load<u8>(at(gpa) + b);
  return sum;
}
