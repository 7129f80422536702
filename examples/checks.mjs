// What must hold after a run, as a list of named checks: the summary prints them and the exit
// code is non-zero when any fails. Inputs are the workers' reports, the rogue's authorization
// attempts and machine RAM itself (whose DMA-written words carry the writing device's tag).
import { DEVICES, MACHINE_RAM, VM_HOST_RANGE } from './machine-layout.mjs';

/** For each VM's slice of machine RAM: DMA-written words by the VM whose device wrote them. */
export function scanMachineRam(ram) {
  const words = new Uint32Array(ram.buffer, ram.byteOffset, ram.byteLength / 4);
  const vmOfTag = new Array(256).fill(undefined);
  for (const d of Object.values(DEVICES)) vmOfTag[d.tag] = d.vm;
  const written = {};
  for (const [vm, range] of Object.entries(VM_HOST_RANGE)) {
    const byWriter = (written[vm] = { A: 0, B: 0 });
    const end = (range.end - MACHINE_RAM.base) / 4;
    for (let i = (range.start - MACHINE_RAM.base) / 4; i < end; i++) {
      const writer = vmOfTag[words[i] >>> 24];
      if (writer) byWriter[writer]++;
    }
  }
  return written;
}

const sum = (xs, f) => xs.reduce((n, x) => n + f(x), 0);

/**
 * @param run { reports, attempts, ramWritten, engine: iommu.stats(), afterClose: Translation }
 * @returns [{ name, pass }]
 */
export function evaluate({ reports, attempts, ramWritten, engine, afterClose }) {
  const windows = reports.flatMap((r) => r.windows);
  const legit = windows.filter((w) => !w.mayFault && !w.mustFault);
  const aimedAtA = windows.filter((w) => w.mustFault);
  const workerTranslations = sum(reports, (r) => r.translations);
  return [
    { name: 'every device translated DMA', pass: reports.every((r) => r.translations > 0) },
    { name: 'every successful translation stayed inside its device\'s VM', pass: reports.every((r) => r.escapes === 0) },
    { name: 'no unexpected fault: DMA to windows that stay mapped never faulted (replace and map/unmap elsewhere left it alone)', pass: legit.every((w) => w.faults === 0 && w.ok > 0) },
    { name: 'every rogue DMA aimed at VM A faulted', pass: aimedAtA.length > 0 && aimedAtA.every((w) => w.ok === 0 && w.faults > 0) },
    { name: 'the rogue was refused at authorization (EPERM for A\'s PASID, ENOENT for A\'s IDs)',
      pass: attempts.every((a) => a.pass) && attempts.some((a) => a.errno === 'EPERM') && attempts.some((a) => a.errno === 'ENOENT') },
    { name: 'machine RAM: no VM holds a word written by the other VM\'s devices', pass: ramWritten.A.B === 0 && ramWritten.B.A === 0 && ramWritten.A.A > 0 && ramWritten.B.B > 0 },
    { name: 'engine counters cover every worker translation', pass: engine.hits + engine.misses >= workerTranslations },
    { name: 'after VM A\'s FD is closed its devices\' DMA is blocked', pass: !afterClose.ok },
  ];
}
