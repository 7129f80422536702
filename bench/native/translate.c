// Native baseline: assembly/translate.ts (with context.ts, walk.ts, fmt/engine.ts, the fill policy
// of iotlb.ts and ptwalk.ts's neededCaps) in plain C, over the engine's own WebAssembly.Memory,
// exposed to the bench as a Node-API addon.
//
// Same algorithm, step for step: IOTLB lookup (same 2-way sets, same hash, same 32-byte entries,
// same generation and rights check) -> on a miss: epoch announcement, device table -> PASID table
// -> domain -> walk (redone if a context change overlapped it; D bit set under dirty tracking)
// -> in-place IOTLB fill (same victim choice; key published atomically, withdrawn if the domain
// generation, invalidation sequence or context generation moved) -> same result records and slot
// counters. Extended domains (user-managed tables, DOM_EXT) are not mirrored: the bench never
// creates them.
//
// Pointers are u32 byte offsets into the memory, exactly as in Wasm (`M + offset`); atomic loads
// and stores sit where the AssemblyScript has them. The constants come from abi.h, which the bench
// generates from assembly/abi.ts at build time (the ABI is defined once).
//
// Exports: bind(u8 view of memory, ctrl, slot), batch(req, res, n) -> faults,
// calls(req, res, n) -> faults (one noinline translate() per request, as the per-call export).

#include <node_api.h>
#include <stdint.h>
#include "abi.h"

static uint8_t *M;
static uint32_t ctrl, devRoot, domains, slot, iotlb, iotlbSetMask;

#define LD32(p) (*(uint32_t *)(M + (uint32_t)(p)))
#define LD64(p) (*(uint64_t *)(M + (uint32_t)(p)))
#define ST32(p, v) (*(uint32_t *)(M + (uint32_t)(p)) = (v))
#define ST64(p, v) (*(uint64_t *)(M + (uint32_t)(p)) = (v))
#define ALD32(p) __atomic_load_n((uint32_t *)(M + (uint32_t)(p)), __ATOMIC_SEQ_CST)
#define ALD64(p) __atomic_load_n((uint64_t *)(M + (uint32_t)(p)), __ATOMIC_SEQ_CST)
#define AST32(p, v) __atomic_store_n((uint32_t *)(M + (uint32_t)(p)), (v), __ATOMIC_SEQ_CST)

static const uint64_t PAGE_MASK = ((uint64_t)1 << PAGE_SHIFT) - 1;
static const uint64_t ADDR_MASK = (((uint64_t)1 << PTE_ADDR_BITS) - 1) << PTE_ADDR_SHIFT;

static inline uint32_t levelShift(uint32_t level) { return PAGE_SHIFT + level * TABLE_INDEX_BITS; }
/** ptwalk.ts neededCaps: the request's R/W/X, in the privileged half when Priv is set. */
static inline uint32_t neededCaps(uint32_t access) { return (access & 7) << ((access >> 3) * 3); }
/** fmt/engine.ts entryCaps: R serves reads and execution, W serves writes, either privilege. */
static inline uint32_t entryCaps(uint32_t perm) {
  return ((perm & PTE_R) ? CAP_RU | CAP_XU | CAP_RS | CAP_XS : 0) | ((perm & PTE_W) ? CAP_WU | CAP_WS : 0);
}
static inline uint32_t faultInfo(uint32_t reason, uint32_t level) {
  return (reason << INFO_REASON_SHIFT) | (level << INFO_LEVEL_SHIFT);
}
static inline uint32_t setOf(uint32_t rid, uint32_t pasid, uint32_t vpnLo) {
  uint32_t h = vpnLo ^ ((pasid | (rid << PASID_BITS)) * 0x9e3779b1u);
  return iotlb + ((h ^ (h >> 16)) & iotlbSetMask) * TLB_SET_SIZE;
}
static inline void bump(uint32_t offset) { ST64(slot + offset, LD64(slot + offset) + 1); }

static inline uint32_t lookup(uint32_t rid, uint32_t pasid, uint64_t iova, uint32_t need, uint32_t out) {
  uint64_t vpn = iova >> PAGE_SHIFT;
  uint32_t vpnLo = (uint32_t)vpn;
  if ((uint32_t)(vpn >> 32) >> TLB_RID_SHIFT) return 0; /* would spill into the RID bits: slow path */
  uint32_t keyHi = (uint32_t)(vpn >> 32) | (rid << TLB_RID_SHIFT) | (uint32_t)TLB_VALID;
  uint32_t e = setOf(rid, pasid, vpnLo);
  for (int way = 0; way < 2; way++, e += TLB_ENTRY_SIZE) {
    if (LD32(e + TLB_VPN_LO) != vpnLo || LD32(e + TLB_KEY_HI) != keyHi || LD32(e + TLB_PASID) != pasid) continue;
    uint32_t gen = ALD32(domains + LD32(e + TLB_DOMAIN) * DOM_SIZE + DOM_GEN);
    uint32_t info = LD32(e + TLB_INFO);
    if (gen != LD32(e + TLB_GEN) || ((info >> INFO_CAP_SHIFT) & need) != need) return 0;
    ST64(out + RES_PHYS_LO, LD64(e + TLB_PHYS_LO) + (iova & PAGE_MASK));
    return info;
  }
  return 0;
}

static inline uint32_t deviceEntry(uint32_t rid) {
  uint32_t page = ALD32(devRoot + ((rid >> 8) << 2));
  return page == 0 ? 0 : page + (rid & 255) * DEV_SIZE;
}

static inline uint32_t pasidDomain(uint32_t dev, uint32_t pasid) {
  uint32_t dir = ALD32(dev + DEV_PASID_DIR);
  if (dir == 0) return 0;
  uint32_t leaf = ALD32(dir + ((pasid >> PASID_LEAF_BITS) << 2)) & ~(uint32_t)PASID_DIR_COUNT_MASK;
  if (leaf == 0) return 0;
  return ALD32(leaf + ((pasid & (PASID_LEAF_ENTRIES - 1)) << 2));
}

static uint32_t contextDomain(uint32_t rid, uint32_t pasid) {
  uint32_t dev = deviceEntry(rid);
  if (dev == 0 || !(ALD32(dev + DEV_FLAGS) & DEV_PRESENT)) return 0x80000000u | faultInfo(FAULT_NO_DEVICE, 0);
  uint32_t dom;
  if (pasid == NO_PASID) {
    dom = ALD32(dev + DEV_RID_DOMAIN);
  } else {
    if (pasid >> (LD32(dev + DEV_PASID_BITS) & 31)) /* Wasm shifts mod 32 */ return 0x80000000u | faultInfo(FAULT_PASID_INVALID, 0);
    dom = pasidDomain(dev, pasid);
  }
  return dom == 0 ? 0x80000000u | faultInfo(FAULT_NOT_ATTACHED, 0) : dom;
}

static uint32_t walkLevel;
/** Address of the leaf entry walk() returned (valid only when it returned a leaf). */
static uint32_t walkSlot;

static uint64_t walk(uint32_t root, uint32_t levels, uint64_t iova) {
  uint32_t table = root;
  uint32_t level = levels - 1;
  for (;;) {
    uint32_t index = (uint32_t)(iova >> levelShift(level)) & (TABLE_ENTRIES - 1);
    uint32_t at = table + index * PTE_SIZE;
    uint64_t e = ALD64(at);
    if ((e & (uint64_t)(PTE_R | PTE_W)) == 0) break;
    if (level == 0 || (e & (uint64_t)PTE_PS) != 0) {
      walkLevel = level;
      walkSlot = at;
      return e;
    }
    table = (uint32_t)(e & ADDR_MASK);
    level--;
  }
  walkLevel = level;
  return 0;
}

/** iotlb.ts victim: the way a fill of key (vpnLo, keyHi, pasid) overwrites, in place. */
static uint32_t victimBit;
static inline uint32_t victim(uint32_t set, uint32_t vpnLo, uint32_t keyHi, uint32_t pasid) {
  uint32_t other = set + TLB_ENTRY_SIZE;
  if (LD32(set + TLB_VPN_LO) == vpnLo && LD32(set + TLB_KEY_HI) == keyHi && LD32(set + TLB_PASID) == pasid) return set;
  if (LD32(other + TLB_VPN_LO) == vpnLo && LD32(other + TLB_KEY_HI) == keyHi && LD32(other + TLB_PASID) == pasid) return other;
  if (!(LD32(set + TLB_KEY_HI) & TLB_VALID)) return set;
  if (!(LD32(other + TLB_KEY_HI) & TLB_VALID)) return other;
  victimBit ^= 1;
  return set + victimBit * TLB_ENTRY_SIZE;
}

/**
 * iotlb.ts fill: writes the fields, publishes the key atomically, and withdraws it if the domain
 * generation, its invalidation sequence or CTRL_CTX_GEN moved during the walk.
 */
static void fill(uint32_t rid, uint32_t pasid, uint64_t iova, uint32_t dom, uint32_t d, uint32_t gen, uint32_t seq, uint32_t ctxGen, uint32_t info, uint64_t phys) {
  uint64_t vpn = iova >> PAGE_SHIFT;
  if ((uint32_t)(vpn >> 32) >> TLB_RID_SHIFT) return; /* page numbers from 2^45 do not fit a key */
  uint32_t keyHi = (uint32_t)(vpn >> 32) | (rid << TLB_RID_SHIFT) | (uint32_t)TLB_VALID;
  uint32_t e = victim(setOf(rid, pasid, (uint32_t)vpn), (uint32_t)vpn, keyHi, pasid);
  ST32(e + TLB_VPN_LO, (uint32_t)vpn);
  ST32(e + TLB_PASID, pasid);
  ST32(e + TLB_DOMAIN, dom);
  ST32(e + TLB_GEN, gen);
  ST32(e + TLB_INFO, info);
  ST64(e + TLB_PHYS_LO, phys & ~PAGE_MASK);
  /* iotlb.ts `fill` for engine tables (not scanned): re-check the counters, then a plain store. */
  int moved = ALD32(d + DOM_GEN) != gen || ALD32(d + DOM_INVSEQ) != seq || ALD32(ctrl + CTRL_CTX_GEN) != ctxGen;
  ST32(e + TLB_KEY_HI, moved ? 0 : keyHi);
}

/** Reported as a bad request; the bench checks every result against the Wasm's, so it would fail loudly. */
static uint32_t extendedUnsupported(void) { return faultInfo(FAULT_BAD_REQUEST, 0); }

/** translate.ts missOnce: one attempt of the miss path (epoch announced); phys at out, returns info. */
static uint32_t missOnce(uint32_t rid, uint32_t pasid, uint64_t iova, uint32_t access, uint32_t out) {
  uint32_t ctxGen = ALD32(ctrl + CTRL_CTX_GEN);
  uint32_t dom = contextDomain(rid, pasid);
  if (dom & 0x80000000u) return dom & 0x7fffffffu;
  uint32_t d = domains + dom * DOM_SIZE;
  uint32_t gen = ALD32(d + DOM_GEN);
  uint32_t seq = ALD32(d + DOM_INVSEQ);
  uint32_t flags = ALD32(d + DOM_FLAGS);
  /* Extended domains miss through nested.ts in the Wasm; the bench never creates them. */
  if (flags & DOM_EXT) return extendedUnsupported();
  uint32_t need = neededCaps(access);
  uint32_t levels = LD32(d + DOM_LEVELS);
  if (iova >> levelShift(levels) != 0) return faultInfo(FAULT_BEYOND_WIDTH, levels - 1);
  /* Root 0: the domain is being freed (its context already changed; miss() walks again). */
  uint32_t root = ALD32(d + DOM_ROOT);
  if (root == 0) return faultInfo(FAULT_NOT_ATTACHED, 0);
  uint64_t leaf = walk(root, levels, iova);
  uint32_t level = walkLevel;
  if (leaf == 0) return faultInfo(FAULT_NOT_PRESENT, level);
  uint32_t perm = (uint32_t)(leaf & (PTE_R | PTE_W | PTE_X));
  uint32_t caps = entryCaps(perm);
  if ((caps & need) != need) return faultInfo(FAULT_PERMISSION, level);
  uint32_t shift = levelShift(level);
  uint64_t phys = (leaf & ADDR_MASK) + (iova & (((uint64_t)1 << shift) - 1));
  uint32_t info = INFO_OK | (perm << INFO_PERM_SHIFT) | (shift << INFO_SIZE_SHIFT) | (caps << INFO_CAP_SHIFT);
  ST64(out + RES_PHYS_LO, phys);
  /* Dirty tracking: a write marks the leaf dirty; a clean leaf is cached without write rights. */
  uint32_t fillInfo = info;
  if ((flags & DOM_DIRTY) && !(leaf & (uint64_t)PTE_D)) {
    if (access & ACCESS_WRITE) {
      uint64_t expected = leaf;
      __atomic_compare_exchange_n((uint64_t *)(M + walkSlot), &expected, leaf | (uint64_t)PTE_D, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    } else {
      fillInfo = info & ~((uint32_t)(CAP_WU | CAP_WS) << INFO_CAP_SHIFT);
    }
  }
  fill(rid, pasid, iova, dom, d, gen, seq, ctxGen, fillInfo, phys);
  return info;
}

/** A walk that overlapped a context change is done again against the new context. */
static uint32_t miss(uint32_t rid, uint32_t pasid, uint64_t iova, uint32_t access, uint32_t out) {
  for (int attempt = 0; attempt < 1000; attempt++) {
    uint32_t ctxGen = ALD32(ctrl + CTRL_CTX_GEN);
    uint32_t info = missOnce(rid, pasid, iova, access, out);
    if (ALD32(ctrl + CTRL_CTX_GEN) == ctxGen) return info;
  }
  ST64(out + RES_PHYS_LO, 0);
  return faultInfo(FAULT_NOT_ATTACHED, 0);
}

static inline int valid(uint32_t rid, uint32_t pasid, uint32_t access) {
  return (rid >> RID_BITS) == 0 && (pasid >> PASID_BITS) == 0 && (access & ~(uint32_t)ACCESS_MASK) == 0;
}

static uint32_t slowPath(uint32_t rid, uint32_t pasid, uint64_t iova, uint32_t access, uint32_t out) {
  uint32_t info;
  if (valid(rid, pasid, access)) {
    bump(SLOT_MISSES);
    info = miss(rid, pasid, iova, access, out);
  } else {
    info = faultInfo(FAULT_BAD_REQUEST, 0);
  }
  if (!(info & INFO_OK)) {
    bump(SLOT_FAULTS);
    uint32_t counter = slot + SLOT_REASONS + (((info >> INFO_REASON_SHIFT) & 15) << 2);
    ST32(counter, LD32(counter) + 1);
    ST64(out + RES_PHYS_LO, 0); /* takeFaultAddr(): engine-managed walks never set one */
  }
  ST32(out + RES_INFO, info);
  return info;
}

/** translate.ts `hit`: the info of a hit (result stored), or 0. */
static inline uint32_t hit(uint32_t rid, uint32_t pasid, uint64_t iova, uint32_t access, uint32_t out) {
  if (!valid(rid, pasid, access)) return 0;
  uint32_t info = lookup(rid, pasid, iova, neededCaps(access), out);
  if (info != 0) {
    bump(SLOT_HITS);
    ST32(out + RES_INFO, info);
  }
  return info;
}

static inline uint32_t translateOne(uint32_t rid, uint32_t pasid, uint64_t iova, uint32_t access, uint32_t out) {
  uint32_t info = hit(rid, pasid, iova, access, out);
  return info != 0 ? info : slowPath(rid, pasid, iova, access, out);
}

static inline void enter(void) { AST32(slot + SLOT_EPOCH, ALD32(ctrl + CTRL_EPOCH)); }
static inline void leave(void) { AST32(slot + SLOT_EPOCH, 0); }

/** The per-call export; noinline so that a C caller pays a real call, as a Wasm caller does. */
__attribute__((noinline)) static uint32_t translate(uint32_t rid, uint32_t pasid, uint32_t iovaLo, uint32_t iovaHi, uint32_t access) {
  uint32_t out = slot + SLOT_RESULT;
  uint64_t iova = ((uint64_t)iovaHi << 32) | iovaLo;
  uint32_t hitInfo = hit(rid, pasid, iova, access, out);
  if (hitInfo != 0) return hitInfo;
  enter();
  uint32_t info = slowPath(rid, pasid, iova, access, out);
  leave();
  return info;
}

static uint32_t translateBatch(uint32_t req, uint32_t res, uint32_t n) {
  uint32_t faults = 0;
  enter();
  for (uint32_t i = 0; i < n; i++) {
    uint32_t r = req + i * REQ_SIZE;
    uint32_t ridAccess = LD32(r + REQ_RID_ACCESS);
    uint64_t iova = ((uint64_t)LD32(r + REQ_IOVA_HI) << 32) | LD32(r + REQ_IOVA_LO);
    uint32_t info = translateOne(ridAccess & 0xffff, LD32(r + REQ_PASID), iova, ridAccess >> REQ_ACCESS_SHIFT, res + i * RES_SIZE);
    faults += ~info & INFO_OK;
  }
  leave();
  return faults;
}

/** The per-call path from a C caller: one translate() per request, result copied out of the slot. */
static uint32_t translateCalls(uint32_t req, uint32_t res, uint32_t n) {
  uint32_t faults = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t r = req + i * REQ_SIZE;
    uint32_t ridAccess = LD32(r + REQ_RID_ACCESS);
    uint32_t info = translate(ridAccess & 0xffff, LD32(r + REQ_PASID), LD32(r + REQ_IOVA_LO), LD32(r + REQ_IOVA_HI), ridAccess >> REQ_ACCESS_SHIFT);
    ST64(res + i * RES_SIZE + RES_PHYS_LO, LD64(slot + SLOT_RESULT + RES_PHYS_LO));
    ST32(res + i * RES_SIZE + RES_INFO, info);
    faults += ~info & INFO_OK;
  }
  return faults;
}

// ---- Node-API glue ------------------------------------------------------------------------------

static uint32_t argU32(napi_env env, napi_value v) {
  uint32_t x = 0;
  napi_get_value_uint32(env, v, &x);
  return x;
}

static napi_value num(napi_env env, uint32_t x) {
  napi_value r;
  napi_create_uint32(env, x, &r);
  return r;
}

/** bind(u8: Uint8Array over the whole memory, ctrlPtr, slotIndex): as assembly/env.ts `bind`. */
static napi_value Bind(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_typedarray_type type;
  size_t length, offset;
  void *data;
  napi_value ab;
  if (argc < 3 || napi_get_typedarray_info(env, argv[0], &type, &length, &data, &ab, &offset) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "bind(u8: Uint8Array, ctrl, slot)");
    return NULL;
  }
  M = (uint8_t *)data;
  ctrl = argU32(env, argv[1]);
  devRoot = LD32(ctrl + CTRL_DEV_ROOT);
  domains = LD32(ctrl + CTRL_DOMAINS);
  slot = LD32(ctrl + CTRL_SLOTS) + argU32(env, argv[2]) * LD32(ctrl + CTRL_SLOT_SIZE);
  iotlb = slot + SLOT_IOTLB;
  iotlbSetMask = LD32(ctrl + CTRL_IOTLB_SETS) - 1;
  return num(env, (uint32_t)length);
}

static napi_value Batch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return num(env, translateBatch(argU32(env, argv[0]), argU32(env, argv[1]), argU32(env, argv[2])));
}

static napi_value Calls(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return num(env, translateCalls(argU32(env, argv[0]), argU32(env, argv[1]), argU32(env, argv[2])));
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "bind", NAPI_AUTO_LENGTH, Bind, NULL, &f);
  napi_set_named_property(env, exports, "bind", f);
  napi_create_function(env, "batch", NAPI_AUTO_LENGTH, Batch, NULL, &f);
  napi_set_named_property(env, exports, "batch", f);
  napi_create_function(env, "calls", NAPI_AUTO_LENGTH, Calls, NULL, &f);
  napi_set_named_property(env, exports, "calls", f);
  return exports;
}
