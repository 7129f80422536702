// A worker translator for test/percall-concurrency.test.ts: the per-call paths only —
// translateInto with number and bigint IOVAs, two-page dmaRead, and ('dma-run') a dmaRead of the
// whole block (one core call per contiguous run of leaves) — over pages the owner keeps moving. Every result must be at least as new as the version whose
// control calls had returned when the request began (floors[page]); faults are allowed (a page is
// unmapped for a moment while it moves). Runs until the owner sets the stop flag; reports counts.
import { parentPort, workerData } from 'node:worker_threads';
import { Translator, TranslationOut, Access } from '../../dist/index.js';

const { handle, control, floors, rid, pages, base, physBase, mode } = workerData;
const ctl = new Int32Array(control); // [0] stop, [2] ready count
const floor = new Int32Array(floors); // per page; 'dma-run': [0] for the whole block
const t = Translator.attach(handle);
const out = new TranslationOut();
const buf = new Uint8Array(2 * 4096);
const view = new DataView(buf.buffer);
const block = new Uint8Array(pages * 4096);
const blockView = new DataView(block.buffer);
const ram = new DataView(t.ram.buffer, t.ram.byteOffset, t.ram.byteLength);
let checked = 0;
let ok = 0;
let violations = 0;
let firstViolation;

const violation = (what) => {
  violations++;
  firstViolation ??= what;
};

Atomics.add(ctl, 2, 1);
let i = 0;
while (Atomics.load(ctl, 0) === 0) {
  const page = i++ % pages;
  if (mode === 'dma-run') {
    // The whole block in one transfer: a run of `pages` leaves when the IOTLB holds them all.
    const f = Atomics.load(floor, 0);
    const r = t.dmaRead(rid, 0, base, block);
    checked++;
    if (r.bytes === block.length) ok++;
    for (let j = 0; j < Math.floor(r.bytes / 4096); j++) {
      const v = blockView.getUint32(j * 4096, true);
      if (v < f) violation({ page: j, floor: f, version: v, bytes: r.bytes });
    }
  } else if (mode === 'dma') {
    // Two pages in one transfer: the page's own version stamp and its neighbour's.
    const next = (page + 1) % pages;
    if (next === 0) continue; // the pages are contiguous in IOVA only up to the last
    const f0 = Atomics.load(floor, page);
    const f1 = Atomics.load(floor, next);
    const r = t.dmaRead(rid, 0, base + page * 4096, buf);
    checked++;
    if (r.bytes >= 4096) {
      const v0 = view.getUint32(0, true);
      if (v0 < f0) violation({ page, floor: f0, version: v0 });
    }
    if (r.bytes === 8192) {
      ok++;
      const v1 = view.getUint32(4096, true);
      if (v1 < f1) violation({ page: next, floor: f1, version: v1 });
    }
  } else {
    const f = Atomics.load(floor, page);
    const iova = base + page * 4096 + 8;
    t.translateInto(out, rid, 0, mode === 'bigint' ? BigInt(iova) : iova, Access.Read);
    checked++;
    if (!out.ok) continue;
    ok++;
    // The output page's stamp is its version (or a newer one that reused the RAM page).
    const at = out.phys - 8 - physBase;
    const version = at >= 0 && at < ram.byteLength && at % 4096 === 0 ? ram.getUint32(at, true) : -1;
    if (version < f) violation({ page, floor: f, version, phys: out.phys });
  }
}
parentPort.postMessage({ checked, ok, violations, firstViolation, stats: t.stats() });
