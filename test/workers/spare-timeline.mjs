// The probe timeline of test/spare-concurrency.test.ts, shared by the owner and its workers.
//
// A result is one number: a translation 1 + phys * 64 + log2(size) (phys of the probe's own
// address), a fault -(1 + reason * 8 + level). The owner numbers its control calls (version v),
// and before call v appends to each probe's history ring every result a translation racing that
// call may return, ending with the probe's state after v: ANY_FAULT first where the call is an unmap
// (it clears entries and drops counts one store at a time, so a racing walk may stop at any level
// of the path), nothing else for a map (it publishes a path, or revives a spare one, with a single
// store that a walk can see). After the call returns it sets `returned` = v. A worker reads
// `returned` before (r0) and after (r1) a translation: the result must be the probe's state at r0 or
// an entry of a version in (r0, r1 + 1] -- anything older is stale, anything else torn.

/** Slots of the control array (Int32). */
export const CTL_STOP = 0;
export const CTL_RETURNED = 1;
export const CTL_READY = 2;

/** A history entry that admits any fault (never a translation). */
export const ANY_FAULT = -1e9;

export const encodeOk = (phys, sizeLg2) => 1 + phys * 64 + sizeLg2;
export const encodeFault = (reason, level) => -(1 + reason * 8 + level);

/**
 * Checks `got` for probe `p` translated between `returned` readings r0 and r1 against the rings
 * (`hist`: Float64 pairs (version, result), `cap` per probe; `counts`: Int32 entries written per
 * probe). Returns 'ok', 'stale' (a result the probe had before r0), 'torn' (one it never had), or
 * 'unchecked' when the ring no longer holds the state at r0.
 */
export function checkResult(hist, counts, cap, p, r0, r1, got) {
  const n = Atomics.load(counts, p);
  // The owner may be overwriting the oldest entries while this runs: stay clear of them.
  const lowest = Math.max(0, n - cap + 16);
  for (let i = n - 1; i >= lowest; i--) {
    const at = (p * cap + (i % cap)) * 2;
    const ver = hist[at];
    if (ver > r1 + 1) continue;
    const want = hist[at + 1];
    if (want === got || (want === ANY_FAULT && got < 0)) return 'ok';
    if (ver <= r0) {
      for (let j = i - 1; j >= lowest; j--) if (hist[(p * cap + (j % cap)) * 2 + 1] === got) return 'stale';
      return 'torn';
    }
  }
  return 'unchecked';
}
