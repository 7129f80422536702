// A PCI device model on its own Node worker thread: its own translator over the engine's memory,
// the DMA bursts of device-model.mjs through that translator's batch ring until the owner says
// stop, then a report of its counts.
import { parentPort, workerData } from 'node:worker_threads';
import { Translator } from 'ioasid';
import { createDeviceModel, runUntilStopped } from './device-model.mjs';

const { handle, device, windows, ram, control } = workerData;

const translator = Translator.attach(handle);
// Machine RAM is part of the engine memory, so this thread sees the same bytes as every other.
const model = createDeviceModel({ batch: translator.batch(), memory: handle.memory, device, windows, ram });
const elapsedMs = runUntilStopped(model, new Int32Array(control));

parentPort.postMessage({ ...model.report(), elapsedMs, stats: translator.stats() });
