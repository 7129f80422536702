// The reference model's register-level RISC-V IOMMU vectors replayed through RiscvIommu: every
// `*.json` in ../shared/vectors/riscv-iommu/ (beside the repo root), every step of every case, the
// words each step wrote and the whole-RAM image at the end of each case (scripts/riscv-iommu-replay.mjs).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import * as lib from '../src/index';
import { replayFile, summarize } from '../scripts/riscv-iommu-replay.mjs';

const dir = fileURLToPath(new URL('../../shared/vectors/riscv-iommu/', import.meta.url));
const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')).sort() : [];
if (files.length === 0) console.warn(`riscv-iommu-vectors: skipped — no *.json vectors in ${dir} (CI places shared/ beside the clone)`);

for (const file of files) {
  describe(`RISC-V IOMMU vectors ${file}`, () => {
    test('every step of every case', () => {
      const results: { name: string; passed: boolean; problem?: string }[] = replayFile(lib, JSON.parse(readFileSync(dir + file, 'utf8')));
      console.log(summarize(results).join('\n'));
      expect(results.filter((r) => !r.passed).map((r) => `${r.name}: ${r.problem}`)).toEqual([]);
      expect(results.length).toBeGreaterThan(0);
    }, 120_000);
  });
}

test.skipIf(files.length > 0)('RISC-V IOMMU vectors: skipped (no ../shared/vectors/riscv-iommu/*.json)', () => {});
