// The reference model's register-level RISC-V IOMMU vectors replayed through RiscvIommu: every
// `*.json` in ../shared/vectors/riscv-iommu/ (beside the repo root), every step of every case, the
// words each step wrote and the whole-RAM image at the end of each case (scripts/riscv-iommu-replay.mjs).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import * as lib from '../src/index';
import { RAM_MODES, replayFile, summarize } from '../scripts/riscv-iommu-replay.mjs';

const dir = fileURLToPath(new URL('../../shared/vectors/riscv-iommu/', import.meta.url));
const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')).sort() : [];
if (files.length === 0) console.warn(`riscv-iommu-vectors: skipped — no *.json vectors in ${dir} (CI places shared/ beside the clone)`);

for (const file of files) {
  describe(`RISC-V IOMMU vectors ${file}`, () => {
    // Guest RAM in ioasid's memory, in the emulator's own Wasm memory, and in a SharedArrayBuffer.
    test.each(RAM_MODES)('every step of every case, guest RAM: %s', (mode) => {
      const results: { name: string; passed: boolean; problem?: string }[] = replayFile(lib, JSON.parse(readFileSync(dir + file, 'utf8')), mode);
      console.log(summarize(results).join('\n'));
      expect(results.filter((r) => !r.passed).map((r) => `${r.name}: ${r.problem}`)).toEqual([]);
      expect(results.length).toBeGreaterThan(0);
    }, 120_000);
  });
}

test.skipIf(files.length > 0)('RISC-V IOMMU vectors: skipped (no ../shared/vectors/riscv-iommu/*.json)', () => {});

describe('the replayer finds mismatches', () => {
  // ddtp Off: a request faults with cause 256 and its record (written at 0x1000) is the only IOMMU write.
  const header = (0x100n | (3n << 34n) | (1n << 40n)).toString(16);
  const steps = () => [
    { op: 'write', reg: 'fqb', offset: 40, size: 8, value: '0x401' },
    { op: 'write', reg: 'fqcsr', offset: 76, size: 4, value: '0x3' },
    { op: 'read', reg: 'fqcsr', offset: 76, size: 4, expect: '0x10003' },
    { op: 'translate', req: { devid: 1, access: 'write', priv: false, iova: '0x1234' }, expect: { status: 'unsupported-request' }, writes: [['0x1000', `0x${header}`], ['0x1010', '0x1234']] as [string, string][] },
    { op: 'read', reg: 'fqt', offset: 52, size: 4, expect: '0x1' },
  ];
  const run = (s: ReturnType<typeof steps>) => replayFile(lib, { cases: [{ name: 'synthetic', tags: ['fq'], ram: { base: '0x0', bytes: '0x10000' }, capabilities: '0x1ee110e8e10', fctl: '0x2', steps: s }] })[0]!;

  test('a faithful case passes', () => {
    expect(run(steps())).toMatchObject({ passed: true });
  });
  test('a wrong register value names the step', () => {
    const s = steps();
    s[4]!.expect = '0x2';
    expect(run(s).problem).toMatch(/^step 4 \(read fqt/);
  });
  test('a wrong written word names the step', () => {
    const s = steps();
    s[3]!.writes![1] = ['0x1010', '0x1235'];
    expect(run(s).problem).toMatch(/^step 3 \(translate.*word 0x1010/);
  });
  test('an IOMMU write the case does not list fails the end-of-case RAM image', () => {
    const s = steps();
    s[3]!.writes = [['0x1000', `0x${header}`]];
    expect(run(s).problem).toMatch(/^end of case: word 0x1010 = 0x1234, expected 0x0/);
  });
});
