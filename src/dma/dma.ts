/**
 * Device-side software DMA: what an emulated device does to read or write guest memory through
 * the IOMMU. The transfer is translated leaf by leaf (a 2 MiB leaf is one translation, not 512),
 * copied to or from guest RAM, and stops at the first fault, reporting it and the bytes done —
 * as a PCIe device would see a completion with an error part way through a burst.
 * @module
 */
import type { GuestRam } from '../core/ram-window';
import { Access, FAULT_REASONS, type Fault, type TranslationOut } from './translation';

/** Outcome of a DMA transfer: bytes done before the first fault, and that fault (if any). */
export interface DmaResult {
  /** Bytes copied before the transfer ended (all of them when there is no fault). */
  bytes: number;
  /** `not-ram`: the address translated, but its output is outside guest RAM. */
  fault?: Fault | {
    /** The translation succeeded but its output is not guest RAM. */
    readonly reason: 'not-ram';
    /** Always 0. */
    readonly level: 0;
    /** Always 0. */
    readonly stage: 0;
    /** The output address that is outside guest RAM. */
    readonly phys: bigint;
  };
}

/**
 * What a transfer needs of its translator. A `Translator` is one; the interface keeps this file
 * below translator.ts (which calls `dmaCopy`), so the two do not import each other.
 */
export interface DmaPort {
  /** Scratch result reused by every leaf of a transfer (the translator's own). */
  readonly dmaScratch: TranslationOut;
  /** Guest RAM, where the copies go (src/core/ram-window.ts). */
  readonly guestRam: GuestRam;
  translateInto(out: TranslationOut, rid: number, pasid: number, iova: number | bigint, access: Access): TranslationOut;
}

const TWO_64 = 1n << 64n;
const DONE: DmaResult = Object.freeze({ bytes: 0 });

/** Copies between `data` and the RAM behind `[iova, iova + data.length)`; `toRam` is a write. */
export function dmaCopy(t: DmaPort, rid: number, pasid: number, iova: number | bigint, data: Uint8Array, toRam: boolean): DmaResult {
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
  let done = 0;
  while (done < n) {
    // Number addresses stay numbers (the fast path); bigint ones wrap-check once per leaf.
    const at = wide ? (iova as bigint) + BigInt(done) : (iova as number) + done;
    if (wide && (at as bigint) >= TWO_64) return faulted(done, 'bad-request');
    const r = t.translateInto(out, rid, pasid, at, access);
    if (!r.ok) return { bytes: done, fault: { reason: FAULT_REASONS[r.reason] ?? 'bad-request', level: r.level, stage: r.stage } };
    const left = n - done;
    // Fast path: the rest fits in this leaf (always true for a transfer within one 4 KiB page).
    const room = r.sizeLg2 === 12 ? 4096 - (r.physLo & 4095) : 2 ** r.sizeLg2 - (r.phys % 2 ** r.sizeLg2);
    const chunk = left < room ? left : room;
    if (!(toRam ? t.guestRam.write(r.phys, data, done, chunk) : t.guestRam.read(r.phys, data, done, chunk))) {
      return { bytes: done, fault: { reason: 'not-ram', level: 0, stage: 0, phys: (BigInt(r.physHi) << 32n) | BigInt(r.physLo) } };
    }
    done += chunk;
  }
  return { bytes: n };
}

function faulted(bytes: number, reason: 'bad-request'): DmaResult {
  return { bytes, fault: { reason, level: 0, stage: 0 } };
}
