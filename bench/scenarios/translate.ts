/**
 * The translation scenarios' common body: one request list, translated by every implementation
 * over the same engine state, cross-checked, then measured.
 *
 * - wasm batch: `iommu.batch(n)`, requests written once in place, `batch.run()` per iteration.
 * - wasm call: `iommu.translateInto(out, rid, pasid, iova, access)` per request (the public
 *   allocation-free per-call API).
 * - native / js: the same algorithm over the same memory image, each as its own translator slot
 *   (reserved with `translatorHandle`, so each has its own IOTLB and counters), reading the wasm
 *   batch's request records and writing to its own result records.
 * - ts: the idiomatic twin, one `translate` (BigInt address, result object) per request.
 * Every implementation's results must equal the Wasm's, or the bench stops with an error.
 * @module
 */
import * as abi from '../../assembly/abi';
import { TranslationOut } from '../../src/index';
import { createJsCore } from '../baselines/js';
import type { TsTranslation } from '../baselines/ts';
import type { Harness, Task } from '../harness';
import type { NativeLoad } from '../native/addon';
import type { Request, Twin } from '../setup';

export interface BenchEnv {
  h: Harness;
  native: NativeLoad;
  /** Short runs for trying things out. */
  quick: boolean;
}

export interface TranslationCase {
  /** Scenario name of the batch measurement. */
  batch: string;
  /** Scenario name of the per-call measurement; omitted = batch only. */
  call?: string;
  variant?: string;
  twin: Twin;
  requests: Request[];
  /** Extra facts for the table's note column. */
  note?: string;
}

/** Throws unless result words `got` equal `want` (phys lo, phys hi, info per request). */
function crossCheck(what: string, got: Uint32Array, want: Uint32Array, n: number): void {
  for (let i = 0; i < n * 4; i++) {
    if ((i & 3) === 3) continue; // reserved word
    if (got[i] !== want[i]) {
      const k = i >> 2;
      const words = (a: Uint32Array): string => [...a.subarray(k * 4, k * 4 + 3)].map((w) => `0x${w.toString(16)}`).join(' ');
      throw new Error(`cross-check failed: ${what}, request ${k}: got ${words(got)}, wasm gave ${words(want)}`);
    }
  }
}

function checkOut(what: string, out: TranslationOut, want: Uint32Array, i: number): void {
  const info = want[i * 4 + 2]!;
  if (out.ok !== ((info & abi.INFO_OK) !== 0) || out.physLo !== want[i * 4] || out.physHi !== want[i * 4 + 1] || out.perm !== ((info >>> abi.INFO_PERM_SHIFT) & abi.INFO_PERM_MASK)) {
    throw new Error(`cross-check failed: ${what}, request ${i}: got ok=${out.ok} phys=0x${out.phys.toString(16)}, wasm gave info 0x${info.toString(16)}`);
  }
}

function checkTs(what: string, r: TsTranslation, want: Uint32Array, i: number): void {
  const info = want[i * 4 + 2]!;
  const phys = (BigInt(want[i * 4 + 1]!) << 32n) | BigInt(want[i * 4]!);
  const ok = (info & abi.INFO_OK) !== 0;
  const size = 1n << BigInt((info >>> abi.INFO_SIZE_SHIFT) & abi.INFO_SIZE_MASK);
  if (r.ok !== ok || (ok && (r.phys !== phys || r.size !== size || r.perm !== ((info >>> abi.INFO_PERM_SHIFT) & abi.INFO_PERM_MASK)))) {
    throw new Error(`cross-check failed: ${what}, request ${i}: got ok=${r.ok} phys=0x${r.phys.toString(16)}, wasm gave 0x${phys.toString(16)} (info 0x${info.toString(16)})`);
  }
}

/** Cross-checks and measures one request list in every implementation. */
export function benchTranslations(env: BenchEnv, c: TranslationCase): void {
  const { iommu, ts } = c.twin;
  const n = c.requests.length;
  const what = (impl: string, scenario = c.batch): string => `${scenario}${c.variant ? `/${c.variant}` : ''} ${impl}`;

  // Everything that allocates engine memory first; views are taken after.
  const jsSlot = iommu.translatorHandle({ batchCapacity: n });
  const nativeSlot = iommu.translatorHandle({ batchCapacity: n });
  const batch = iommu.batch(n);
  const memory = iommu.memory;
  const req = batch.requests;
  c.requests.forEach((r, i) => {
    req[i * 4] = r.rid | (r.access << abi.REQ_ACCESS_SHIFT);
    req[i * 4 + 1] = r.pasid;
    req[i * 4 + 2] = Number(r.iova & 0xffffffffn);
    req[i * 4 + 3] = Number(r.iova >> 32n);
  });

  // Each implementation starts from its own empty IOTLB and runs the list three times: the third
  // pass must give the Wasm's results and the Wasm's IOTLB hit count (same fill policy).
  const thirdPassHits = (run: () => number): number => {
    run();
    run();
    const before = iommu.stats().hits;
    if (run() !== 0) throw new Error(`${what('wasm')}: the request list faults; every request must translate`);
    return iommu.stats().hits - before;
  };
  const wasmHits = thirdPassHits(() => batch.run(n));
  const want = batch.results.slice(0, n * 4);
  const sameHits = (impl: string, hits: number): void => {
    if (hits !== wasmHits) throw new Error(`cross-check failed: ${what(impl)}: ${hits} IOTLB hits in the third pass, wasm had ${wasmHits}`);
  };
  const note = [`IOTLB hits ${((wasmHits / n) * 100).toFixed(1)}%`, c.note].filter(Boolean).join(', ');

  const js = createJsCore(memory, jsSlot.slot);
  const jsRes = new Uint32Array(memory.buffer, jsSlot.batch.resultPtr, n * 4);
  sameHits('js', thirdPassHits(() => js.translateBatch(batch.requestPtr, jsSlot.batch.resultPtr, n)));
  crossCheck(what('js'), jsRes, want, n);

  const native = env.native.ok ? env.native.core : undefined;
  const nativeRes = new Uint32Array(memory.buffer, nativeSlot.batch.resultPtr, n * 4);
  const bindNative = (): void => void native?.bind(new Uint8Array(memory.buffer), abi.CTRL_BASE, nativeSlot.slot);
  if (native) {
    bindNative();
    sameHits('native', thirdPassHits(() => native.batch(batch.requestPtr, nativeSlot.batch.resultPtr, n)));
    crossCheck(what('native'), nativeRes, want, n);
  }

  const rids = Uint32Array.from(c.requests, (r) => r.rid);
  const pasids = Uint32Array.from(c.requests, (r) => r.pasid);
  const accesses = Uint32Array.from(c.requests, (r) => r.access);
  const iovas = c.requests.map((r) => r.iova);
  const tsOut: TsTranslation[] = new Array(n);
  const tsRun = (): void => {
    for (let i = 0; i < n; i++) tsOut[i] = ts.translate(rids[i]!, pasids[i]!, iovas[i]!, accesses[i]!);
  };
  tsRun();
  tsRun();
  tsOut.forEach((r, i) => checkTs(what('ts'), r, want, i));

  const base = { variant: c.variant, opsPerIteration: n, note };
  const tasks: Task[] = [
    { ...base, scenario: c.batch, impl: 'wasm', fn: () => batch.run(n) },
    ...(native ? [{ ...base, scenario: c.batch, impl: 'native' as const, before: bindNative, fn: () => native.batch(batch.requestPtr, nativeSlot.batch.resultPtr, n) }] : []),
    { ...base, scenario: c.batch, impl: 'js', fn: () => js.translateBatch(batch.requestPtr, jsSlot.batch.resultPtr, n) },
    { ...base, scenario: c.batch, impl: 'ts', fn: tsRun },
  ];

  if (c.call) {
    const call = c.call;
    if (c.requests.some((r) => r.iova > BigInt(Number.MAX_SAFE_INTEGER))) throw new Error(`${call}: per-call scenarios take number IOVAs`);
    const iovaNums = Float64Array.from(c.requests, (r) => Number(r.iova));
    const out = new TranslationOut();
    const wasmCall = (): void => {
      for (let i = 0; i < n; i++) iommu.translateInto(out, rids[i]!, pasids[i]!, iovaNums[i]!, accesses[i]!);
    };
    const jsOut = new TranslationOut();
    const jsCall = (): void => {
      for (let i = 0; i < n; i++) js.translateInto(jsOut, rids[i]!, pasids[i]!, iovaNums[i]!, accesses[i]!);
    };
    for (let i = 0; i < n; i++) checkOut(what('wasm', call), iommu.translateInto(out, rids[i]!, pasids[i]!, iovaNums[i]!, accesses[i]!), want, i);
    for (let i = 0; i < n; i++) checkOut(what('js', call), js.translateInto(jsOut, rids[i]!, pasids[i]!, iovaNums[i]!, accesses[i]!), want, i);
    if (native) {
      bindNative();
      native.calls(batch.requestPtr, nativeSlot.batch.resultPtr, n);
      crossCheck(what('native', call), nativeRes, want, n);
    }
    // The same requests with bigint IOVAs (issue 14: ≥ 0.9× the number path).
    const iovaBigs = c.requests.map((r) => r.iova);
    const wasmCallBig = (): void => {
      for (let i = 0; i < n; i++) iommu.translateInto(out, rids[i]!, pasids[i]!, iovaBigs[i]!, accesses[i]!);
    };
    for (let i = 0; i < n; i++) checkOut(what('wasm bigint', call), iommu.translateInto(out, rids[i]!, pasids[i]!, iovaBigs[i]!, accesses[i]!), want, i);
    tasks.push(
      { ...base, scenario: call, impl: 'wasm', fn: wasmCall },
      ...(c.variant === undefined ? [{ ...base, scenario: call, impl: 'wasm' as const, variant: 'bigint', fn: wasmCallBig }] : []),
      ...(native ? [{ ...base, scenario: call, impl: 'native' as const, before: bindNative, fn: () => native.calls(batch.requestPtr, nativeSlot.batch.resultPtr, n) }] : []),
      { ...base, scenario: call, impl: 'js', fn: jsCall },
      { ...base, scenario: call, impl: 'ts', fn: tsRun },
    );
  }

  env.h.measure(tasks);

  // The measured loops must still be producing the reference results.
  crossCheck(what('wasm (after)'), batch.results, want, n);
  crossCheck(what('js (after)'), jsRes, want, n);
  if (native) crossCheck(what('native (after)'), nativeRes, want, n);
}
