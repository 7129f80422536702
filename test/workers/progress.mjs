// Owner-side pacing for the worker races: a worker publishes a counter of its successful
// translations in the shared control array, and the owner, once in a while, holds a state in
// which translations must succeed until the counter moves (or `ms` pass). On a loaded machine the
// worker may otherwise never be scheduled inside the short attached windows, and a race that never
// mixed successes with faults proves nothing.

/** Spins until `ctl[index]` differs from `from` or `ms` milliseconds have passed. @returns whether it moved. */
export function waitForProgress(ctl, index, from, ms) {
  const until = performance.now() + ms;
  while (Atomics.load(ctl, index) === from) if (performance.now() > until) return false;
  return true;
}
