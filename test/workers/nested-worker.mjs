// A worker translator for test/nested-concurrency.test.ts. Modes:
//  'ad'    — write requests over pages whose PTEs the owner keeps cleaning and scribbling on;
//  'inval' — read requests over pages the owner keeps moving (then invalidating); every result
//            must be at least the version whose invalidation had returned when the request began;
//  'prq'   — requests that fault through a HWPT with a fault queue (page requests from a worker).
// Runs until the owner sets the stop flag; reports counts.
import { parentPort, workerData } from 'node:worker_threads';
import { Translator, TranslationOut, Access } from '../../dist/index.js';

const { handle, control, versions, rid, pasid, mode, iovas, base, useBatch } = workerData;
const ctl = new Int32Array(control); // [0] stop, [2] ready count
const pageVer = versions ? new Int32Array(versions) : undefined;
const translator = Translator.attach(handle);
const out = new TranslationOut();
let checked = 0;
let ok = 0;
let violations = 0;
let pageRequests = 0;
let firstViolation;

Atomics.add(ctl, 2, 1);
const batch = useBatch ? translator.batch() : undefined;
let i = 0;
while (Atomics.load(ctl, 0) === 0) {
  const page = i % iovas.length;
  const iova = iovas[page];
  i++;
  if (mode === 'inval') {
    const floor = Atomics.load(pageVer, page);
    let phys;
    if (batch) {
      batch.set(0, rid, pasid, iova, Access.Read);
      batch.run(1);
      phys = batch.ok(0) ? batch.phys(0) : -1;
    } else {
      translator.translateInto(out, rid, pasid, iova, Access.Read);
      phys = out.ok ? out.phys : -1;
    }
    checked++;
    if (phys < 0) continue;
    ok++;
    const version = Math.floor((phys - base) / 4096);
    if (version < floor) {
      violations++;
      firstViolation ??= { page, floor, version };
    }
  } else {
    translator.translateInto(out, rid, pasid, iova, mode === 'ad' ? Access.Write : Access.Read);
    checked++;
    if (out.ok) ok++;
    if (out.pageRequest) pageRequests++;
    if (mode === 'ad' && out.ok && out.phys !== base + page * 4096) {
      violations++;
      firstViolation ??= { page, phys: out.phys };
    }
  }
}
parentPort.postMessage({ checked, ok, violations, firstViolation, pageRequests, stats: translator.stats() });
