// The text report of `ioasid replay` (the --json report is the statistics object itself).
const count = (n) => n.toLocaleString('en-US');
const plural = (n, word) => `${count(n)} ${word}${n === 1 ? '' : 's'}`;
const reasons = (byReason) => Object.entries(byReason).map(([r, n]) => `${r} ${count(n)}`).join(', ') || '—';
const rate = (n, seconds) => {
  if (!(seconds > 0)) return '—';
  const perSecond = n / seconds;
  return perSecond >= 1e6 ? `${(perSecond / 1e6).toFixed(2)} M/s` : `${count(Math.round(perSecond))}/s`;
};

/** @param s the replay statistics (replay.mjs `statistics`) */
export function formatReport(s) {
  const lines = [
    `replay of ${s.trace}: ${plural(s.lines, 'line')}, ${plural(s.setupRecords, 'setup record')}, ${plural(s.requests, 'DMA request')}`,
    `  translated ${count(s.translated)}, faulted ${count(s.faults)}`,
    `  faults by reason: ${reasons(s.faultsByReason)}`,
    `  throughput: ${rate(s.requests, s.seconds)} overall (${s.seconds.toFixed(3)} s, parsing included),` +
      ` ${rate(s.requests, s.engineSeconds)} in the engine (${s.engineSeconds.toFixed(3)} s)`,
    `  engine: ${count(s.engine.hits)} IOTLB hits, ${count(s.engine.misses)} IOTLB misses, ${count(s.engine.tablePages)} page-table pages`,
  ];
  if (s.devices.length > 0) {
    lines.push('', `  ${'device'.padEnd(14)}${'requests'.padStart(12)}${'translated'.padStart(12)}${'faulted'.padStart(10)}   faults by reason`);
    for (const d of s.devices) {
      const name = `${d.bdf}${d.declared ? '' : '*'}`;
      lines.push(`  ${name.padEnd(14)}${count(d.requests).padStart(12)}${count(d.translated).padStart(12)}${count(d.faults).padStart(10)}   ${reasons(d.faultsByReason)}`);
    }
    if (s.devices.some((d) => !d.declared)) lines.push('  * not declared by a device line');
  }
  return lines.join('\n');
}
