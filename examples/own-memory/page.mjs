// The own-memory demo in a browser: fetches the compiled machine and runs demo.mjs over the
// package bundle. #out shows the log; its data-result becomes "pass" or "fail".
import * as ioasid from 'ioasid';
import { runDemo } from './demo.mjs';

const out = document.getElementById('out');
out.textContent = '';
const log = (line) => (out.textContent += `${line}\n`);
try {
  const wasm = await (await fetch(new URL('build/machine.wasm', import.meta.url))).arrayBuffer();
  const checks = await runDemo(ioasid, wasm, log);
  const failed = checks.filter((c) => !c.ok).length;
  log(failed ? `FAIL: ${failed} of ${checks.length} checks` : `PASS: all ${checks.length} checks`);
  out.dataset.result = failed ? 'fail' : 'pass';
} catch (e) {
  log(`FAIL: ${e instanceof Error ? e.stack : String(e)}`);
  out.dataset.result = 'fail';
}
