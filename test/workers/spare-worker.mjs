// A worker translator for test/spare-concurrency.test.ts: translates a fixed set of probes over and
// over (per call with number or bigint IOVAs, or in batches) while the owner churns spare tables,
// and checks every result against the probes' timeline (protocol: spare-timeline.mjs). Reports
// counts and the first violations when the owner sets the stop flag.
import { parentPort, workerData } from 'node:worker_threads';
import { Translator, TranslationOut, Access } from '../../dist/index.js';
import { CTL_STOP, CTL_RETURNED, CTL_READY, encodeOk, encodeFault, checkResult } from './spare-timeline.mjs';

const { handle, control, history, counts: countsBuf, cap, probes, mode } = workerData;
const ctl = new Int32Array(control);
const hist = new Float64Array(history);
const counts = new Int32Array(countsBuf);
const t = Translator.attach(handle);
const out = new TranslationOut();
const tally = { ok: 0, stale: 0, torn: 0, unchecked: 0 };
let checked = 0;
let hits = 0;
const firstViolations = [];

function check(p, r0, r1, got) {
  const verdict = checkResult(hist, counts, cap, p, r0, r1, got);
  tally[verdict]++;
  checked++;
  if (got > 0) hits++;
  if ((verdict === 'stale' || verdict === 'torn') && firstViolations.length < 5) {
    firstViolations.push({ verdict, probe: p, iova: `0x${probes[p][1].toString(16)}`, r0, r1, got });
  }
}

Atomics.add(ctl, CTL_READY, 1);
const bigIovas = probes.map(([, iova]) => BigInt(iova));
let p = 0;
if (mode === 'batch') {
  const batch = t.batch();
  const m = Math.min(batch.capacity, 32);
  while (Atomics.load(ctl, CTL_STOP) === 0) {
    const first = p;
    for (let i = 0; i < m; i++) {
      const [rid, iova] = probes[(first + i) % probes.length];
      batch.set(i, rid, 0, iova, Access.Read);
    }
    const r0 = Atomics.load(ctl, CTL_RETURNED);
    batch.run(m);
    const r1 = Atomics.load(ctl, CTL_RETURNED);
    for (let i = 0; i < m; i++) {
      const info = batch.info(i);
      const got = info & 1 ? encodeOk(batch.phys(i), (info >>> 8) & 0x3f) : encodeFault((info >>> 16) & 0xff, (info >>> 24) & 0xf);
      check((first + i) % probes.length, r0, r1, got);
    }
    p = (first + m) % probes.length;
  }
} else {
  while (Atomics.load(ctl, CTL_STOP) === 0) {
    const [rid, iova] = probes[p];
    const r0 = Atomics.load(ctl, CTL_RETURNED);
    t.translateInto(out, rid, 0, mode === 'bigint' ? bigIovas[p] : iova, Access.Read);
    const r1 = Atomics.load(ctl, CTL_RETURNED);
    check(p, r0, r1, out.ok ? encodeOk(out.phys, out.sizeLg2) : encodeFault(out.reason, out.level));
    if ((checked & 4095) === 0) t.faults.drain();
    p = (p + 1) % probes.length;
  }
}
parentPort.postMessage({ mode, checked, hits, ...tally, violations: tally.stale + tally.torn, firstViolations, stats: t.stats() });
