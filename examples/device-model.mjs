// A PCI device model's DMA engine, independent of where it runs (a Node worker thread, a browser
// Web Worker, or the owner thread when the engine is single-threaded). Each burst fills the
// device's batch ring like a descriptor ring — every descriptor touches every DMA window of the
// device once — translates the whole burst with one Wasm call, and completes it: each translated
// write stores a tagged word in machine RAM wherever the IOMMU sent it, as real DMA would. It also
// checks each successful translation against its VM's host range, and counts per window.
import { Access, FAULT_REASONS } from 'ioasid';
import { CONTROL } from './machine-layout.mjs';

/**
 * @param batch    a `Batch` (a worker translator's ring, or `iommu.batch(n)` on the owner thread)
 * @param memory   the engine's `WebAssembly.Memory` (machine RAM lives inside it)
 * @param device   { name, rid, tag, host: { start, end } }
 * @param windows  the device's DMA windows (vms.mjs `dmaWindow`)
 * @param ram      { base, byteOffset, bytes }: machine RAM's guest-physical base and place in `memory`
 */
export function createDeviceModel({ batch, memory, device, windows, ram }) {
  const descriptorsPerBurst = Math.floor(batch.capacity / windows.length);
  const counts = windows.map(() => ({ ok: 0, faults: 0 }));
  const cursors = windows.map(() => 0);
  const faultsByReason = {};
  let machineRam = new Uint32Array(0);
  let bursts = 0;
  let translations = 0;
  let escapes = 0;
  let firstEscape;

  /** Machine RAM as words; re-made when the memory grew (an unshared buffer is replaced). */
  const ramWords = () => {
    if (machineRam.buffer !== memory.buffer) machineRam = new Uint32Array(memory.buffer, ram.byteOffset, ram.bytes / 4);
    return machineRam;
  };

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
    const words = ramWords();
    const tagWord = ((device.tag << 24) | (bursts & 0xffffff)) >>> 0;
    for (let i = 0; i < n; i++) {
      const w = i % windows.length;
      if (!batch.ok(i)) {
        counts[w].faults++;
        const reason = FAULT_REASONS[batch.reason(i)];
        faultsByReason[reason] = (faultsByReason[reason] ?? 0) + 1;
        continue;
      }
      counts[w].ok++;
      const phys = batch.phys(i);
      if (phys < device.host.start || phys >= device.host.end) {
        escapes++;
        firstEscape ??= { window: windows[w].name, iova: windows[w].iova, phys };
      }
      const offset = phys - ram.base;
      if (windows[w].access & Access.Write && offset >= 0 && offset < ram.bytes) words[offset >>> 2] = tagWord;
    }
    bursts++;
    translations += n;
  }

  /** The device's counts so far (summary.mjs and checks.mjs read this shape). */
  const report = () => ({
    name: device.name,
    translations,
    bursts,
    escapes,
    firstEscape,
    faultsByReason: { ...faultsByReason },
    windows: windows.map((win, w) => ({ name: win.name, mayFault: win.mayFault, mustFault: win.mustFault, why: win.why, ...counts[w] })),
  });

  return { burst, report };
}

/**
 * The device's life on a thread of its own: signals READY, waits for GO, then runs bursts until
 * STOP (words of `flags`, an Int32Array over the owner's control SharedArrayBuffer, machine-layout
 * CONTROL). Calls `progress(elapsedMs)` every `progressMs` while running. @returns the elapsed ms.
 */
export function runUntilStopped(model, flags, { progressMs = Infinity, progress = () => {} } = {}) {
  Atomics.add(flags, CONTROL.READY, 1);
  Atomics.wait(flags, CONTROL.GO, 0); // every device starts when the owner starts the clock
  const started = performance.now();
  let nextProgress = started + progressMs;
  while (Atomics.load(flags, CONTROL.STOP) === 0) {
    model.burst();
    if (performance.now() >= nextProgress) {
      progress(performance.now() - started);
      nextProgress = performance.now() + progressMs;
    }
  }
  return performance.now() - started;
}
