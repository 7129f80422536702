// virtio-iommu demo: a guest's Linux driver (driver.mjs) drives ioasid's VirtioIommu while three
// PCI devices DMA from worker threads (device-worker.mjs).
//
//   1. firmware: no driver yet, config.bypass = 1, so a device's DMA reaches RAM 1:1;
//   2. Linux bring-up: features, configuration, PROBE and ATTACH of each endpoint's default domain;
//   3. strict-mode DMA: per buffer one MAP, the device's DMA on its thread, one UNMAP; each device
//      also tries an IOVA that is not mapped and reuses an IOVA after its UNMAP: both must fault,
//      and the faults (seen by the workers' translators) must reach the guest's event queue;
//   4. release: DETACH, after which no device reaches its buffers.
// It prints what happened and a list of checks, and exits non-zero when one fails.
//
//   npm run demo:virtio                              build, then 300 buffers per device
//   node examples/virtio-iommu/main.mjs --quick      60 buffers per device (for tests)
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { Iommu, VirtioIommu } from 'ioasid';
import { GuestDriver } from './driver.mjs';

const RAM = { base: 0x8000_0000n, bytes: 16 << 20 };
const SLICE = 0x10_0000n; // each device's DMA buffers live in its own 1 MiB of RAM
const DEVICES = [
  { name: 'nic', bdf: '00:02.0', tag: 0xa1 },
  { name: 'disk', bdf: '00:03.0', tag: 0xb2 },
  { name: 'gpu', bdf: '00:04.0', tag: 0xc3, reservedRegions: [{ start: 0x1_0000n, last: 0x1_ffffn }] },
];

const USAGE = 'usage: npm run demo:virtio [-- --quick]\n  --quick  60 DMA buffers per device instead of 300';
let values;
try {
  ({ values } = parseArgs({ options: { quick: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }));
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const BUFFERS = values.quick ? 60 : 300;

const iommu = await Iommu.create({ ram: RAM, addressWidth: 48 });
const devs = DEVICES.map((d) => ({ ...d, fd: iommu.addDevice({ bdf: d.bdf, reservedRegions: d.reservedRegions }) }));
// The platform: a virtio-iommu in front of every device (the emulator's transport would call it).
const vio = new VirtioIommu(iommu);

// Each device model on its own thread, with its own translator.
let jobId = 0;
for (const [i, d] of devs.entries()) {
  d.worker = new Worker(new URL('./device-worker.mjs', import.meta.url), { workerData: { handle: iommu.translatorHandle(), rid: d.fd.rid, tag: d.tag } });
  d.pending = new Map();
  d.worker.on('message', (m) => {
    if (m.faults) for (const f of m.faults) vio.reportFault(f); // worker faults → event queue
    d.pending.get(m.id)?.(m);
  });
  d.phys = RAM.base + BigInt(i + 1) * SLICE;
}
const dma = (d, ops) => new Promise((resolve) => {
  const id = ++jobId;
  d.pending.set(id, (m) => (d.pending.delete(id), resolve(m.results)));
  d.worker.postMessage({ id, ops });
});
const ramAt = (phys, n) => iommu.ram.subarray(Number(phys - RAM.base), Number(phys - RAM.base) + n);

// 1. Firmware: unattached endpoints bypass while config.bypass = 1.
const firmwarePhys = devs[0].phys;
const [fw] = await dma(devs[0], [{ kind: 'write', iova: firmwarePhys, length: 512, seq: 7 }]);
const firmwareOk = fw.bytes === 512 && ramAt(firmwarePhys, 512)[511] === devs[0].tag;

// 2. Linux bring-up.
const driver = new GuestDriver(vio);
driver.bringUp();
for (const d of devs) {
  d.regions = driver.probe(d.fd.rid);
  d.domain = driver.attachDefaultDomain(d.fd.rid, d.regions);
}
const [afterAttach] = await dma(devs[0], [{ kind: 'write', iova: firmwarePhys, length: 8, seq: 8 }]);

// 3. Strict-mode DMA on all devices at once: the owner maps and unmaps for one device while the
// others' workers DMA.
const expectedFaults = [];
const stats = { buffers: 0, landed: 0, strayFaulted: 0, staleFaulted: 0, inReserved: 0 };
async function strictLoop(d) {
  let slot = 0n;
  for (let n = 0; n < BUFFERS; n++) {
    const bytes = BigInt(1 + (n % 4)) * 0x1000n - BigInt(n % 3) * 0x100n;
    const { iova, size } = driver.allocIova(d.domain, bytes);
    if (d.regions.some((r) => iova <= r.end && iova + size - 1n >= r.start)) stats.inReserved++;
    const phys = d.phys + slot;
    slot = (slot + size) % (SLICE - 0x4000n);
    driver.map(d.domain, iova, size, phys, true);
    const stray = iova + size + 0x10_0000n; // never mapped in this domain
    const [w, s] = await dma(d, [{ kind: 'write', iova, length: Number(bytes), seq: n }, { kind: 'write', iova: stray, length: 64, seq: n }]);
    const landed = ramAt(phys, Number(bytes));
    if (w.bytes === Number(bytes) && landed[Number(bytes) - 1] === d.tag && new DataView(landed.buffer, landed.byteOffset).getUint32(0, true) === n) stats.landed++;
    if (s.faulted && s.bytes === 0) stats.strayFaulted++;
    expectedFaults.push({ endpoint: d.fd.rid, address: stray });
    driver.unmap(d.domain, iova, size);
    const [stale] = await dma(d, [{ kind: 'read', iova, length: 16, seq: n }]);
    if (stale.faulted && stale.bytes === 0) stats.staleFaulted++;
    expectedFaults.push({ endpoint: d.fd.rid, address: iova });
    stats.buffers++;
    d.last = { iova, size, phys };
  }
}
const t0 = performance.now();
await Promise.all(devs.map(strictLoop));
const elapsed = performance.now() - t0;

// 4. Release: DETACH each endpoint; its domain and mappings are gone, so are the old buffers.
for (const d of devs) driver.detach(d.domain, d.fd.rid);
let reachedAfterDetach = 0;
for (const d of devs) {
  const before = [...ramAt(d.last.phys, 16)];
  const [r] = await dma(d, [{ kind: 'write', iova: d.last.iova, length: 16, seq: 0xdead }]);
  if (r.bytes > 0 && ramAt(d.last.phys, 16).some((b, i) => b !== before[i])) reachedAfterDetach++;
}
const workerStats = await Promise.all(devs.map((d) => new Promise((resolve) => {
  d.worker.once('message', (m) => resolve(m.stats));
  d.worker.postMessage('stop');
})));
driver.drainEvents();

// Every expected fault is on the event queue as a MAPPING fault of that endpoint at that address.
const reported = new Set(driver.events.filter((e) => e.reason === 'mapping' && e.flags & 0x100).map((e) => `${e.endpoint}:${e.address}`));
const missing = expectedFaults.filter((f) => !reported.has(`${f.endpoint}:${f.address}`));
const total = devs.length * BUFFERS;
const translations = workerStats.reduce((n, s) => n + s.translations, 0);

console.log(`virtio-iommu: ${devs.length} endpoints (${devs.map((d) => `${d.name} ${d.bdf} = EP ${d.fd.rid}`).join(', ')})`);
console.log(`features negotiated: 0x${driver.features.toString(16)}, granule ${driver.granule}, input range [0x${driver.inputStart.toString(16)}, 0x${driver.inputEnd.toString(16)}], probe_size ${driver.probeSize}`);
console.log(`PROBE: ${devs.map((d) => `${d.name}: ${d.regions.map((r) => `${r.subtype} [0x${r.start.toString(16)}, 0x${r.end.toString(16)}]`).join(', ')}`).join('; ')}`);
console.log(`requests: ${Object.entries(driver.requests).map(([k, v]) => `${k} ${v}`).join(', ')}; failed: ${driver.failures.length}`);
console.log(`strict mode: ${stats.buffers} buffers in ${elapsed.toFixed(0)} ms (${((stats.buffers * 1000) / elapsed).toFixed(0)} buffers/s with worker round trips), ${stats.landed} landed`);
console.log(`faults: ${stats.strayFaulted} stray and ${stats.staleFaulted} stale DMAs faulted; event queue: ${driver.events.length} reports, ${missing.length} expected ones missing, ${vio.droppedEvents} dropped`);
console.log(`worker translations: ${translations}`);

const checks = [
  ['firmware DMA reached RAM 1:1 before the driver (config.bypass = 1)', firmwareOk],
  ['the driver negotiated VERSION_1, MAP_UNMAP, PROBE and BYPASS_CONFIG', ((driver.features >> 32n) & 1n) === 1n && driver.has(2n) && driver.has(4n) && driver.has(6n)],
  ['PROBE reported the MSI window to every endpoint and the gpu its reserved region', devs.every((d) => d.regions.some((r) => r.subtype === 'msi')) && devs[2].regions.some((r) => r.subtype === 'reserved' && r.start === 0x1_0000n)],
  ['every request was answered OK with the whole writable part', driver.failures.length === 0],
  ['after ATTACH the firmware identity mapping is gone', afterAttach.faulted && afterAttach.bytes === 0],
  ['every strict-mode DMA landed in its own buffer', stats.landed === total],
  ['one MAP and one UNMAP per buffer', driver.requests.MAP === total && driver.requests.UNMAP === total],
  ['no IOVA was allocated inside a reserved region', stats.inReserved === 0],
  ['every DMA to an unmapped IOVA faulted (stray and after UNMAP)', stats.strayFaulted === total && stats.staleFaulted === total],
  ['every fault reached the event queue as a MAPPING report of its endpoint and address', missing.length === 0 && vio.droppedEvents === 0],
  ['after DETACH no device reaches its old buffers', reachedAfterDetach === 0],
  ['the workers translated for real', translations >= total * 3],
];
for (const [name, pass] of checks) console.log(`${pass ? 'ok  ' : 'FAIL'} ${name}`);
const failed = checks.filter(([, pass]) => !pass).length;
if (failed) {
  console.log(`FAIL: ${failed} of ${checks.length} checks`);
  for (const f of driver.failures.slice(0, 5)) console.log(`  request failure: ${f}`);
  process.exitCode = 1;
} else {
  console.log(`PASS: all ${checks.length} checks`);
}
vio.close();
