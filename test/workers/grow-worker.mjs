// A worker translator for test/grow-race.test.ts: translates the pages around the owner's map
// frontier — whose tables the owner has just allocated, often in memory it has just grown — per
// call or in batches, reads and writes, and checks every result (see the test's header).
import { parentPort, workerData } from 'node:worker_threads';
import { Translator, TranslationOut, Access } from '../../dist/index.js';

const { handle, control, rid, base, stride, phys, live, useBatch } = workerData;
const ctl = new Int32Array(control); // [0] stop, [1] pages mapped so far (frontier), [2] ready count
const translator = Translator.attach(handle);
const out = new TranslationOut();
let checked = 0;
let ok = 0;
let violations = 0;
let firstViolation;

/** Page p's result of a request that began with frontier f0 and ended before f1 was read. */
function check(p, f0, f1, result, access) {
  checked++;
  // Mapped before the request began, and its unmap (at step p + live) had not begun when it ended.
  const mustMap = p >= 0 && p < f0 && f1 < p + live;
  const good = result !== null && result.phys === phys + p * 4096 + 8;
  if (result !== null) ok++;
  if ((result !== null && !good) || (result === null && mustMap)) {
    violations++;
    firstViolation ??= { p, f0, f1, access, result };
  }
}

Atomics.add(ctl, 2, 1);
let turn = 0;
const pageAt = (f0, i) => (i === 0 ? f0 - live + 1 : f0 - 24 + i); // the oldest live page too
if (useBatch) {
  const batch = translator.batch();
  const n = Math.min(batch.capacity, 32);
  const access = [];
  while (Atomics.load(ctl, 0) === 0) {
    const f0 = Atomics.load(ctl, 1);
    for (let i = 0; i < n; i++) {
      access[i] = (turn + i) & 1 ? Access.Write : Access.Read;
      batch.set(i, rid, 0, base + Math.max(pageAt(f0, i), 0) * stride + 8, access[i]);
    }
    batch.run(n);
    const f1 = Atomics.load(ctl, 1);
    for (let i = 0; i < n; i++) {
      const p = Math.max(pageAt(f0, i), 0);
      check(p, f0, f1, batch.ok(i) ? { phys: batch.phys(i) } : null, access[i]);
    }
    turn++;
  }
} else {
  while (Atomics.load(ctl, 0) === 0) {
    const f0 = Atomics.load(ctl, 1);
    const i = turn++ % 32;
    const p = Math.max(pageAt(f0, i), 0);
    const access = turn & 1 ? Access.Write : Access.Read;
    translator.translateInto(out, rid, 0, base + p * stride + 8, access);
    const result = out.ok ? { phys: out.phys } : null;
    check(p, f0, Atomics.load(ctl, 1), result, access);
  }
}
parentPort.postMessage({ checked, ok, violations, firstViolation });
