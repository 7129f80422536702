// A worker for the domain-reuse race of test/soak.test.ts: translates one IOVA of one device as
// fast as it can and counts results that come from another FD's address space (a walk that used a
// domain slot freed by a detach and already reused by another FD's HWPT).
import { parentPort, workerData } from 'node:worker_threads';
import { Translator, TranslationOut, Access } from '../../dist/index.js';

const { handle, control, rid, iova, own, foreign } = workerData;
const ctl = new Int32Array(control); // [0] stop, [1] ready, [2] successful translations so far
const t = Translator.attach(handle);
const out = new TranslationOut();
let checked = 0;
let ok = 0;
let crossed = 0;
let garbage = 0;
Atomics.add(ctl, 1, 1);
while (Atomics.load(ctl, 0) === 0) {
  t.translateInto(out, rid, 0, iova, Access.Read);
  checked++;
  if (out.ok) {
    if (out.phys === own) Atomics.store(ctl, 2, ++ok);
    else if (out.phys === foreign) crossed++;
    else garbage++;
  }
  if ((checked & 4095) === 0) t.faults.drain();
}
parentPort.postMessage({ checked, ok, crossed, garbage });
