// Device models on Web Workers, one per device, each with its own translator over the engine's
// shared memory (needs cross-origin isolation). Same interface as inline-devices.js:
// { workerCount, latest(), stop() → final reports }.
import { CONTROL } from '../machine-layout.mjs';
import { BATCH_CAPACITY, ramPlacement } from '../machine.mjs';

const READY_TIMEOUT_MS = 15_000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startWorkerDevices(iommu, machine) {
  const control = new SharedArrayBuffer(CONTROL.WORDS * 4);
  const flags = new Int32Array(control);
  const signal = (word) => {
    Atomics.store(flags, word, 1);
    Atomics.notify(flags, word);
  };
  const latest = new Map();
  const workers = [];
  const finals = machine.devices.map(({ name, device, windows }) => new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./device-worker.js', import.meta.url), { type: 'module', name });
    workers.push(worker);
    worker.onmessage = ({ data }) => {
      latest.set(name, data);
      if (data.final) resolve(data);
    };
    worker.onerror = (e) => reject(new Error(`device ${name}: ${e.message || 'worker failed to start'}`));
    worker.postMessage({ handle: iommu.translatorHandle({ batchCapacity: BATCH_CAPACITY }), device, windows, ram: ramPlacement(iommu), control });
  }));
  const allFinal = Promise.all(finals).finally(() => workers.forEach((w) => w.terminate()));
  let failure;
  allFinal.catch((e) => {
    failure = e;
    signal(CONTROL.STOP); // one crash ends the run
    signal(CONTROL.GO);
  });

  // Every device starts when all are ready, as in the Node demo.
  const deadline = performance.now() + READY_TIMEOUT_MS;
  while (Atomics.load(flags, CONTROL.READY) < machine.devices.length) {
    if (failure) throw failure;
    if (performance.now() > deadline) throw new Error(`device workers not ready after ${READY_TIMEOUT_MS} ms`);
    await sleep(5);
  }
  signal(CONTROL.GO);

  return {
    workerCount: workers.length,
    /** The last progress report of each device (name → report), for the live view. */
    latest: () => latest,
    /** Stops every device; resolves to their final reports. */
    stop() {
      signal(CONTROL.STOP);
      return allFinal;
    },
  };
}
