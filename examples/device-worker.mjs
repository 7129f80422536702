// A PCI device model on its own thread. It runs descriptor-ring-like DMA bursts through its own
// translator's batch ring until the owner says stop: each descriptor touches every DMA window of
// the device once, the whole burst is translated by one Wasm call, and every translated write
// stores a tagged word in machine RAM wherever the IOMMU sent it — as real DMA would. It also
// checks each successful translation against its VM's host range, and reports its counts.
import { parentPort, workerData } from 'node:worker_threads';
import { Access, Translator } from '../dist/index.js';
import { CONTROL } from './machine-layout.mjs';

const { handle, device, windows, ram, control } = workerData;
const flags = new Int32Array(control);

const translator = Translator.attach(handle);
const batch = translator.batch();
// Machine RAM is part of the engine memory, so this thread sees the same bytes as every other.
const machineRam = new Uint32Array(handle.memory.buffer, ram.byteOffset, ram.bytes / 4);
const descriptorsPerBurst = Math.floor(batch.capacity / windows.length);

const counts = windows.map(() => ({ ok: 0, faults: 0 }));
const cursors = windows.map(() => 0);
let bursts = 0;
let translations = 0;
let escapes = 0;
let firstEscape;

function burst() {
  // Fill the ring in place: descriptor d touches each window at that window's next address.
  let n = 0;
  for (let d = 0; d < descriptorsPerBurst; d++) {
    for (let w = 0; w < windows.length; w++) {
      const win = windows[w];
      batch.set(n++, device.rid, win.pasid, win.iova + cursors[w], win.access);
      cursors[w] = (cursors[w] + win.step) % win.bytes;
    }
  }
  batch.run(n);

  // Complete the descriptors: check where each translation went, then do the write.
  const tagWord = ((device.tag << 24) | (bursts & 0xffffff)) >>> 0;
  for (let i = 0; i < n; i++) {
    const w = i % windows.length;
    if (!batch.ok(i)) {
      counts[w].faults++;
      continue;
    }
    counts[w].ok++;
    const phys = batch.phys(i);
    if (phys < device.host.start || phys >= device.host.end) {
      escapes++;
      firstEscape ??= { window: windows[w].name, iova: windows[w].iova, phys };
    }
    const offset = phys - ram.base;
    if (windows[w].access & Access.Write && offset >= 0 && offset < ram.bytes) machineRam[offset >>> 2] = tagWord;
  }
  bursts++;
  translations += n;
}

Atomics.add(flags, CONTROL.READY, 1);
Atomics.wait(flags, CONTROL.GO, 0); // every device starts when the owner starts the clock
const started = performance.now();
while (Atomics.load(flags, CONTROL.STOP) === 0) burst();
const elapsedMs = performance.now() - started;

parentPort.postMessage({
  name: device.name,
  translations,
  bursts,
  elapsedMs,
  escapes,
  firstEscape,
  windows: windows.map((win, w) => ({ name: win.name, mayFault: win.mayFault, mustFault: win.mustFault, ...counts[w] })),
  stats: translator.stats(),
});
