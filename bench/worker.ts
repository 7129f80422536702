/**
 * A bench worker thread (workers-1 / workers-2): binds to the engine with
 * `Translator.attach(handle)`, writes its requests into its own batch ring once, then on each
 * round waits for the start signal (Atomics.wait on the control word), loops `batch.run()` for the
 * round's time, and reports how many translations it did.
 *
 * Protocol: main posts { round, ms, spin }; the worker replies { armed: round } and blocks until
 * control[0] becomes `round`; then it replies { round, translations, ms }. With `spin` it runs a
 * plain-JS arithmetic loop instead (no engine, no memory traffic) and `translations` counts its
 * iterations: that measures how far this machine lets two threads scale at all.
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Translator, type TranslatorHandle } from '../src/index';

interface Data {
  handle: TranslatorHandle;
  control: SharedArrayBuffer;
  /** Request words (4 per request) for this worker's ring. */
  requests: Uint32Array;
}

const { handle, control, requests } = workerData as Data;
const ctl = new Int32Array(control);
const batch = Translator.attach(handle).batch();
const n = requests.length / 4;
batch.requests.set(requests);
for (let i = 0; i < 200; i++) batch.run(n); // warm the JIT and this slot's IOTLB

/** The calibration body: a dependent integer recurrence, about as long as one batch. */
let seed = 1;
function spin(): void {
  let x = seed;
  for (let i = 0; i < 20_000; i++) x = (Math.imul(x, 1103515245) + 12345) | 0;
  seed = x;
}

parentPort!.on('message', (msg: { round: number; ms: number; spin: boolean } | { stop: true }) => {
  if ('stop' in msg) {
    parentPort!.close();
    return;
  }
  parentPort!.postMessage({ armed: msg.round });
  while (Atomics.load(ctl, 0) !== msg.round) Atomics.wait(ctl, 0, Atomics.load(ctl, 0));
  const start = performance.now();
  const end = start + msg.ms;
  let batches = 0;
  let t = start;
  while (t < end) {
    if (msg.spin) spin();
    else batch.run(n);
    batches++;
    t = performance.now();
  }
  parentPort!.postMessage({ round: msg.round, translations: batches * n, ms: t - start });
});
