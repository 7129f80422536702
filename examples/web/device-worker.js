// A PCI device model in a Web Worker (module type): the browser twin of ../device-worker.mjs. It
// gets its translator handle and DMA plan in the first message, runs device-model.mjs bursts until
// the owner says stop, posts its counts every PROGRESS_MS for the live view, then a final report.
import { Translator } from 'ioasid';
import { createDeviceModel, runUntilStopped } from '../device-model.mjs';

const PROGRESS_MS = 250;

self.onmessage = ({ data: { handle, device, windows, ram, control } }) => {
  const translator = Translator.attach(handle);
  const model = createDeviceModel({ batch: translator.batch(), memory: handle.memory, device, windows, ram });
  const elapsedMs = runUntilStopped(model, new Int32Array(control), {
    progressMs: PROGRESS_MS,
    progress: (ms) => self.postMessage({ ...model.report(), elapsedMs: ms }),
  });
  self.postMessage({ ...model.report(), elapsedMs, stats: translator.stats(), final: true });
};
