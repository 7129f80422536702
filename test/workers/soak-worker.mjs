// A worker translator for the concurrency soak (test/soak.test.ts, scripts/soak.mjs): translates
// the probes over and over — per call or in batches — while the owner runs random control ops, and
// checks every result against the probes' history rings (protocol: test/model/soak.ts). Reports
// counts and the first violations when the owner sets the stop flag.
import { parentPort, workerData } from 'node:worker_threads';
import { Translator, TranslationOut, Access } from '../../dist/index.js';

const CTL_STOP = 0;
const CTL_RETURNED = 1;
const CTL_READY = 3;
const FAULTS = ['none', 'bad-request', 'no-device', 'not-attached', 'pasid-invalid', 'beyond-width', 'not-present', 'permission'];

const { handle, shared, cap, mode, seed } = workerData;
const ctl = new Int32Array(shared.control);
const hist = new Float64Array(shared.history);
const counts = new Int32Array(shared.counts);
const probes = shared.probes;
const translator = Translator.attach(handle);
const out = new TranslationOut();

const encode = (ok, phys, perm, reason) => (ok ? 1 + phys * 8 + perm : -(1 + reason));
let checked = 0;
let unchecked = 0;
let ok = 0;
let stale = 0;
let torn = 0;
const firstViolations = [];

/** Is `got` legal for probe `p` translated between `returned` readings r0 and r1? */
function check(p, r0, r1, got) {
  const n = Atomics.load(counts, p);
  const lowest = Math.max(0, n - cap);
  for (let i = n - 1; i >= lowest; i--) {
    const at = (p * cap + (i % cap)) * 2;
    const ver = hist[at];
    if (ver > r1 + 1) continue;
    if (hist[at + 1] === got) {
      checked++;
      if (got > 0) ok++;
      return;
    }
    if (ver <= r0) {
      // Not the state at r0 nor any state set while the translation ran: older (stale) or never (torn)?
      let seen = false;
      for (let j = i - 1; j >= lowest && !seen; j--) seen = hist[(p * cap + (j % cap)) * 2 + 1] === got;
      if (seen) stale++;
      else torn++;
      checked++;
      if (firstViolations.length < 5) {
        const [rid, pasid, iova] = probes[p];
        firstViolations.push({ probe: { rid, pasid, iova: `0x${iova.toString(16)}` }, r0, r1, got, expectedAtR0: hist[at + 1], kind: seen ? 'stale' : 'torn' });
      }
      return;
    }
  }
  unchecked++; // the ring no longer holds the state at r0 (never happens unless the worker stalls)
}

let x = seed >>> 0 || 1;
const next = () => {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return (x >>> 0) % probes.length;
};

Atomics.add(ctl, CTL_READY, 1);
if (mode === 'batch') {
  const batch = translator.batch();
  const m = Math.min(batch.capacity, 32);
  const picked = new Int32Array(m);
  while (Atomics.load(ctl, CTL_STOP) === 0) {
    for (let i = 0; i < m; i++) {
      const p = next();
      picked[i] = p;
      batch.set(i, probes[p][0], probes[p][1], probes[p][2], Access.Read);
    }
    const r0 = Atomics.load(ctl, CTL_RETURNED);
    batch.run(m);
    const r1 = Atomics.load(ctl, CTL_RETURNED);
    for (let i = 0; i < m; i++) {
      const okBit = batch.ok(i);
      check(picked[i], r0, r1, encode(okBit, okBit ? batch.phys(i) : 0, okBit ? batch.perm(i) : 0, okBit ? 0 : batch.reason(i)));
    }
  }
} else {
  while (Atomics.load(ctl, CTL_STOP) === 0) {
    const p = next();
    const r0 = Atomics.load(ctl, CTL_RETURNED);
    translator.translateInto(out, probes[p][0], probes[p][1], probes[p][2], Access.Read);
    const r1 = Atomics.load(ctl, CTL_RETURNED);
    check(p, r0, r1, encode(out.ok, out.phys, out.perm, out.reason));
    if ((checked & 1023) === 0) translator.faults.drain();
  }
}
parentPort.postMessage({ mode, checked, unchecked, ok, stale, torn, firstViolations, reasons: FAULTS.length });
