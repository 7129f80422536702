// The virtio-iommu example guest (examples/virtio-iommu/main.mjs, `npm run demo:virtio`) run as a
// child process in --quick mode: Linux's request sequence against VirtioIommu while three devices
// DMA from workers. It must exit 0 with every check passed, having sent one MAP and one UNMAP per
// buffer and seen every fault on the event queue. It imports dist/, so it needs a build.
import { existsSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { runProcess } from './run-process';

const dist = new URL('../dist/index.js', import.meta.url);

describe.skipIf(!existsSync(dist))('the virtio-iommu example guest', () => {
  test('runs its quick mode and passes every check', async () => {
    const { code, stdout, stderr } = await runProcess(process.execPath, ['examples/virtio-iommu/main.mjs', '--quick']);
    expect(code, `stdout:\n${stdout}\nstderr:\n${stderr}`).toBe(0);
    expect(stdout).toMatch(/PASS: all \d+ checks/);
    expect(stdout).not.toMatch(/FAIL/);
    expect(stdout).toMatch(/requests: ATTACH 3, DETACH 3, MAP 180, UNMAP 180, PROBE 3; failed: 0/);
    expect(stdout).toMatch(/180 stray and 180 stale DMAs faulted; event queue: \d+ reports, 0 expected ones missing/);
  });
});
