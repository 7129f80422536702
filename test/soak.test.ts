// Concurrency soak: worker translators (per call and batched, over dist/) translate a fixed set of
// probes while the owner performs random control operations (map/unmap/copy, attach/replace/
// detach, PASIDs, HWPT alloc/destroy, close/reopen), each checked against the reference model. Every
// worker result is checked against the model's history of each probe (protocol: test/model/soak.ts):
// zero stale-after-return results and zero torn results. Short here (~3 s of racing); long
// campaigns: `npm run soak -- --seconds S` (scripts/soak.mjs).
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import * as ioasid from '../src/index';
import * as testing from './testing';
import type { EngineApi } from './model/harness';
import { HISTORY_CAP, SoakOwner } from './model/soak';
import { runReuseRace } from './model/reuse-race';

const dist = new URL('../dist/index.js', import.meta.url);
const workerUrl = new URL('./workers/soak-worker.mjs', import.meta.url);
const api: EngineApi = { Iommu: ioasid.Iommu, IommuError: ioasid.IommuError, TranslationOut: ioasid.TranslationOut, FAULT_REASONS: ioasid.FAULT_REASONS, testing };
const RACE_MS = 2500;

interface Report {
  mode: string;
  checked: number;
  unchecked: number;
  ok: number;
  stale: number;
  torn: number;
  firstViolations: unknown[];
}

describe.skipIf(!existsSync(dist))('concurrency soak against the reference model', () => {
  test('workers racing random control ops see no stale and no torn result', async () => {
    const owner = new SoakOwner(api, 0x50a4);
    const iommu = owner.engine.iommu;
    const spawn = (mode: 'call' | 'batch', seed: number): Promise<Report> =>
      new Promise((resolve, reject) => {
        const w = new Worker(workerUrl, { workerData: { handle: iommu.translatorHandle({ batchCapacity: 32 }), shared: owner.shared, cap: HISTORY_CAP, mode, seed } });
        w.once('message', resolve);
        w.once('error', reject);
      });
    const reports = [spawn('call', 1), spawn('batch', 2)];
    const ctl = new Int32Array(owner.shared.control);
    while (Atomics.load(ctl, 3) < reports.length) await new Promise((r) => setTimeout(r, 5));
    const end = performance.now() + RACE_MS;
    let divergence: string | undefined;
    while (performance.now() < end && !divergence) {
      for (let i = 0; i < 32 && !divergence; i++) divergence = owner.step();
      await new Promise((r) => setImmediate(r));
    }
    owner.stop();
    const results = await Promise.all(reports);
    expect(divergence).toBeUndefined();
    expect(testing.guardViolations(iommu)).toEqual([]);
    for (const r of results) {
      expect(r.firstViolations, JSON.stringify(r.firstViolations)).toEqual([]);
      expect(r.stale).toBe(0);
      expect(r.torn).toBe(0);
      expect(r.checked).toBeGreaterThan(10_000);
      expect(r.unchecked).toBeLessThan(r.checked / 100);
      expect(r.ok).toBeGreaterThan(0); // the race mixed hits and faults
      expect(r.ok).toBeLessThan(r.checked);
    }
    expect(owner.version).toBeGreaterThan(500);
    expect(owner.outcomes.ok).toBeGreaterThan(100);
    console.log(`soak: ${owner.version} control ops (${owner.outcomes.ok} ok, ${owner.outcomes.errno} errno) against ${results.map((r) => `${r.checked} ${r.mode}`).join(' + ')} checked translations: 0 stale, 0 torn`);
  });
});

describe.skipIf(!existsSync(dist))('detach racing a walk, with the domain slot reused at once by another FD', () => {
  test("a worker never translates through another FD's HWPT that reused its domain slot", async () => {
    const r = await runReuseRace(ioasid.Iommu, new URL('./workers/soak-reuse-worker.mjs', import.meta.url), 800);
    expect(r.crossed, `${r.crossed} of ${r.checked} translations went through another FD's tables`).toBe(0);
    expect(r.garbage).toBe(0);
    expect(r.ok).toBeGreaterThan(0);
    expect(r.rounds).toBeGreaterThan(200);
  });
});
