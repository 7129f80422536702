// The shootdown count (abi.ts CTRL_SHOOTDOWN): the one word a translation cache outside the core
// checks. Every place that ends cached translations calls `shootdown()` after its change is
// visible — after a domain generation moves (domain.ts), a context changes (context.ts) or an
// IOTLB invalidation has scanned (iotlb.ts) — so a translation that starts after the control call
// returns reads a new count, misses such a cache, and asks the core, which sees the change.

import { CTRL_SHOOTDOWN } from './abi';
import { ctrl } from './env';

// @ts-ignore: decorator
@inline export function shootdown(): void {
  atomic.add<u32>(ctrl, 1, CTRL_SHOOTDOWN);
}
