// ioasid's user application: an emulated machine hosting two VMs behind one IOMMU.
//
//   VM A (its own ioasid FD): a PASID-capable accelerator serving two processes, plus a NIC
//   VM B (its own ioasid FD): a NIC and a disk, plus a rogue device that tries to reach VM A
//
// The owner thread (this one) is the platform and both VMMs: it creates the IOMMU, programs each
// VM's address spaces through that VM's FD, and authorizes devices through their device FDs.
// Each device model runs on its own worker thread and does its DMA through `translate`, while
// the owner keeps changing mappings and attachments underneath it. At the end it prints a summary
// and exits non-zero if any isolation check failed.
//
//   npm start                                   build, then about 1.5 s of DMA
//   node examples/emulated-machine.mjs --quick  about 0.3 s of DMA (for tests)
//   node examples/emulated-machine.mjs --seconds 5
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { Iommu } from 'ioasid';
import { evaluate, scanMachineRam } from './checks.mjs';
import { BATCH_CAPACITY, buildMachine, closeVms, ramPlacement } from './machine.mjs';
import { CONTROL, MACHINE_RAM } from './machine-layout.mjs';
import { progressReporter } from './progress.mjs';
import { printAuthorization, printChecks, printDma, printVm } from './summary.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const USAGE = `usage: node examples/emulated-machine.mjs [--quick | --seconds N]

  --quick       about 0.3 s of DMA (default: about 1.5 s)
  --seconds N   N seconds of DMA
  -h, --help    this text`;

function usageError(message) {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

function dmaDurationMs() {
  let values;
  try {
    ({ values } = parseArgs({ options: { quick: { type: 'boolean' }, seconds: { type: 'string' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (e) {
    usageError(e.message);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (values.seconds === undefined) return values.quick ? 300 : 1500;
  const seconds = Number(values.seconds);
  if (!(seconds > 0)) usageError(`--seconds: expected a positive number, got '${values.seconds}'`);
  return seconds * 1000;
}

/** Starts a device model on its own thread, with its own translator over the engine's memory. */
function startDevice(iommu, { name, device, windows }, control) {
  const worker = new Worker(new URL('./device-worker.mjs', import.meta.url), {
    workerData: { handle: iommu.translatorHandle({ batchCapacity: BATCH_CAPACITY }), device, windows, ram: ramPlacement(iommu), control },
  });
  return new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`device ${name} exited (code ${code}) before reporting`)));
  });
}

async function main() {
  const dmaMs = dmaDurationMs();

  // The platform: one IOMMU whose engine memory also holds the machine's RAM.
  const iommu = await Iommu.create({ ram: MACHINE_RAM });
  if (!iommu.shared) throw new Error('worker translators need SharedArrayBuffer');

  // Each VMM opens its own FD: nothing one of them creates has a name in the other's. The rogue
  // tries A's IDs and A's PASID from B's FD, before any DMA runs.
  const machine = buildMachine(iommu);
  const { vmA, vmB, attempts, devices, controlOps } = machine;
  console.log(`ioasid emulated machine: 2 VMs, ${devices.length} devices on ${devices.length} worker threads`);
  console.log(`  VM A and VM B programmed through their own FDs; the rogue tried ${attempts.length} calls with VM A's IDs and PASID`);
  console.log(`  DMA for ${(dmaMs / 1000).toFixed(1)} s while the owner remaps underneath the devices` +
    ' (some faults are provoked on purpose: the summary says which and why):');

  // DMA: one worker per device, each with its own translator. They start together on GO and
  // translate until STOP.
  const control = new SharedArrayBuffer(CONTROL.WORDS * 4);
  const flags = new Int32Array(control);
  const signal = (word) => {
    Atomics.store(flags, word, 1);
    Atomics.notify(flags, word);
  };
  const reportsDone = Promise.all(devices.map((d) => startDevice(iommu, d, control)));
  reportsDone.catch(() => { signal(CONTROL.STOP); signal(CONTROL.GO); }); // one crash ends the run
  while (Atomics.load(flags, CONTROL.READY) < devices.length && !Atomics.load(flags, CONTROL.STOP)) await sleep(1);
  signal(CONTROL.GO);

  // Meanwhile the owner changes state underneath the devices (machine.controlStep).
  const started = performance.now();
  const progress = progressReporter(iommu, dmaMs);
  while (performance.now() - started < dmaMs && !Atomics.load(flags, CONTROL.STOP)) {
    machine.controlStep();
    progress.tick(performance.now() - started);
    await sleep(1); // let the workers run against this state for a moment
  }
  signal(CONTROL.STOP);
  const reports = await reportsDone;
  progress.done();
  const engine = iommu.stats();
  const ramWritten = scanMachineRam(iommu.ram);

  console.log('');
  printVm(iommu, vmA);
  printVm(iommu, vmB);
  printAuthorization(vmB.devices.rogue, attempts);
  printDma({ reports, controlOps, engine, ramWritten });

  // Closing A's FD tears down everything it holds: its devices' DMA is blocked from then on.
  const afterClose = closeVms(iommu, machine);
  console.log(`  after fdA.close(): nicA DMA → ${afterClose.ok ? 'translated!' : `fault ${afterClose.fault.reason}`}`);

  const passed = printChecks(evaluate({ reports, attempts, ramWritten, engine, afterClose }));
  process.exitCode = passed ? 0 : 1;
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
