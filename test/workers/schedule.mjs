// The owner's mapping schedule for the concurrency test, shared by the test and its workers.
//
// Version v (v ≥ 1) changes page p = (v - 1) % pages in round k = floor((v - 1) / pages): even
// rounds map p to physOf(v), odd rounds unmap it. Page p's state after version v is therefore a
// pure function of (p, v), so a worker can tell which results are legal without shared history.
//
// Contract checked: a translation that started after version r0's control call returned, and ended
// when at most r1 had returned (r1 + 1 .. r1 + inFlight possibly in flight: 1 for per-call control,
// a whole round for batched map/unmap), must return the state of its page at some version in
// [r0, r1 + inFlight] — never an older mapping (stale), never a mix or garbage.

export const PHYS_BASE = 0x1_0000_0000;

/** Output page mapped by version v. */
export const physOf = (v) => PHYS_BASE + v * 4096;

/** The page version v changes. */
export const pageOf = (v, pages) => (v - 1) % pages;

/** True when version v maps its page (false: unmaps it). */
export const mapsAt = (v, pages) => Math.floor((v - 1) / pages) % 2 === 0;

const resultOf = (v, pages) => (mapsAt(v, pages) ? physOf(v) : 0);

/** Page `page`'s output address after version v (0 = unmapped; version 0 = nothing mapped). */
export function stateAt(page, v, pages) {
  if (v < page + 1) return 0;
  return resultOf(v - ((v - page - 1) % pages), pages);
}

/** Is `result` (output page, or 0 for a fault) legal for a translation spanning versions r0..r1+inFlight? */
export function allowedResult(page, r0, r1, result, pages, inFlight = 1) {
  if (result === stateAt(page, r0, pages)) return true;
  const firstAfter = r0 + 1 + ((((page + 1 - (r0 + 1)) % pages) + pages) % pages);
  for (let v = firstAfter; v <= r1 + inFlight; v += pages) {
    if (result === resultOf(v, pages)) return true;
  }
  return false;
}
