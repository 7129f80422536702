// Device models on the page's own thread, for when the engine memory cannot be shared (no
// cross-origin isolation): each device gets a batch ring of the owner's translator, and the
// devices take turns in time slices that yield to the page between them. Same interface as
// worker-devices.js: { workerCount: 0, latest(), stop() → final reports }.
import { createDeviceModel } from '../device-model.mjs';
import { BATCH_CAPACITY, ramPlacement } from '../machine.mjs';

/** Bursts per slice run until this much time has passed, then the page gets the thread back. */
const SLICE_MS = 8;

export function startInlineDevices(iommu, machine) {
  const ram = ramPlacement(iommu);
  const models = machine.devices.map(({ device, windows }) =>
    createDeviceModel({ batch: iommu.batch(BATCH_CAPACITY), memory: iommu.memory, device, windows, ram }));
  const started = performance.now();
  let stopped = false;

  // A MessageChannel yields to other tasks (timers, input, rendering) without setTimeout's clamp.
  const channel = new MessageChannel();
  channel.port1.onmessage = () => {
    if (stopped) return;
    const end = performance.now() + SLICE_MS;
    do for (const model of models) model.burst();
    while (performance.now() < end);
    channel.port2.postMessage(null);
  };
  channel.port2.postMessage(null);

  const reports = () => {
    const elapsedMs = performance.now() - started;
    return models.map((model) => ({ ...model.report(), elapsedMs }));
  };
  return {
    workerCount: 0,
    latest: () => new Map(reports().map((r) => [r.name, r])),
    async stop() {
      stopped = true;
      channel.port1.close();
      return reports();
    },
  };
}
