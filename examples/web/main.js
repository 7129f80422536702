// The browser demo's owner thread: the same emulated machine as `npm start` (../machine.mjs), with
// its device models on Web Workers when the page is cross-origin isolated, or on this thread when
// it is not (the page says why). The owner keeps changing mappings and attachments underneath the
// devices, and the page shows each FD's objects, the devices' attachments, translations per second
// and faults by reason, live. "Stop" (or ?seconds=N) ends the run and shows the demo's checks.
import { Iommu, sharedMemoryUnavailableReason } from 'ioasid';
import { evaluate, scanMachineRam } from '../checks.mjs';
import { buildMachine, closeVms } from '../machine.mjs';
import { MACHINE_RAM } from '../machine-layout.mjs';
import { startInlineDevices } from './inline-devices.js';
import { createView } from './view.js';
import { startWorkerDevices } from './worker-devices.js';

const SAMPLE_MS = 500;
const CONTROL_MS = 2;

/** What the page shows of a VM: its FD's PASIDs and objects, its devices' attachments. */
const snapshot = (vm) => ({
  name: vm.name,
  host: vm.host,
  pasids: vm.fd.pasids(),
  objects: vm.fd.objects(),
  devices: Object.entries(vm.devices).map(([name, dev]) => ({ name, bdf: dev.bdf, devId: dev.devId, attachments: [...dev.attachments()] })),
});

/** Per device: its last report plus its translation rate since the previous sample. */
function deviceRates(latest, previous) {
  const out = new Map();
  for (const [name, r] of latest) {
    const p = previous.get(name);
    const dt = p ? r.elapsedMs - p.elapsedMs : r.elapsedMs;
    const dn = p ? r.translations - p.translations : r.translations;
    out.set(name, { ...r, rate: dt > 0 ? (dn * 1000) / dt : p?.rate ?? 0 });
  }
  return out;
}

async function main(view) {
  const iommu = await Iommu.create({ ram: MACHINE_RAM });
  const machine = buildMachine(iommu);
  const devices = iommu.shared ? await startWorkerDevices(iommu, machine) : startInlineDevices(iommu, machine);
  view.mode({ isolated: globalThis.crossOriginIsolated === true, shared: iommu.shared, workers: devices.workerCount, reason: sharedMemoryUnavailableReason() });
  view.authorization(machine.vmB.devices.rogue, machine.attempts);

  const controlTimer = setInterval(machine.controlStep, CONTROL_MS);
  let last = { at: performance.now(), stats: iommu.stats(), devices: new Map() };
  const sample = () => {
    const now = performance.now();
    const stats = iommu.stats();
    const reports = deviceRates(devices.latest(), last.devices);
    view.engine(stats, ((stats.translations - last.stats.translations) * 1000) / (now - last.at));
    view.vms([snapshot(machine.vmA), snapshot(machine.vmB)], reports);
    last = { at: now, stats, devices: reports };
  };
  const sampleTimer = setInterval(sample, SAMPLE_MS);

  let stopping;
  const stop = () => (stopping ??= (async () => {
    clearInterval(controlTimer);
    clearInterval(sampleTimer);
    const reports = await devices.stop();
    sample(); // the final state, before the FDs close
    const engine = iommu.stats();
    const ramWritten = scanMachineRam(iommu.ram);
    const afterClose = closeVms(iommu, machine);
    view.checks(evaluate({ reports, attempts: machine.attempts, ramWritten, engine, afterClose }), afterClose);
    view.stopped('Stopped: FDs closed');
  })().catch((e) => view.error(e)));

  const button = document.getElementById('stop');
  button.disabled = false;
  button.addEventListener('click', stop);
  const seconds = Number(new URLSearchParams(location.search).get('seconds'));
  if (seconds > 0) setTimeout(stop, seconds * 1000);
}

const view = createView();
main(view).catch((e) => view.error(e));
