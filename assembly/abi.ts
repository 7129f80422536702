// The ABI between the TS layer and the Wasm core, defined once.
//
// This file is compiled by both `asc` (assembly/) and `tsc`/esbuild (src/ imports it), so it holds
// only `export const NAME = <integer literal or expression of earlier constants>` lines with values
// below 2^31: no AS-only types, no decorators. 64-bit masks are derived from shifts on each side.
// The Wasm module exports `abiHash()`, computed from these constants; the TS loader recomputes it
// and refuses a binary built from another version of this file.
//
// Glossary (after Linux generic_pt): IOVA = input address; OA = output address; level 0 holds
// 4 KiB leaves; a *table* is one 4 KiB page of 512 u64 entries; start/last are inclusive bounds.

export const ABI_VERSION = 4;

// ---- Page geometry of engine-managed tables ----------------------------------------------------
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
export const TABLE_INDEX_BITS = 9;
export const TABLE_ENTRIES = 1 << TABLE_INDEX_BITS;
export const PTE_SIZE = 8;
/** Largest leaf level: 0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB. */
export const MAX_LEAF_LEVEL = 2;

// ---- Engine page-table entry (VT-d second-stage layout, VT-d spec §9.8) -------------------------
//   bit 0 R, bit 1 W, bit 2 X, bit 7 PS (leaf above level 0), bits 51:12 address,
//   bits 61:52 ignored by hardware: in a table entry they count the child's non-empty entries.
export const PTE_R = 1;
export const PTE_W = 2;
export const PTE_X = 4;
export const PTE_PS = 128;
/** Accessed and dirty (VT-d second stage bits 8 and 9); D is set on writes while dirty tracking is on. */
export const PTE_A = 256;
export const PTE_D = 512;
export const PTE_ADDR_SHIFT = 12;
export const PTE_ADDR_BITS = 40;
export const PTE_COUNT_SHIFT = 52;
export const PTE_COUNT_BITS = 10;

// ---- Access bits of a DMA request (QEMU IOMMU_RO/IOMMU_WO, PCIe PASID prefix Exe/Priv) --------
export const ACCESS_READ = 1;
export const ACCESS_WRITE = 2;
export const ACCESS_EXEC = 4;
export const ACCESS_PRIV = 8;
export const ACCESS_MASK = 15;

// ---- Request identity -------------------------------------------------------------------------
export const RID_BITS = 16;
export const PASID_BITS = 20;
/** The RID ("no PASID") attachment. PASID 0 is never allocated (as in Linux, IOMMU_NO_PASID). */
export const NO_PASID = 0;

// ---- Translation result record (per-call result slot and batch results), 16 bytes ------------
//   +0 physLo u32 | +4 physHi u32 | +8 info u32 | +12 reserved
//   info: bit 0 OK; OK: bits 3:1 perm (R=1 W=2 X=4), bits 5:4 memory type (RISC-V PBMT: 0 PMA,
//         1 NC, 2 IO), bits 13:8 log2(translation size), bits 21:16 access rights (INFO_CAP_*,
//         what the IOTLB hit check tests: rights per privilege, after U/SUM/XD/D rules);
//         fault: bits 23:16 reason, bits 27:24 level, bits 29:28 stage (0 engine-managed, 1, 2),
//         bit 14 a page request was queued, bit 30 a stage-2 fault on an implicit access (the
//         stage-1 walk's table read), bit 31 that implicit access was the A/D update write.
//         On a fault the phys words hold the fault address (0 if none): for a stage-2 fault the
//         GPA stage 2 was translating, for FAULT_OUTSIDE_RAM the physical table-entry address.
export const RES_SIZE = 16;
export const RES_PHYS_LO = 0;
export const RES_PHYS_HI = 4;
export const RES_INFO = 8;
export const INFO_OK = 1;
export const INFO_PERM_SHIFT = 1;
export const INFO_PERM_MASK = 7;
export const INFO_SIZE_SHIFT = 8;
export const INFO_SIZE_MASK = 63;
export const INFO_REASON_SHIFT = 16;
export const INFO_REASON_MASK = 255;
export const INFO_LEVEL_SHIFT = 24;
export const INFO_LEVEL_MASK = 15;
export const INFO_STAGE_SHIFT = 28;
export const INFO_STAGE_MASK = 3;
export const INFO_PBMT_SHIFT = 4;
export const INFO_PBMT_MASK = 3;
/** Access rights on OK results: R/W/X for unprivileged requests, then R/W/X for privileged ones. */
export const INFO_CAP_SHIFT = 16;
export const INFO_CAP_MASK = 63;
export const CAP_RU = 1;
export const CAP_WU = 2;
export const CAP_XU = 4;
export const CAP_RS = 8;
export const CAP_WS = 16;
export const CAP_XS = 32;
export const INFO_PAGE_REQUEST = 1 << 14;
export const INFO_IMPLICIT = 1 << 30;
export const INFO_IMPLICIT_WRITE = 1 << 31;

// ---- Batch request record, 16 bytes -------------------------------------------------------------
//   +0 rid u16 | access u8 << 16 | +4 pasid u32 | +8 iovaLo u32 | +12 iovaHi u32
export const REQ_SIZE = 16;
export const REQ_RID_ACCESS = 0;
export const REQ_ACCESS_SHIFT = 16;
export const REQ_PASID = 4;
export const REQ_IOVA_LO = 8;
export const REQ_IOVA_HI = 12;

// ---- Map record of the batch exports mapBatch / unmapBatch, 32 bytes -----------------------------
//   +0 iova u64 | +8 output address u64 | +16 length u64 (unmap: last IOVA, inclusive) |
//   +24 perm u32 (PTE_R/PTE_W; unused by unmap) | +28 status i32, written by the core (STATUS_*)
export const MAPREC_SIZE = 32;
export const MAPREC_IOVA = 0;
export const MAPREC_PHYS = 8;
export const MAPREC_LENGTH = 16;
export const MAPREC_LAST = 16;
export const MAPREC_PERM = 24;
export const MAPREC_STATUS = 28;

// ---- Fault reasons (enum; FAULT_MAX is the guard) -------------------------------------------------
export const FAULT_NONE = 0;
/** Malformed request (rid, pasid, access or address not representable). */
export const FAULT_BAD_REQUEST = 1;
/** No device context for this requester ID. */
export const FAULT_NO_DEVICE = 2;
/** The RID or PASID is not attached to an address space (DMA blocked). */
export const FAULT_NOT_ATTACHED = 3;
/** PASID beyond the device's PASID width, or the device has PASIDs disabled. */
export const FAULT_PASID_INVALID = 4;
/** Address beyond the domain's input width. */
export const FAULT_BEYOND_WIDTH = 5;
/** No entry at `level`. */
export const FAULT_NOT_PRESENT = 6;
/** The leaf does not grant the requested access. */
export const FAULT_PERMISSION = 7;
/** A reserved bit is set (or a malformed entry: RISC-V W without R, a level-0 pointer). */
export const FAULT_RESERVED = 8;
/** A superpage leaf whose output address is not aligned to its size (RISC-V). */
export const FAULT_MISALIGNED = 9;
/** The input address is not sign-extended from the format's top bit. */
export const FAULT_NON_CANONICAL = 10;
/** The leaf needs an accessed/dirty update and hardware A/D updating is off. */
export const FAULT_AD_DISABLED = 11;
/** A table entry lies outside guest RAM. */
export const FAULT_OUTSIDE_RAM = 12;
export const FAULT_MAX = 13;
/** Room for per-reason counters in a translator slot. */
export const FAULT_REASON_SLOTS = 16;

// ---- Control block: the root of all shared state, at CTRL_BASE ---------------------------------
// Laid out by src/core/layout.ts; every pointer is a byte offset into the one WebAssembly.Memory.
export const CTRL_BASE = 1024;
export const CTRL_MAGIC = 0;
export const CTRL_ABI = 4;
/** u32[256]: bus number -> device page (256 device entries), 0 = none. */
export const CTRL_DEV_ROOT = 8;
export const CTRL_DOMAINS = 12;
export const CTRL_DOMAIN_COUNT = 16;
export const CTRL_SLOTS = 20;
export const CTRL_SLOT_COUNT = 24;
export const CTRL_SLOT_SIZE = 28;
/** IOTLB sets per translator slot (power of two). */
export const CTRL_IOTLB_SETS = 32;
/** Page pool: [POOL_BASE, POOL_TOP) handed out so far; POOL_LIMIT = end of memory allowed. */
export const CTRL_POOL_BASE = 36;
export const CTRL_POOL_TOP = 40;
export const CTRL_POOL_LIMIT = 44;
export const CTRL_FREE_HEAD = 48;
export const CTRL_PAGES_USED = 52;
/** Reclamation epoch, advanced after every control call that unlinks pages. */
export const CTRL_EPOCH = 56;
/** Limbo ring of unlinked pages waiting for translators to leave older epochs. */
export const CTRL_LIMBO = 60;
export const CTRL_LIMBO_CAP = 64;
export const CTRL_LIMBO_HEAD = 68;
export const CTRL_LIMBO_TAIL = 72;
/** Limbo record flag on the page address (pages are 4 KiB aligned): the page is all zero (a clean table). */
export const LIMBO_CLEAN = 1;
/** Fault injection: when nonzero, counts down on each fallible step; the step reaching 0 fails. */
export const CTRL_FAIL_COUNTDOWN = 76;
/** Bumped (after the change) whenever a device/PASID context loses or changes its domain. */
export const CTRL_CTX_GEN = 80;
export const CTRL_FREE_COUNT = 84;
export const CTRL_PAGES_GROWN = 88;
/** Guest RAM: the RAM window table (RAMWIN_* records, sorted by base) and its record count. */
export const CTRL_RAM_WINDOWS = 92;
export const CTRL_RAM_COUNT = 96;
/**
 * Head of the clean free list: retired engine table pages, all zero but for the link word, which
 * pageAlloc hands out without zeroing them again (0 = empty; older images leave it 0).
 */
export const CTRL_CLEAN_HEAD = 100;
/** Entries of each slot's call cache (a power of two, 0 = none; see CALL_* below). */
export const CTRL_CALL_ENTRIES = 104;
/** Head of the list of freed buffer runs (assembly/pool.ts), 0 when empty. */
export const CTRL_BUF_FREE = 108;
/**
 * Shootdown count: bumped (after the change) by every operation that may end a cached translation
 * — a domain generation, a context, an IOTLB invalidation (assembly/shootdown.ts). A cache outside
 * the core (src/dma/call-tlb.ts) keeps a result only while this word still reads as it did before
 * the translation that produced it.
 */
export const CTRL_SHOOTDOWN = 112;
/** Spare table pages of every domain: the sum of their DOM_SPARE (assembly/spare.ts bounds it). */
export const CTRL_SPARE_PAGES = 116;
export const CTRL_SIZE = 128;

export const CTRL_MAGIC_VALUE = 0x494f4153; // "IOAS"

// ---- RAM window record, 16 bytes, RAM_WINDOWS_MAX per engine (assembly/ram.ts) --------------------
//   +0 guest-physical base lo | +4 hi | +8 bytes | +12 memory offset, or RAMWIN_EXTERNAL when the
//   window is a buffer outside the memory (reached through the env.ramLoad/env.ramCas imports)
export const RAMWIN_SIZE = 16;
export const RAMWIN_BASE_LO = 0;
export const RAMWIN_BASE_HI = 4;
export const RAMWIN_BYTES = 8;
export const RAMWIN_OFFSET = 12;
export const RAMWIN_EXTERNAL = -1;
export const RAM_WINDOWS_MAX = 16;

// ---- Device context entry, 16 bytes (256 per device page) -----------------------------------------
//   +0 flags | +4 RID domain (0 = blocked) | +8 PASID directory page | +12 PASID width (bits)
export const DEV_SIZE = 16;
export const DEV_FLAGS = 0;
export const DEV_RID_DOMAIN = 4;
export const DEV_PASID_DIR = 8;
export const DEV_PASID_BITS = 12;
export const DEV_PRESENT = 1;
/** The device sends PCIe page requests (PRI) for recoverable faults. */
export const DEV_PRI = 2;

// ---- PASID table: two levels of 1024 u32 -------------------------------------------------------------
//   directory[pasid >> 10] = leaf page | live entry count (low 11 bits); leaf[pasid & 1023] = domain.
export const PASID_LEAF_BITS = 10;
export const PASID_LEAF_ENTRIES = 1 << PASID_LEAF_BITS;
export const PASID_DIR_COUNT_MASK = 2047;

// ---- Domain descriptor, 64 bytes; index 0 is never a valid domain -------------------------------
//   +0 root table | +4 levels (3..5) | +8 generation (IOTLB validity) | +12 flags | +16 table pages
//   | +20 format | +24 parent domain (stage 2; 0 = none) | +28 invalidation sequence
//   | +32 user table root lo | +36 hi (guest-physical, or a GPA when nested) | +40 output address bits
//   | +44 spare table pages (engine tables: emptied by a partial unmap, kept linked for reuse)
export const DOM_SIZE = 64;
export const DOM_ROOT = 0;
export const DOM_LEVELS = 4;
export const DOM_GEN = 8;
export const DOM_FLAGS = 12;
export const DOM_LIVE = 1;
export const DOM_PAGES = 16;
export const DOM_FORMAT = 20;
export const DOM_PARENT = 24;
export const DOM_INVSEQ = 28;
export const DOM_UROOT_LO = 32;
export const DOM_UROOT_HI = 36;
export const DOM_PABITS = 40;
/**
 * Spare tables of an engine domain: pages that a partial unmap emptied, kept linked (their entry
 * counts 0 live entries, so translators see nothing there) for the next map nearby to reuse, as
 * Linux's VT-d and io-pgtable keep them. Not in DOM_PAGES (the live tables). assembly/pagetable.ts.
 */
export const DOM_SPARE = 44;
/** The miss path takes the extended walker (user-managed table, or page requests enabled). */
export const DOM_EXT = 2;
/** Hardware A/D updating for this domain's table. */
export const DOM_HWAD = 4;
/** RISC-V SUM: supervisor requests may read/write U pages. */
export const DOM_SUM = 8;
export const DOM_SVPBMT = 16;
export const DOM_SVNAPOT = 32;
export const DOM_SVRSW60T59B = 64;
/** Recoverable faults of requests attached here queue page requests (a fault queue is set). */
export const DOM_PRI = 128;
/** Table kept in guest RAM by its user (reads are bounds-checked against RAM). */
export const DOM_USER = 256;
/** Dirty tracking on (engine tables): a write to a leaf without D sets D before it may be cached writable. */
export const DOM_DIRTY = 512;

// ---- Table formats (DOM_FORMAT); each is a plug-in of assembly/ptwalk.ts in assembly/fmt/ -----------
/** VT-d second stage, engine-managed tables in the page pool (fmt/engine.ts). */
export const FMT_ENGINE = 0;
/** x86-64 4/5-level paging: VT-d first stage, AMD v2 (fmt/x86_64.ts). */
export const FMT_X86_64 = 1;
/** RISC-V Sv39/Sv48/Sv57, S/VS stage (fmt/riscv.ts). */
export const FMT_RISCV_S = 2;
/** RISC-V Sv39x4/Sv48x4/Sv57x4, G stage (fmt/riscv.ts). */
export const FMT_RISCV_G = 3;
export const FMT_COUNT = 4;

// ---- Translator slot: one per thread that translates (slot 0 = the owner) ------------------------
//   +0 announced epoch (0 = quiescent) | +8 hits u64 | +16 misses u64 | +24 faults u64
//   +32 result record (RES_SIZE) | +64 u32 fault count per reason (up to 16 reasons)
//   | +128 table entries read by the extended walker u64 | +136 page-request ring tail (written by
//   the slot's thread) | +140 head (written by the owner) | +144 requests lost to a full ring
//   | page-request ring at +SLOT_PRQ | IOTLB at +SLOT_IOTLB | call cache right after the IOTLB
export const SLOT_EPOCH = 0;
export const SLOT_HITS = 8;
export const SLOT_MISSES = 16;
export const SLOT_FAULTS = 24;
export const SLOT_RESULT = 32;
export const SLOT_REASONS = 64;
export const SLOT_WALK_READS = 128;
export const SLOT_PRQ_TAIL = 136;
export const SLOT_PRQ_HEAD = 140;
export const SLOT_PRQ_LOST = 144;
/**
 * u32[2]: bit (dom & 63) set once this slot's IOTLB cached a leaf larger than 4 KiB for a domain
 * with that number mod 64 (a hint for leaf-aware invalidation; cleared only with the whole slot).
 */
export const SLOT_SUPER_DOMAINS = 152;
export const SLOT_PRQ = 512;
export const SLOT_IOTLB = 4096;

// ---- Call cache entry, 32 bytes, CTRL_CALL_ENTRIES per slot (assembly/callcache.ts) ---------------
// What the per-call path (src/dma/call-tlb.ts) answers without entering the core: per (rid, pasid,
// 4 KiB page), the core's info word and output page, the access values (0..15) it answered that way,
// and the shootdown count (CTRL_SHOOTDOWN) read before those translations. Direct mapped: entry
// (v ^ (v >> 8) * 17 ^ rid << 5) & (entries - 1), v = page number bits 0..31 (the pages of an
// aligned 1 MiB block never collide, nor do small buffers 1 MiB apart); written by the core in the
// slot's own thread, read by its JS.
//   +0 page number bits 0..31 | +4 key: rid | page number bits 32..46 << 16 | +8 pasid
//   | +12 access set (bit a: access value a) | +16 info | +20 output page lo (bits 0..11 clear)
//   | +24 output hi | +28 shootdown count
// Both sizes are powers of two: src/dma/call-tlb.ts masks word indices with them.
export const CALL_ENTRY_SIZE = 32;
export const CALL_ENTRIES_MAX = 256;
export const CALL_VPN_LO = 0;
export const CALL_KEY = 4;
export const CALL_PASID = 8;
export const CALL_ACCESSES = 12;
export const CALL_INFO = 16;
export const CALL_OUT_LO = 20;
export const CALL_OUT_HI = 24;
export const CALL_COUNT = 28;

// ---- Page-request record, 32 bytes, PRQ_ENTRIES per slot ring (single producer, owner consumes) ----
//   +0 rid | access << 16 | +4 pasid | +8 iova lo | +12 iova hi | +16 domain | +20 fault info
export const PRQ_SIZE = 32;
export const PRQ_ENTRIES = 64;
export const PRQ_RID_ACCESS = 0;
export const PRQ_PASID = 4;
export const PRQ_IOVA_LO = 8;
export const PRQ_IOVA_HI = 12;
export const PRQ_DOMAIN = 16;
export const PRQ_INFO = 20;

// ---- IOTLB entry, 32 bytes; 2 ways per 64-byte set -------------------------------------------------
//   +0 vpnLo | +4 vpnHi | rid << 13 | VALID | +8 pasid | +12 domain | +16 domain generation at fill
//   +20 info (as RES_INFO for a hit) | +24 phys of the 4 KiB page lo | +28 hi
export const TLB_ENTRY_SIZE = 32;
export const TLB_WAYS = 2;
export const TLB_SET_SIZE = TLB_ENTRY_SIZE * TLB_WAYS;
export const TLB_VPN_LO = 0;
export const TLB_KEY_HI = 4;
export const TLB_RID_SHIFT = 13;
export const TLB_VALID = 1 << 31;
export const TLB_PASID = 8;
export const TLB_DOMAIN = 12;
export const TLB_GEN = 16;
export const TLB_INFO = 20;
export const TLB_PHYS_LO = 24;
export const TLB_PHYS_HI = 28;

// ---- Status codes returned by control exports (0 = ok, negative Linux errno) ----------------------
export const STATUS_OK = 0;
export const STATUS_ENOMEM = -12;
export const STATUS_EINVAL = -22;
