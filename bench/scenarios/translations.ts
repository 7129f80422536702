/**
 * The hot-path scenarios: which engine, which mappings, which requests. Measuring is translate.ts.
 *
 * - hit-batch / hit-call: 4096 requests over 256 mapped pages, default 4096-entry IOTLB: after
 *   the warm-up pass every request hits (the note shows the measured hit rate).
 * - walk4-batch / walk4-call: every request misses. The engines have `iotlbEntries: 2` (one
 *   2-way set) and the requests visit distinct pages in a cycle, so the page asked for is never one
 *   of the two most recent: each request walks all 4 levels (and fills the IOTLB). Two table sets:
 *   `hot` = 512 contiguous pages (4 table pages); `scattered` = 64 runs of 256 pages at random
 *   48-bit IOVAs (~190 table pages, 4096 distinct pages visited per batch).
 * - walk5-batch: as walk4 scattered, on a 57-bit (5-level) engine.
 * - pasid-batch: 10^4 PASIDs of one device, round robin over 4 PASID-capable HWPTs (64 pages
 *   each); 10^4 requests, one per PASID per batch, default IOTLB (10^4 keys > 4096 entries, so
 *   mostly misses: device table -> PASID directory -> leaf -> domain -> walk).
 * @module
 */
import { benchTranslations, type BenchEnv } from './translate';
import {
  attachPasid, hotPages, makeTwin, mapPages, pasidSpace, permutation, radixTablePages, requestAt, requestsOver, ridSpace,
  rng, scatteredPages, type Page,
} from '../setup';

const N = 4096;

export function hitScenarios(env: BenchEnv): void {
  const next = rng(1);
  const t = makeTwin();
  const pages = hotPages(next, 1n << 30n, 256);
  mapPages(t, ridSpace(t), pages);
  const order = Array.from({ length: N }, () => next() % pages.length);
  benchTranslations(env, { batch: 'hit-batch', call: 'hit-call', twin: t, requests: requestsOver(next, t.dev.rid, pages, order, N) });
}

function walkCase(env: BenchEnv, batch: string, call: string | undefined, width: 48 | 57, variant: 'hot' | 'scattered', seed: number): void {
  const next = rng(seed);
  const t = makeTwin({ addressWidth: width, iotlbEntries: 2 });
  const pages: Page[] = variant === 'hot' ? hotPages(next, 1n << 40n, 512) : scatteredPages(next, width, 64, 256);
  mapPages(t, ridSpace(t), pages);
  const order = permutation(next, pages.length).slice(0, N);
  const note = `${radixTablePages(pages, (width - 12) / 9)} table pages`;
  benchTranslations(env, { batch, call, variant, twin: t, requests: requestsOver(next, t.dev.rid, pages, order, N), note });
}

export function walkScenarios(env: BenchEnv): void {
  walkCase(env, 'walk4-batch', 'walk4-call', 48, 'hot', 2);
  walkCase(env, 'walk4-batch', 'walk4-call', 48, 'scattered', 3);
  walkCase(env, 'walk5-batch', undefined, 57, 'scattered', 4);
}

export function pasidScenario(env: BenchEnv, pasidCount = 10_000, hwpts = 4): void {
  const next = rng(5);
  const t = makeTwin();
  const spaces = Array.from({ length: hwpts }, (_, k) => {
    const s = pasidSpace(t);
    const pages = hotPages(next, BigInt(k + 1) << 32n, 64);
    mapPages(t, s, pages);
    return { s, pages };
  });
  const pasids = Array.from({ length: pasidCount }, (_, i) => attachPasid(t, spaces[i % hwpts]!.s));
  const requests = pasids.map((pasid, i) => {
    const { pages } = spaces[i % hwpts]!;
    return requestAt(next, t.dev.rid, pasid, pages[next() % pages.length]!, i);
  });
  benchTranslations(env, { batch: 'pasid-batch', twin: t, requests, note: `${pasidCount} PASIDs on ${hwpts} HWPTs` });
}
