// The user application (examples/emulated-machine.mjs, `npm start`) run as a child process in its
// bounded --quick mode: it must exit 0 and its summary must show the rogue device refused at
// authorization (EPERM for VM A's PASID, ENOENT for VM A's IDs), its DMA at VM A faulted, and
// real translations done by the workers. It imports dist/, so it needs a build.
import { existsSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { runProcess } from './run-process';

const dist = new URL('../dist/index.js', import.meta.url);

const runExample = (...args: string[]) => runProcess(process.execPath, ['examples/emulated-machine.mjs', ...args]);

const number = (text: string): number => Number(text.replaceAll(',', ''));

describe.skipIf(!existsSync(dist))('the emulated machine example', () => {
  test('runs its quick mode, passes every check and reports the rogue refused and faulted', async () => {
    const { code, stdout, stderr } = await runExample('--quick');
    expect(code, `stdout:\n${stdout}\nstderr:\n${stderr}`).toBe(0);
    expect(stdout).toMatch(/PASS: all \d+ checks/);
    expect(stdout).not.toMatch(/FAIL/);

    // Authorization: A's PASID is EPERM from B's FD; some ID of A's names nothing in B (ENOENT).
    expect(stdout).toMatch(/rogue\.attach\(\d+, \{ pasid: \d+ \}\).*VM A's PASID.*→ EPERM/);
    expect(stdout).toMatch(/rogue\.attach\(\d+\)\s+— VM A's .*→ ENOENT/);

    // DMA: the rogue's requests at VM A all faulted, and the workers translated for real.
    const rogue = /rogue DMA at VM A: ([\d,]+) of ([\d,]+) requests translated/.exec(stdout);
    expect(rogue).not.toBeNull();
    expect(number(rogue![1]!)).toBe(0);
    expect(number(rogue![2]!)).toBeGreaterThan(0);
    const total = /translations: ([\d,]+) by the workers/.exec(stdout);
    expect(total).not.toBeNull();
    expect(number(total![1]!)).toBeGreaterThan(0);
  });
});
