// ioasid inside another Wasm module's memory, in Node: `npm run demo:own-memory`.
// Builds the example machine (machine.ts, with the repository's AssemblyScript) when it is not
// built yet, then runs demo.mjs and exits non-zero if a check failed. Needs `npm run build` (dist/).
import { existsSync, readFileSync } from 'node:fs';
import * as ioasid from 'ioasid';
import { buildMachine, machineWasm } from './build.mjs';
import { runDemo } from './demo.mjs';

if (!existsSync(machineWasm)) buildMachine();
const checks = await runDemo(ioasid, readFileSync(machineWasm), (line) => console.log(line));
const failed = checks.filter((c) => !c.ok).length;
console.log(failed ? `FAIL: ${failed} of ${checks.length} checks` : `PASS: all ${checks.length} checks`);
process.exitCode = failed ? 1 : 0;
