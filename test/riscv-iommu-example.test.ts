// The RISC-V IOMMU example guest (examples/riscv-iommu/main.mjs, `npm run demo:riscv`) run as a
// child process: a Linux-style driver, devices DMAing from worker threads, an unmap that must fault
// at once and a device without a context faulting with cause 258. It imports dist/ (needs a build).
import { existsSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { runProcess } from './run-process';

const dist = new URL('../dist/index.js', import.meta.url);

describe.skipIf(!existsSync(dist))('the RISC-V IOMMU example guest', () => {
  test('passes every check: per-device isolation, unmap faults at once, cause 258 for the rogue', async () => {
    const { code, stdout, stderr } = await runProcess(process.execPath, ['examples/riscv-iommu/main.mjs']);
    expect(code, `stdout:\n${stdout}\nstderr:\n${stderr}`).toBe(0);
    expect(stdout).toMatch(/all \d+ checks passed/);
    expect(stdout).not.toMatch(/FAIL/);
    expect(stdout).toMatch(/fault record: cause 258, device_id 24/);
    expect(stdout).toMatch(/fault record: cause 15, device_id 8/);
  }, 60_000);
});
