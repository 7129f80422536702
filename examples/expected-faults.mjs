// Which DMA faults the demo provokes on purpose, and why. A device's DMA plan (vms.mjs, rogue.mjs)
// marks a window `mayFault` when its VM unmaps it on purpose while the device runs, or `mustFault`
// when it is aimed at the other VM; each such window says `why`. Faults there are the IOMMU doing
// its job. A fault in any other window is unexpected (the checks fail on it).

/**
 * @param report a device's report (device-model.mjs): its windows with `ok`/`faults` counts
 * @returns { expected: [{ window, faults, why }] (windows that faulted on purpose), unexpected: count }
 */
export function accountFaults(report) {
  const onPurpose = (w) => w.mayFault || w.mustFault;
  return {
    expected: report.windows.filter((w) => onPurpose(w) && w.faults > 0).map((w) => ({ window: w.name, faults: w.faults, why: w.why })),
    unexpected: report.windows.filter((w) => !onPurpose(w)).reduce((n, w) => n + w.faults, 0),
  };
}
