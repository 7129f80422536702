// Compiles the example machine (machine.ts) with the repository's AssemblyScript into
// examples/own-memory/build/machine.wasm (not committed). Its own config, passed explicitly: asc would otherwise pick up
// the asconfig.json of the directory it runs in (the engine's).
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const machineWasm = join(here, 'build', 'machine.wasm');

export function buildMachine() {
  const asc = join(here, '..', '..', 'node_modules', 'assemblyscript', 'bin', 'asc.js');
  // Without the caller's NODE_OPTIONS: a relative --import (npm test's polyfills) would resolve here.
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  execFileSync(process.execPath, [asc, '--config', join(here, 'asconfig.json')], { cwd: here, stdio: 'inherit', env });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) buildMachine();
