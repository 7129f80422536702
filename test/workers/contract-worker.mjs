// A worker translator for test/concurrency.test.ts: translates pages of a region whose mappings
// the owner thread changes on a fixed schedule, and checks every result against the concurrency
// contract (see schedule.mjs). Runs until the owner sets the stop flag; reports counts.
import { parentPort, workerData } from 'node:worker_threads';
import { Translator, TranslationOut, Access } from '../../dist/index.js';
import { allowedResult } from './schedule.mjs';

const { handle, control, rid, pasid, pages, stride, base, useBatch, inFlight = 1 } = workerData;
const ctl = new Int32Array(control); // [0] stop, [1] versions returned, [2] ready count
const translator = Translator.attach(handle);
const out = new TranslationOut();
let checked = 0;
let ok = 0;
let violations = 0;
let firstViolation;

function check(page, r0, result) {
  const r1 = Atomics.load(ctl, 1);
  if (!allowedResult(page, r0, r1, result, pages, inFlight)) {
    violations++;
    firstViolation ??= { page, r0, r1, result };
  }
  checked++;
  if (result !== 0) ok++;
}

Atomics.add(ctl, 2, 1);
let page = 0;
if (useBatch) {
  const batch = translator.batch();
  const n = Math.min(batch.capacity, 64);
  while (Atomics.load(ctl, 0) === 0) {
    const r0 = Atomics.load(ctl, 1);
    const first = page;
    for (let i = 0; i < n; i++) batch.set(i, rid, pasid, base + ((first + i) % pages) * stride + 8, Access.Read);
    batch.run(n);
    for (let i = 0; i < n; i++) check((first + i) % pages, r0, batch.ok(i) ? batch.phys(i) - 8 : 0);
    page = (first + n) % pages;
  }
} else {
  while (Atomics.load(ctl, 0) === 0) {
    const r0 = Atomics.load(ctl, 1);
    translator.translateInto(out, rid, pasid, base + page * stride + 8, Access.Read);
    check(page, r0, out.ok ? out.phys - 8 : 0);
    page = (page + 1) % pages;
  }
}
parentPort.postMessage({ checked, ok, violations, firstViolation, stats: translator.stats() });
