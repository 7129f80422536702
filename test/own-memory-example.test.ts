// The own-memory example (examples/own-memory/, `npm run demo:own-memory`) run as a child process:
// ioasid inside a region of a separately compiled AssemblyScript machine's memory, walking the
// guest's tables there and serving the machine's device DMA. It imports dist/, so it needs a build;
// it compiles the machine itself when it is not built yet.
import { existsSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { runProcess } from './run-process';

const dist = new URL('../dist/index.js', import.meta.url);

describe.skipIf(!existsSync(dist))('the own-memory example', () => {
  test('passes every check: DMA lands in the machine\'s RAM, A/D bits set there, the memory never grows', async () => {
    const { code, stdout, stderr } = await runProcess(process.execPath, ['examples/own-memory/run.mjs']);
    expect(code, `stdout:\n${stdout}\nstderr:\n${stderr}`).toBe(0);
    expect(stdout).toMatch(/PASS: all 5 checks/);
    expect(stdout).not.toMatch(/FAIL/);
    expect(stdout).toMatch(/device DMA: (\d+) of \1 bytes written/);
    expect(stdout).toMatch(/fault not-present/);
  }, 60_000);
});
