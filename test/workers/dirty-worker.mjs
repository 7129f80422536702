// A worker device for the dirty-tracking race in test/dirty.test.ts: writes (DMA) to pseudo-random
// pages of a region until told to stop, and reports which pages it wrote.
import { parentPort, workerData } from 'node:worker_threads';
import { Translator } from '../../dist/index.js';

const { handle, control, rid, iova, pages, seed } = workerData;
const ctl = new Int32Array(control); // [0] stop, [2] ready count
const t = Translator.attach(handle);
const written = new Uint8Array(pages);
const byte = new Uint8Array(1);
let x = seed >>> 0 || 1;
Atomics.add(ctl, 2, 1);
while (Atomics.load(ctl, 0) === 0) {
  x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
  const page = x % pages;
  // Only every 7th page is ever written, so clean pages exist to be misreported.
  if (page % 7 !== 0) continue;
  const r = t.dmaWrite(rid, 0, iova + page * 4096 + (x & 4095), byte);
  if (r.bytes !== 1) throw new Error(`DMA write faulted: ${JSON.stringify(r.fault)}`);
  written[page] = 1;
}
parentPort.postMessage({ written: [...written.keys()].filter((p) => written[p]) });
