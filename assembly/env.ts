// Per-instance view of the shared state: pointers read once from the control block by `init`.
//
// Wasm globals are per instance, so each thread's instance keeps its own copies; the state they
// point to is shared. Only scratch and these cached pointers live in globals (no static data,
// which every instantiation would rewrite).

import {
  CTRL_DEV_ROOT, CTRL_DOMAINS, CTRL_DOMAIN_COUNT, CTRL_SLOTS, CTRL_SLOT_SIZE, CTRL_IOTLB_SETS,
  SLOT_IOTLB, CTRL_SLOT_COUNT, CTRL_CALL_ENTRIES, TLB_SET_SIZE,
} from './abi';
import { bindRam } from './ram';
import { bindReach } from './reach';

/** Control block base. */
export let ctrl: usize = 0;
/** Device root table (u32[256]). */
export let devRoot: usize = 0;
export let domains: usize = 0;
export let domainCount: u32 = 0;
/** This instance's translator slot and its IOTLB. */
export let slot: usize = 0;
export let iotlb: usize = 0;
export let iotlbSetMask: u32 = 0;
export let slotsBase: usize = 0;
export let slotCount: u32 = 0;
export let slotSize: u32 = 0;
/** This slot's call cache (right after its IOTLB) and its index mask (entries - 1; entries may be 0). */
export let callCache: usize = 0;
export let callCacheMask: u32 = 0;
export let callCacheOn: bool = false;

/** Binds this instance to the control block at `ctrlPtr` as translator slot `slotIndex`. */
export function bind(ctrlPtr: usize, slotIndex: u32): void {
  ctrl = ctrlPtr;
  devRoot = <usize>load<u32>(ctrlPtr, CTRL_DEV_ROOT);
  domains = <usize>load<u32>(ctrlPtr, CTRL_DOMAINS);
  domainCount = load<u32>(ctrlPtr, CTRL_DOMAIN_COUNT);
  slotsBase = <usize>load<u32>(ctrlPtr, CTRL_SLOTS);
  slotCount = load<u32>(ctrlPtr, CTRL_SLOT_COUNT);
  slotSize = load<u32>(ctrlPtr, CTRL_SLOT_SIZE);
  slot = slotsBase + <usize>slotIndex * <usize>slotSize;
  iotlb = slot + SLOT_IOTLB;
  iotlbSetMask = load<u32>(ctrlPtr, CTRL_IOTLB_SETS) - 1;
  callCache = iotlb + <usize>(iotlbSetMask + 1) * TLB_SET_SIZE;
  const callEntries = load<u32>(ctrlPtr, CTRL_CALL_ENTRIES);
  callCacheOn = callEntries != 0;
  callCacheMask = callEntries - 1;
  bindRam(ctrlPtr);
  bindReach(ctrlPtr);
}
