// Prints the run's summary: each VM's FD (objects, PASIDs, device attachments), the rogue's
// authorization attempts, the DMA the workers did (totals, rates, faults by reason) and the checks.
import { Access, NO_PASID } from 'ioasid';
import { accountFaults } from './expected-faults.mjs';
import { DEVICES, GUEST_RAM_IOVA, RING_IOVA, RING_PAGES, VM_RAM_BYTES, hex } from './machine-layout.mjs';

const count = (n) => n.toLocaleString('en-US');
const rate = (n, ms) => `${(n / ms / 1000).toFixed(1)} M/s`;
const reasons = (byReason) => Object.entries(byReason).map(([r, n]) => `${r} ${count(n)}`).join(', ') || '—';

/** `ioas 1,6 · device 2,3 · hwpt-paging 4,5`: the FD's objects grouped by type, in ID order. */
function objectsByType(fd) {
  const groups = new Map();
  for (const { id, type } of fd.objects()) groups.set(type, [...(groups.get(type) ?? []), id]);
  return [...groups].map(([type, ids]) => `${type} ${ids.join(',')}`).join(' · ');
}

function attachments(dev) {
  const parts = [...dev.attachments()].map(([pasid, hwpt]) => `${pasid === NO_PASID ? 'RID' : `PASID ${pasid}`} → HWPT ${hwpt}`);
  return parts.join(', ') || 'nothing attached (DMA blocked)';
}

/** `2 MiB leaves`: the leaf size the IOMMU uses at `iova` for the RID of `dev` (a `Translation`'s size). */
function leaf(iommu, dev, iova) {
  const t = iommu.translate(dev.rid, NO_PASID, iova, Access.Read);
  if (!t.ok) return `fault ${t.fault.reason}`;
  return t.size >= 1024n * 1024n ? `${t.size / (1024n * 1024n)} MiB leaves` : `${t.size / 1024n} KiB leaves`;
}

export function printVm(iommu, vm) {
  const firstDevice = Object.values(vm.devices)[0];
  console.log(`VM ${vm.name}  own ioasid FD · host RAM ${hex(vm.host.start)}-${hex(vm.host.end - 1)} · PASIDs ${vm.fd.pasids().join(', ') || 'none'}`);
  console.log(`  guest RAM ${VM_RAM_BYTES / 2 ** 20} MiB at IOVA ${hex(GUEST_RAM_IOVA)} (${leaf(iommu, firstDevice, GUEST_RAM_IOVA)}),` +
    ` ${RING_PAGES} ring pages at ${hex(RING_IOVA)} (${leaf(iommu, firstDevice, RING_IOVA)})`);
  console.log(`  objects   ${objectsByType(vm.fd)}`);
  for (const [name, dev] of Object.entries(vm.devices)) {
    console.log(`  ${name.padEnd(6)} ${dev.bdf}  dev ID ${dev.devId}: ${attachments(dev)}`);
  }
}

export function printAuthorization(rogue, attempts) {
  console.log(`\nAuthorization: rogue ${rogue.bdf}, bound to VM B's FD, uses what it learned about VM A`);
  for (const a of attempts) console.log(`  ${a.pass ? ' ' : '!'} ${a.call.padEnd(58)} → ${a.outcome}`);
}

export function printDma({ reports, controlOps, engine, ramWritten }) {
  const total = reports.reduce((n, r) => n + r.translations, 0);
  const wallMs = Math.max(...reports.map((r) => r.elapsedMs));
  console.log(`\nDMA: one worker thread per device for ${(wallMs / 1000).toFixed(2)} s, in bursts through each translator's batch ring`);
  console.log(`  ${'device'.padEnd(7)}${'VM'.padEnd(4)}${'translations'.padStart(14)}${'per second'.padStart(13)}   faults by reason`);
  for (const r of reports) {
    const vm = DEVICES[r.name].vm;
    console.log(`  ${r.name.padEnd(7)}${vm.padEnd(4)}${count(r.translations).padStart(14)}${rate(r.translations, r.elapsedMs).padStart(13)}   ${reasons(r.stats.faultsByReason)}`);
  }
  printFaultAccount(reports);
  for (const r of reports.filter((r) => r.escapes > 0)) {
    const { window, iova, phys } = r.firstEscape;
    console.log(`  ! ${r.name}: ${count(r.escapes)} translations left VM ${DEVICES[r.name].vm}, first: ${window} ${hex(iova)} → ${hex(phys)}`);
  }
  console.log(`  translations: ${count(total)} by the workers, ${rate(total, wallMs)} together;` +
    ` engine counters: ${count(engine.hits)} IOTLB hits + ${count(engine.misses)} walks`);
  console.log(`  faults by reason (engine): ${reasons(engine.faultsByReason)}`);
  console.log(`  control ops during DMA: ${count(controlOps.A)} PASID replaces in VM A, ${count(controlOps.B)} maps/unmaps in VM B`);

  const rogue = reports.find((r) => r.name === 'rogue');
  const aimedAtA = rogue.windows.filter((w) => w.mustFault);
  const sent = aimedAtA.reduce((n, w) => n + w.ok + w.faults, 0);
  const translated = aimedAtA.reduce((n, w) => n + w.ok, 0);
  const own = rogue.windows.find((w) => !w.mustFault);
  console.log(`  rogue DMA at VM A: ${count(translated)} of ${count(sent)} requests translated (${reasons(rogue.stats.faultsByReason)});` +
    ` its own page: ${count(own.ok)} ok`);
  console.log(`  machine RAM words written by DMA: VM A's slice ${count(ramWritten.A.A)} by A, ${count(ramWritten.A.B)} by B;` +
    ` VM B's slice ${count(ramWritten.B.B)} by B, ${count(ramWritten.B.A)} by A`);
}

/** The faults the demo provokes on purpose, each with its reason, and the count of all others. */
function printFaultAccount(reports) {
  const accounts = reports.map((r) => ({ name: r.name, ...accountFaults(r) }));
  console.log('  expected faults (provoked on purpose: the IOMMU doing its job):');
  for (const { name, expected } of accounts) {
    for (const e of expected) console.log(`    ${name.padEnd(6)} ${count(e.faults).padStart(10)} at ${e.window}: ${e.why}`);
  }
  const unexpected = accounts.filter((a) => a.unexpected > 0);
  console.log(`  unexpected faults: ${unexpected.map((a) => `${a.name} ${count(a.unexpected)}`).join(', ') || 'none'}`);
}

/** @returns true when every check passed. */
export function printChecks(checks) {
  console.log('\nChecks');
  for (const c of checks) console.log(`  ${c.pass ? 'ok  ' : 'FAIL'} ${c.name}`);
  const failed = checks.filter((c) => !c.pass).length;
  console.log(failed ? `\nFAILED: ${failed} of ${checks.length} checks` : `\nPASS: all ${checks.length} checks`);
  return failed === 0;
}
