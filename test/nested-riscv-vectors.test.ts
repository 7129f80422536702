// Golden RISC-V walk vectors (the RISC-V IOMMU reference model's results)
// replayed through the public API — single stage and nested, every request after invalidating the
// caches, results, fault stage and kind, and A/D words written. One test per tag reports the cases
// with that tag that pass. Every `riscv*.json` in ../shared/vectors/ (beside the repo root) is
// replayed, so another vector set generated the same way is picked up as it is.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { RAM_MODES } from './ram-modes';
import { replayFile, type CaseResult, type VectorFile } from './vectors/riscv-replay';

const dir = fileURLToPath(new URL('../../shared/vectors/', import.meta.url));
const files = existsSync(dir) ? readdirSync(dir).filter((f) => /^riscv.*\.json$/.test(f)).sort() : [];
if (files.length === 0) console.warn(`nested-riscv-vectors: skipped — no riscv*.json vectors in ${dir} (CI places shared/ beside the clone)`);

for (const file of files) {
  const vectors = JSON.parse(readFileSync(dir + file, 'utf8')) as VectorFile;
  const tags = [...new Set(vectors.cases.flatMap((c) => c.tags))].sort();

  // Guest RAM in the engine, in an emulator's memory and in an external buffer (test/ram-modes.ts).
  describe.each(RAM_MODES)(`RISC-V walk vectors ${file} (${vectors.cases.length} cases), RAM in %s`, (mode) => {
    let results: CaseResult[] | undefined;
    const all = (): CaseResult[] => (results ??= replayFile(vectors, mode));
    test('every case', () => {
      const r = all();
      const failed = r.filter((c) => !c.passed);
      console.log(`${file} (RAM in ${mode}): ${r.length - failed.length}/${r.length} cases, ${r.reduce((n, c) => n + c.requests, 0)} requests replayed`);
      expect(failed.map((c) => `${c.name}: ${c.problem}`)).toEqual([]);
    });

    test.each(tags)('tag %s', (tag) => {
      const r = all().filter((c) => c.tags.includes(tag));
      const failed = r.filter((c) => !c.passed);
      console.log(`${file} (RAM in ${mode}) tag ${tag}: ${r.length - failed.length}/${r.length} passed`);
      expect(failed.map((c) => `${c.name}: ${c.problem}`)).toEqual([]);
    });
  });
}

test.skipIf(files.length > 0)('RISC-V walk vectors: skipped (no ../shared/vectors/riscv*.json)', () => {});
