/**
 * Device-side software DMA: what an emulated device does to read or write guest memory through
 * the IOMMU. The transfer is translated leaf by leaf (a 2 MiB leaf is one translation, not 512),
 * copied to or from guest RAM, and stops at the first fault, reporting it and the bytes done —
 * as a PCIe device would see a completion with an error part way through a burst.
 * @module
 */
import { Access } from './translation';
import { FAULT_REASONS, type Fault } from './translation';
import type { Translator } from './translator';

/** Outcome of a DMA transfer: bytes done before the first fault, and that fault (if any). */
export interface DmaResult {
  bytes: number;
  /** `not-ram`: the address translated, but its output is outside guest RAM. */
  fault?: Fault | { readonly reason: 'not-ram'; readonly level: 0; readonly stage: 0; readonly phys: bigint };
}

const TWO_64 = 1n << 64n;
const DONE: DmaResult = Object.freeze({ bytes: 0 });
/** The last whole-transfer result handed out: transfers of one size share one frozen object. */
let whole: DmaResult = DONE;

/**
 * Copies between `data` and the RAM behind `[iova, iova + data.length)`; `toRam` is a write.
 *
 * Leaves whose RAM bytes follow each other (a buffer mapped page by page onto contiguous RAM) are
 * copied as one run, so a transfer costs one typed-array copy per contiguous run, not per page.
 * Every leaf is still translated (and checked) before the run that contains it is copied; a fault
 * copies the runs before it, as the bytes done say. Results are frozen.
 */
export function dmaCopy(t: Translator, rid: number, pasid: number, iova: number | bigint, data: Uint8Array, toRam: boolean): DmaResult {
  const n = data.length;
  if (n === 0) return DONE;
  // Only numbers and bigints are addresses; anything else (a symbol, an object whose valueOf
  // throws) must not reach the arithmetic below, which would throw.
  if (typeof iova !== 'number' && typeof iova !== 'bigint') return faulted(0, 'bad-request');
  const out = t.dmaScratch;
  const access = toRam ? Access.Write : Access.Read;
  // Past 2^53 number arithmetic rounds: such transfers run on bigint addresses.
  const wide = typeof iova === 'bigint' || (Number.isInteger(iova) && iova + n > Number.MAX_SAFE_INTEGER);
  if (wide && typeof iova === 'number') iova = BigInt(iova);
  const run = { data, toRam, t, at: 0, from: 0, bytes: 0 };
  let done = 0;
  while (done < n) {
    // Number addresses stay numbers (the fast path); bigint ones wrap-check once per leaf.
    const at = wide ? (iova as bigint) + BigInt(done) : (iova as number) + done;
    if (wide && (at as bigint) >= TWO_64) return stopped(run, faulted(done, 'bad-request'));
    const r = t.translateInto(out, rid, pasid, at, access);
    if (!r.ok) return stopped(run, { bytes: done, fault: { reason: FAULT_REASONS[r.reason] ?? 'bad-request', level: r.level, stage: r.stage } });
    const left = n - done;
    // Fast path: the rest fits in this leaf (always true for a transfer within one 4 KiB page).
    const sizeLg2 = r.sizeLg2;
    const room = sizeLg2 === 12 ? 4096 - (r.physLo & 4095) : 2 ** sizeLg2 - (r.phys % 2 ** sizeLg2);
    const chunk = left < room ? left : room;
    const offset = t.ramWindow.offsetOf(r.phys, chunk);
    if (offset < 0) {
      return stopped(run, { bytes: done, fault: { reason: 'not-ram', level: 0, stage: 0, phys: (BigInt(r.physHi) << 32n) | BigInt(r.physLo) } });
    }
    if (run.bytes !== 0 && offset === run.at + run.bytes) {
      run.bytes += chunk;
    } else {
      copyRun(run);
      run.at = offset;
      run.from = done;
      run.bytes = chunk;
    }
    done += chunk;
  }
  copyRun(run);
  return whole.bytes === n ? whole : (whole = Object.freeze({ bytes: n }));
}

interface Run {
  readonly data: Uint8Array;
  readonly toRam: boolean;
  readonly t: Translator;
  /** Memory offset of the run's first RAM byte. */
  at: number;
  /** Offset of the run in `data`. */
  from: number;
  bytes: number;
}

/** Copies the pending run (nothing when empty). */
function copyRun(r: Run): void {
  if (r.bytes === 0) return;
  const u8 = r.t.core.u8;
  const whole = r.from === 0 && r.bytes === r.data.length;
  if (r.toRam) u8.set(whole ? r.data : r.data.subarray(r.from, r.from + r.bytes), r.at);
  else r.data.set(u8.subarray(r.at, r.at + r.bytes), r.from);
}

/** Copies what was translated before a fault, then reports the fault. */
function stopped(r: Run, result: DmaResult): DmaResult {
  copyRun(r);
  return result;
}

function faulted(bytes: number, reason: 'bad-request'): DmaResult {
  return { bytes, fault: { reason, level: 0, stage: 0 } };
}
