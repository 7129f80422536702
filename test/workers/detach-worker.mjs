// A worker translator for the detach race of test/concurrency.test.ts. Version v attaches the
// device's RID when odd and detaches it when even; ctl[3] = version started, ctl[1] = returned.
// A translation that started when an even (detach) version had returned and no later version
// had started must fault: anything else would be a stale IOTLB or context hit. ctl[4] counts the
// successful translations (see progress.mjs).
import { parentPort, workerData } from 'node:worker_threads';
import { Translator, TranslationOut, Access } from '../../dist/index.js';

const { handle, control, rid, base, stride, pages } = workerData;
const ctl = new Int32Array(control);
const translator = Translator.attach(handle);
const out = new TranslationOut();
let checked = 0;
let stale = 0;
let ok = 0;
let page = 0;
Atomics.add(ctl, 2, 1);
while (Atomics.load(ctl, 0) === 0) {
  const returned = Atomics.load(ctl, 1);
  const started = Atomics.load(ctl, 3);
  translator.translateInto(out, rid, 0, base + page * stride, Access.Read);
  const after = Atomics.load(ctl, 3);
  const detachedThroughout = returned % 2 === 0 && started === returned && after === returned;
  if (detachedThroughout && out.ok) stale++;
  if (out.ok) Atomics.store(ctl, 4, ++ok);
  checked++;
  page = (page + 1) % pages;
}
parentPort.postMessage({ checked, stale, ok });
