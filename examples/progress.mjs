// Progress while the devices run: elapsed time, translations so far and their rate, faults so far
// (from iommu.stats(), the counters of every translator). On a terminal one line is rewritten in
// place; otherwise (a pipe, a test) a line is printed every interval.

const count = (n) => n.toLocaleString('en-US');
const reasons = (byReason) => Object.entries(byReason).map(([r, n]) => `${r} ${count(n)}`).join(', ') || 'none';

/**
 * @param iommu the engine the devices translate through
 * @param totalMs how long the run lasts
 * @param out a writable stream (process.stdout)
 * @returns { tick(elapsedMs) (call often: it prints at most every `intervalMs`), done() }
 */
export function progressReporter(iommu, totalMs, { out = process.stdout, intervalMs = out.isTTY ? 100 : Math.min(500, totalMs / 4) } = {}) {
  let next = intervalMs;
  let last = { ms: 0, translations: 0 };
  let printed = false;
  const line = (elapsedMs) => {
    const s = iommu.stats();
    const rate = ((s.translations - last.translations) / Math.max(1, elapsedMs - last.ms)) * 1000;
    last = { ms: elapsedMs, translations: s.translations };
    return `  ${(elapsedMs / 1000).toFixed(1)} s of ${(totalMs / 1000).toFixed(1)} s: ${count(s.translations)} translations` +
      ` (${(rate / 1e6).toFixed(1)} M/s), faults so far: ${reasons(s.faultsByReason)}`;
  };
  return {
    tick(elapsedMs) {
      if (elapsedMs < next) return;
      next = elapsedMs + intervalMs;
      printed = true;
      if (out.isTTY) out.write(`\r\x1b[2K${line(elapsedMs)}`);
      else out.write(`${line(elapsedMs)}\n`);
    },
    done() {
      if (printed && out.isTTY) out.write('\n');
    },
  };
}
