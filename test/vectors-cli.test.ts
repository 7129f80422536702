// `npm run vectors` (scripts/vectors.mjs) as a user runs it: over dist/, on a vector file of the
// reference model's format, with the exit code and the first mismatching case and step.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { runProcess } from './run-process';

const dist = new URL('../dist/index.js', import.meta.url);
const dir = mkdtempSync(join(tmpdir(), 'ioasid-vectors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// ddtp Off: a request faults with cause 256 and its 32-byte record (written at 0x1000) is the only IOMMU write.
const record = `0x${(0x100n | (3n << 34n) | (1n << 40n)).toString(16)}`;
const vectorFile = (fqt: string): string => {
  const file = join(dir, `fqt-${fqt}.json`);
  const steps = [
    { op: 'write', reg: 'fqb', offset: 40, size: 8, value: '0x401' },
    { op: 'write', reg: 'fqcsr', offset: 76, size: 4, value: '0x3' },
    { op: 'translate', req: { devid: 1, access: 'write', priv: false, iova: '0x1234' }, expect: { status: 'unsupported-request' }, writes: [['0x1000', record], ['0x1010', '0x1234']] },
    { op: 'read', reg: 'fqt', offset: 52, size: 4, expect: fqt },
  ];
  const c = { name: 'off-fault-0', tags: ['off', 'fq'], ram: { base: '0x0', bytes: '0x10000' }, capabilities: '0x1ee110e8e10', fctl: '0x2', steps };
  writeFileSync(file, JSON.stringify({ generator: 'test', cases: [c] }));
  return file;
};

describe.skipIf(!existsSync(dist))('npm run vectors', () => {
  test.each(['engine', 'memory', 'external'])('a faithful file passes with guest RAM in %s: exit 0 and the counts', async (ram) => {
    const r = await runProcess(process.execPath, ['scripts/vectors.mjs', '--ram', ram, vectorFile('0x1')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/cases: 1\/1 passed/);
    expect(r.stdout).toMatch(/step translate: 1\/1/);
    expect(r.stdout).toMatch(/tag fq: 1\/1/);
  });

  test('a mismatch exits 1 and names the case and the step', async () => {
    const r = await runProcess(process.execPath, ['scripts/vectors.mjs', '--all', vectorFile('0x2')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/cases: 0\/1 passed/);
    expect(r.stdout).toMatch(/FAIL off-fault-0: step 3 \(read fqt/);
  });

  test('no file or a bad option is a usage error (exit 2)', async () => {
    expect((await runProcess(process.execPath, ['scripts/vectors.mjs'])).code).toBe(2);
    const r = await runProcess(process.execPath, ['scripts/vectors.mjs', '--ram', 'disk', 'x.json']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--ram: expected one of engine, memory, external/);
  });
});
