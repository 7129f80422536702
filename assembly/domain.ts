// Domain descriptors: one per engine-managed page table (a HWPT_PAGING). Index 0 is never live, so
// 0 in a device or PASID context means "blocked". The TS layer picks indices; a freed index keeps
// its generation, so IOTLB entries filled under an earlier life of the index can never hit again.

import { DOM_SIZE, DOM_ROOT, DOM_LEVELS, DOM_GEN, DOM_FLAGS, DOM_LIVE, DOM_PAGES, DOM_SPARE, STATUS_OK, STATUS_ENOMEM, STATUS_EINVAL } from './abi';
import { domains, domainCount } from './env';
import { pageAlloc, pageRetire, epochAdvance } from './pool';
import { unmapRange } from './pagetable';
import { iotlbInvalidateScan } from './iotlb';
import { shootdown } from './shootdown';

// @ts-ignore: decorator
@inline export function domainPtr(index: u32): usize {
  return domains + <usize>index * DOM_SIZE;
}

/**
 * Invalidates every IOTLB entry of domain descriptor `d` in every translator, in O(1): the one
 * place a generation moves. The generation is 32 bits and wraps: after 2^32 bumps it would match
 * an entry an idle translator filled 2^32 bumps ago and revive it. So when it wraps to 0, every
 * translator's entries of the domain are cleared by a scan. An entry filled under generation g
 * can then hit again only if it was published after the last wrap's scan, and the generation
 * returns to g only by wrapping again, whose scan clears it first. (Fills racing a bump are dropped
 * by their own re-check, iotlb.ts `fill`; one published just after the scan keeps a generation
 * the domain has already left, so it is covered by the next wrap's scan.)
 */
export function domainBumpGen(d: usize): void {
  if (atomic.add<u32>(d, 1, DOM_GEN) == 0xffffffff) {
    iotlbInvalidateScan(<u32>((d - domains) / DOM_SIZE), 1, 0, 0, 0xffffffffffffffff);
  }
  shootdown();
}

/** Makes `index` a live, empty domain with `levels` levels (3..5). */
export function domainInit(index: u32, levels: u32): i32 {
  if (index == 0 || index >= domainCount || levels < 3 || levels > 5) return STATUS_EINVAL;
  const d = domainPtr(index);
  if (load<u32>(d, DOM_FLAGS) & DOM_LIVE) return STATUS_EINVAL;
  const root = pageAlloc();
  if (root == 0) return STATUS_ENOMEM;
  store<u32>(d, <u32>root, DOM_ROOT);
  store<u32>(d, levels, DOM_LEVELS);
  store<u32>(d, 1, DOM_PAGES);
  store<u32>(d, 0, DOM_SPARE);
  store<u32>(d, DOM_LIVE, DOM_FLAGS);
  return STATUS_OK;
}

/** Tears down a live domain that no context points at any more: every table page, spare ones too, is retired. */
export function domainFree(index: u32): i32 {
  if (index == 0 || index >= domainCount) return STATUS_EINVAL;
  const d = domainPtr(index);
  if (!(load<u32>(d, DOM_FLAGS) & DOM_LIVE)) return STATUS_EINVAL;
  const levels = load<u32>(d, DOM_LEVELS);
  unmapRange(d, 0, (<u64>1 << (12 + 9 * levels)) - 1);
  pageRetire(<usize>load<u32>(d, DOM_ROOT));
  store<u32>(d, 0, DOM_ROOT);
  store<u32>(d, 0, DOM_PAGES);
  store<u32>(d, 0, DOM_FLAGS);
  domainBumpGen(d);
  epochAdvance();
  return STATUS_OK;
}
