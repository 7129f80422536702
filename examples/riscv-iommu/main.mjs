// A guest's Linux-style driver programs the RISC-V IOMMU model (RiscvIommu over ioasid) and three
// PCI devices DMA from worker threads (`npm run demo:riscv`):
//
//   00:01.0 (device_id 8, "nic") and 00:02.0 (device_id 16, "disk"): one device context each, an
//   Sv39 table and its own PSCID, 16 pages mapped to their own buffers; their threads DMA through
//   the engine directly. Then the guest unmaps a nic page (PTE clear, IOTINVAL.VMA, IOFENCE.C):
//   the nic's next DMA there faults at once, and the fault lands in the guest's fault queue.
//   00:03.0 (device_id 24, "rogue"): no device context; its DMA faults with cause 258 (DDT entry
//   not valid) in the fault queue, and the fault-queue wire interrupt is raised.
//
// It prints each check and exits 1 if any fails.
import { Worker } from 'node:worker_threads';
import { Access, Iommu, RiscvIommu } from 'ioasid';
import { GuestDriver } from './guest-driver.mjs';

const RAM = { base: 0x8000_0000n, bytes: 16 << 20 };
const HEAP = { start: 0x8080_0000n, end: 0x8100_0000n }; // the driver's tables and queues
const BUFFERS = { 8: 0x8000_0000n, 16: 0x8040_0000n }; // each device's DMA buffers (16 pages)
const IOVA = 0x1000_0000n;
const PAGES = 16;
const DEVICES = [
  { name: 'nic', bdf: '00:01.0', devid: 8, tag: 0xa1 },
  { name: 'disk', bdf: '00:02.0', devid: 16, tag: 0xd1 },
  { name: 'rogue', bdf: '00:03.0', devid: 24, tag: 0xee },
];

const checks = [];
const check = (what, ok, detail = '') => {
  checks.push(ok);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ` (${detail})` : ''}`);
};

const iommu = await Iommu.create({ ram: RAM });
const pci = DEVICES.map((d) => iommu.addDevice({ bdf: d.bdf }));
const wires = [];
// The guest names each device by its requester ID (device_id 8 = 00:01.0): the model finds it in `iommu`.
const riscv = new RiscvIommu(iommu, { onInterrupt: (vector, asserted) => wires.push({ vector, asserted }) });
const driver = new GuestDriver(riscv, iommu, HEAP);
driver.init();
check('driver probe: 3-level DDT, command and fault queues on', riscv.mmioRead(16, 8) % 16n === 4n && riscv.mmioRead(72, 4) === 0x10003n && riscv.mmioRead(76, 4) === 0x10003n);

for (const devid of [8, 16]) {
  driver.attach(devid);
  for (let p = 0n; p < BigInt(PAGES); p++) driver.map(devid, IOVA + p * 4096n, BUFFERS[devid] + p * 4096n);
}

// Devices on worker threads, each with its own translator over the shared engine memory.
const workers = new Map(DEVICES.map((d, i) => [d.devid, new Worker(new URL('./device-worker.mjs', import.meta.url), {
  workerData: { handle: iommu.translatorHandle(), rid: pci[i].rid, tag: d.tag },
})]));
const dma = (devid, iovas) => new Promise((resolve) => {
  const w = workers.get(devid);
  w.once('message', resolve);
  w.postMessage({ iovas: iovas.map((x) => x.toString()) });
});
/** A device's DMA fault, handed to the IOMMU model as the request it was (so the guest sees it). */
const report = (devid, r) => riscv.translate(devid, undefined, BigInt(r.iova), Access.Write);

const pages = Array.from({ length: PAGES }, (_, p) => IOVA + BigInt(p) * 4096n);
const [nic, disk] = await Promise.all([dma(8, pages), dma(16, pages)]);
check('nic: 16 pages written and read back through its own context', nic.every((r) => r.bytes === 64 && r.readBack));
check('disk: 16 pages written and read back through its own context', disk.every((r) => r.bytes === 64 && r.readBack));
const ram = iommu.ram;
const at = (pa) => Number(pa - RAM.base);
const landed = (devid, tag) => pages.every((_, p) => ram[at(BUFFERS[devid]) + p * 4096] === tag);
check("each device's data is in its own buffers only", landed(8, 0xa1) && landed(16, 0xd1));

driver.unmap(8, pages[3]);
const [afterUnmap] = await dma(8, [pages[3]]);
check('nic after unmap (PTE clear + IOTINVAL + IOFENCE.C): DMA to that page faults at once', afterUnmap.bytes === 0 && afterUnmap.fault === 'not-present', afterUnmap.fault);
if (afterUnmap.fault) report(8, afterUnmap);
const [stillMapped] = await dma(8, [pages[4]]);
check('nic: the other pages still work', stillMapped.bytes === 64 && stillMapped.readBack);

const [rogue] = await dma(24, [pages[0]]);
check('rogue (no device context): its DMA faults', rogue.bytes === 0 && rogue.fault !== undefined, rogue.fault);
const answer = report(24, rogue);
check('the IOMMU answers the rogue request Unsupported Request', answer.status === 'unsupported-request');

const faults = driver.drainFaults();
for (const f of faults) console.log(`     fault record: cause ${f.cause}, device_id ${f.devid}, iotval 0x${f.iotval.toString(16)}`);
check('fault queue: cause 15 (write page fault) for the nic at the unmapped page', faults.some((f) => f.cause === 15 && f.devid === 8 && f.iotval === pages[3]));
check('fault queue: cause 258 (DDT entry not valid) for the rogue', faults.some((f) => f.cause === 258 && f.devid === 24));
check('fault-queue interrupt: wire fiv (1) asserted, deasserted once the driver cleared ipsr.fip', wires.some((w) => w.vector === 1 && w.asserted) && wires.at(-1)?.asserted === false);
check('command queue: no errors after ' + driver.commandsSent + ' commands', (riscv.mmioRead(72, 4) & 0xf00n) === 0n);

for (const w of workers.values()) w.postMessage({ stop: true });
await Promise.all([...workers.values()].map((w) => new Promise((r) => w.once('exit', r))));
const failed = checks.filter((ok) => !ok).length;
console.log(failed === 0 ? `all ${checks.length} checks passed` : `${failed} of ${checks.length} checks FAILED`);
process.exit(failed === 0 ? 0 : 1);
